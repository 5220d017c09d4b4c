"""Hostile storage and writes (issue 36): external raw storage, links inside output folders, the stale-temporary
cleaner, memory for everything sized by a file or a flag, virtual datasets with missing sources, a full disk.

Every case: its exit code, one line, inputs unchanged, nothing opened outside the case folder (the audit hook of
``hostile_helpers`` for Python opens; the access time of ``secret.bin`` for what HDF5 reads itself, e.g. external raw
storage), nothing written through a link.
"""

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from hostile_helpers import OPENED, bomb, cxi_file, digest, edit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multimodal_ip.atomic import TEMPORARY_MARKER, temporary_marker, temporary_prefix
from multimodal_ip.cli import main

DEAD_PID = 999_999_999  # cannot be running


def _secret_bin(folder: Path, nbytes=25 * 16 * 16 * 8) -> Path:
    """Raw float64 bytes outside the case folder, with an access time in the past (a read moves it to now)."""
    path = folder / "secret.bin"
    np.full(nbytes // 8, 7.0).tofile(path)
    os.utime(path, (1e9, 1e9))
    return path


def _atime_moves(folder: Path) -> bool:
    """Whether this file system records reads in the access time (``noatime`` mounts do not)."""
    probe = folder / "atime-probe"
    probe.write_bytes(b"x")
    os.utime(probe, (1e9, 1e9))
    probe.read_bytes()
    return probe.stat().st_atime > 1e9


def run(root, argv, code, message, capsys, inputs=None, secret=None, tmp_ok=(), warned=False):
    """``hostile_helpers.run`` plus: ``secret`` (external raw storage) not read by HDF5 either, ``tmp_ok``: files
    named like temporaries that must stay (inputs named so on purpose), and ``warned``: warning lines may come
    before the error line (a refusal after the solve)."""
    inputs = [Path(p) for p in (inputs if inputs is not None else root.rglob("*")) if Path(p).is_file()]
    before = {p: digest(p) for p in inputs}
    atime = secret.stat().st_atime if secret is not None else None
    OPENED.clear()
    capsys.readouterr()
    got = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert got == code, err
    if code:
        lines = err.splitlines()
        assert "Traceback" not in err and (len(lines) == 1 or warned and all("warning:" in x for x in lines[:-1])), err
        assert any(m in lines[-1] for m in (message if isinstance(message, tuple) else (message,))), err
    assert not [p for p in OPENED if "secret" in p]
    if secret is not None and _atime_moves(root.parent):
        assert secret.stat().st_atime == atime, f"{secret} was read"
    assert {p: digest(p) for p in inputs} == before
    assert sorted(root.rglob("*.tmp")) == sorted(Path(p) for p in tmp_ok), list(root.rglob("*.tmp"))
    return err


def _external(f, key, secret, nbytes=None):
    """Replace dataset ``key`` of the open file ``f`` by one of the same shape whose bytes live in ``secret``."""
    d = f[key]
    shape, dtype = d.shape, np.dtype("f8")
    del f[key]
    f.create_dataset(key, shape=shape, dtype=dtype,
                     external=[(str(secret), 0, nbytes or int(np.prod(shape)) * dtype.itemsize)])


# ---- 1. external raw storage is refused like an external link, on every read path --------------------------------
@pytest.mark.parametrize("key", ["terms/ptychography/data", "terms/fluorescence/data", "truth/x"])
def test_external_raw_storage_is_refused_in_datasets(case, capsys, key):
    root, _ = case
    with h5py.File(root / "d.h5") as f:
        nbytes = f[key].size * 8
    secret = _secret_bin(root.parent, nbytes)
    edit(root / "d.h5", lambda f: _external(f, key, secret))
    for command in ("reconstruct", "compare", "hessian"):
        out = root / ("r.h5" if command == "reconstruct" else "out")
        run(root, [command, root / "d.h5", "-o", out, "--iterations", "1"], 2,
            f"/{key}: external raw storage in", capsys, secret=secret)


def test_external_raw_storage_is_refused_in_results_and_checkpoints(case, capsys):
    root, _ = case
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "2", "--checkpoint-every", "1"],
        0, "", capsys)
    secret = _secret_bin(root.parent, 48 * 48 * 8)
    edit(root / "r.h5", lambda f: _external(f, "results/variables/x", secret))
    run(root, ["report", root / "r.h5", "-o", root / "rep"], 2, "/results/variables/x: external raw storage",
        capsys, secret=secret)
    # a checkpoint as a killed run leaves it, its x stored outside
    argv = ["reconstruct", root / "d.h5", "-o", root / "r2.h5", "--iterations", "4", "--checkpoint-every", "1"]
    from multimodal_ip.cli import build_parser
    from multimodal_ip.config import run_config
    from multimodal_ip.io import build_problem, load_dataset
    from multimodal_ip.io.results import save_checkpoint
    from multimodal_ip.safety import file_fingerprint
    from multimodal_ip.solvers import solve

    problem = build_problem(load_dataset(root / "d.h5"))
    saved = {}
    solve(problem, problem.start(), "lbfgs", maxiter=1, callback=lambda s: saved.update(s=s.solver.state_dict()))
    ckpt = root / "r2.h5.ckpt.h5"
    save_checkpoint(ckpt, saved["s"], run_config(build_parser().parse_args([str(a) for a in argv])),
                    file_fingerprint(root / "d.h5"))
    secret = _secret_bin(root.parent, saved["s"]["arrays"]["x"].size * 8)
    edit(ckpt, lambda f: _external(f, "checkpoint/arrays/x", secret))
    run(root, [*argv, "--resume"], 2, "/checkpoint/arrays/x: external raw storage", capsys, secret=secret)


def _facility(root, tiny_dataset):
    from mmip_fluorescence.maps import export_maps
    from mmip_ptychography.cxi import Frame

    cxi = cxi_file(root, tiny_dataset)
    export_maps(root / "maps.h5", tiny_dataset.terms["fluorescence"], Frame(1e-8, (0.0, 0.0), (48, 48)))
    return ["import", "--ptycho", cxi, "--xrf", root / "maps.h5", "-o", root / "d.h5"]


def test_import_refuses_external_raw_storage(tmp_path, tiny_dataset, capsys):
    """``mmip import`` copied the outside bytes into its output; now it refuses, and writes nothing."""
    root = tmp_path / "imp"
    root.mkdir()
    argv = _facility(root, tiny_dataset)
    secret = _secret_bin(tmp_path)
    edit(root / "scan.cxi", lambda f: _external(f, "entry_1/data_1/data", secret))
    run(root, argv, 2, "entry_1/data_1/data: external raw storage in", capsys, secret=secret)
    assert not (root / "d.h5").exists()
    for key in ("MAPS/XRF_Analyzed/Fitted/Counts_Per_Sec", "MAPS/Scan/x_axis"):
        argv = _facility(root, tiny_dataset)
        with h5py.File(root / "maps.h5") as f:
            secret = _secret_bin(tmp_path, f[key].size * 8)
        edit(root / "maps.h5", lambda f, key=key, secret=secret: _external(f, key, secret))
        run(root, argv, 2, f"{key}: external raw storage in", capsys, secret=secret)


def test_external_raw_storage_only_when_allowed_and_present(case, capsys):
    root, _ = case
    with h5py.File(root / "d.h5") as f:
        data = f["terms/ptychography/data"][()]
    part = root / "part.bin"
    data.astype("f8").tofile(part)
    edit(root / "d.h5", lambda f: _external(f, "terms/ptychography/data", part))
    argv = ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1"]
    run(root, argv, 2, "external raw storage", capsys)
    run(root, [*argv, "--allow-external-links"], 0, "", capsys)
    part.write_bytes(part.read_bytes()[:100])  # HDF5 would read zeros past the end
    run(root, [*argv, "--allow-external-links"], 2, "fewer than the", capsys)
    part.unlink()
    run(root, [*argv, "--allow-external-links"], 2, "is missing", capsys)


# ---- 7. a virtual dataset whose source is missing is refused even when allowed -----------------------------------
def _virtual(f, key, source, name="data"):
    shape = f[key].shape
    layout = h5py.VirtualLayout(shape=shape, dtype="f8")
    layout[:] = h5py.VirtualSource(str(source), name, shape=shape)
    del f[key]
    parent, _, leaf = key.rpartition("/")
    f[parent].create_virtual_dataset(leaf, layout, fillvalue=0)


def test_virtual_dataset_with_a_missing_source_is_refused_when_allowed(case, capsys):
    root, _ = case
    part = root / "part.h5"
    with h5py.File(root / "d.h5") as f, h5py.File(part, "w") as g:
        g["data"] = f["terms/ptychography/data"][()]
    edit(root / "d.h5", lambda f: _virtual(f, "terms/ptychography/data", part))
    argv = ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1", "--allow-external-links"]
    run(root, argv, 0, "", capsys)
    edit(part, lambda f: f.move("data", "other"))  # the file is there, its dataset is not
    run(root, argv, 2, "whose source", capsys)
    part.unlink()
    run(root, argv, 2, "is missing (it would read as fill values)", capsys)


def test_import_refuses_a_virtual_dataset_with_a_missing_source_when_allowed(tmp_path, tiny_dataset, capsys):
    root = tmp_path / "imp"
    root.mkdir()
    argv = [*_facility(root, tiny_dataset), "--allow-external-links"]
    edit(root / "scan.cxi", lambda f: _virtual(f, "entry_1/data_1/data", root / "gone.h5"))
    run(root, argv, 2, "entry_1/data_1/data: a virtual dataset whose source", capsys)
    assert not (root / "d.h5").exists()


# ---- 2. nothing is written through a link already inside an output folder ----------------------------------------
def test_compare_refuses_a_link_to_its_input_inside_the_folder(case, capsys):
    """``mkdir cmp && ln -s ../d.h5 cmp/errors.json && mmip compare d.h5 -o cmp`` overwrote d.h5 with JSON."""
    root, _ = case
    (root / "cmp").mkdir()
    os.symlink("../d.h5", root / "cmp" / "errors.json")
    argv = ["compare", root / "d.h5", "-o", root / "cmp", "--iterations", "1"]
    run(root, argv, 2, "refusing to write", capsys)
    (root / "cmp" / "errors.json").unlink()
    os.link(root / "d.h5", root / "cmp" / "report.md")  # a hard link: the same file under another name
    run(root, argv, 2, "it is the input", capsys)


@pytest.mark.parametrize(("command", "name"), [("report", "report.md"), ("report", "convergence.png"),
                                               ("tune", "chosen.toml"), ("tune", "tune.png"),
                                               ("hessian", "hessian.json"), ("compare", "reconstructions.png")])
def test_every_file_of_an_output_folder_is_guarded(case, capsys, command, name):
    root, _ = case
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1"], 0, "", capsys)
    target = root / ("r.h5" if command == "report" else "d.h5")
    (root / "out").mkdir()
    os.symlink(target, root / "out" / name)
    data = [root / "r.h5"] if command == "report" else [root / "d.h5", "--iterations", "1"]
    extra = ["--c", "0.1"] if command == "tune" else ["--grid", "3", "--k", "2"] if command == "hessian" else []
    run(root, [command, *data, "-o", root / "out", *extra], 2, "it is the input", capsys)
    assert sorted(p.name for p in (root / "out").iterdir()) == [name]  # nothing else written either


def test_a_plugin_figure_over_an_input_is_refused_and_links_elsewhere_are_replaced(case, capsys, tmp_path):
    """Report plugins choose their own file names (``calibration.png``): checked when moved into the folder. A link
    to a file that is no input is replaced by the new file; the file it pointed to stays as it was."""
    root, _ = case
    out = root / "cmp"
    out.mkdir()
    os.symlink(root / "d.h5", out / "calibration.png")
    argv = ["compare", root / "d.h5", "-o", out, "--iterations", "1", "--refine", "positions"]
    run(root, argv, 2, "calibration.png: it is the input", capsys, warned=True)
    assert sorted(p.name for p in out.iterdir()) == ["calibration.png"]
    (out / "calibration.png").unlink()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    for name in ("report.md", "calibration.png", "errors.json"):
        os.symlink(victim, out / name)
    run(root, argv, 0, "", capsys, inputs=[root / "d.h5"])
    assert victim.read_text() == "keep me"
    assert all(not (out / n).is_symlink() and (out / n).stat().st_size > 0
               for n in ("report.md", "calibration.png", "errors.json"))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # the staging folder is gone


# ---- 3. the stale-temporary cleaner removes only what it can prove it made ----------------------------------------
def _stale_name(target: Path, pid=DEAD_PID, token=None) -> Path:
    prefix = temporary_prefix(target).replace(f".{os.getpid()}.", f".{pid}.", 1)
    if token is not None:
        prefix = prefix.rsplit(".", 2)[0] + f".{token}."
    return target.with_name(prefix + "abc123.tmp")


def test_the_cleaner_never_removes_an_input_or_another_machines_temporary(case, capsys):
    root, _ = case
    out = root / "r.h5"
    marker = temporary_marker(DEAD_PID)
    # an input named exactly like a temporary of a dead process of this machine, the marker in its user block
    data = _stale_name(out)
    raw = (root / "d.h5").read_bytes()
    assert raw[:512] == bytes(512)  # our files keep a (cleared) user block
    data.write_bytes(marker + raw[len(marker):])
    config = data.with_name(data.name.replace("abc123", "cfg456"))  # a run file named so
    config.write_bytes(b"iterations = 1\n")
    # a live temporary of a process in another PID namespace or on another host (its machine token differs)
    other = _stale_name(out, token="0123456789ab")
    other.write_bytes((TEMPORARY_MARKER + f"0123456789ab {DEAD_PID}\n".encode()).ljust(512, b"\0"))
    # a file of the right name without the marker (not provably ours), and a symlink to an input
    unmarked = data.with_name(data.name.replace("abc123", "nomark"))
    unmarked.write_bytes(b"x" * 600)
    link = data.with_name(data.name.replace("abc123", "link99"))
    os.symlink(data, link)
    keep = [data, config, other, unmarked, link]
    run(root, ["reconstruct", data, "-o", out, "--config", config], 0, "", capsys, tmp_ok=keep,
        inputs=[data, config, other, unmarked])
    assert all(os.path.lexists(p) for p in keep)


def test_the_cleaner_removes_its_own_stale_temporary(case, capsys):
    root, _ = case
    out = root / "r.h5"
    stale = _stale_name(out)
    stale.write_bytes(temporary_marker(DEAD_PID).ljust(512, b"\0") + b"partial")
    alive = _stale_name(out, pid=os.getppid())  # a running writer of this machine: left alone
    alive.write_bytes(temporary_marker(os.getppid()).ljust(512, b"\0"))
    run(root, ["reconstruct", root / "d.h5", "-o", out, "--iterations", "1"], 0, "", capsys,
        inputs=[root / "d.h5"], tmp_ok=[alive])
    assert not stale.exists() and alive.exists()
    with open(out, "rb") as fh:  # the finished file keeps no marker
        assert fh.read(512) == bytes(512)


# ---- 4. memory: everything sized by a file or a flag is budgeted -------------------------------------------------
def test_unused_truth_is_never_read(case, capsys, monkeypatch):
    """A gzip bomb under /truth that no unknown uses (8 GB declared under a 1 GB budget: a whole run's, the program
    included) is not read; a truth of a variable beyond the budget still is refused."""
    root, _ = case
    edit(root / "d.h5", lambda f: bomb(f, "truth/junk", (8, 16384, 16384)))
    monkeypatch.setenv("MMIP_MAX_MEMORY", "1G")
    argv = ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1"]
    run(root, argv, 0, "", capsys)
    edit(root / "d.h5", lambda f: (f.__delitem__("truth/x"), bomb(f, "truth/x", (2, 512, 512))))
    run(root, argv, 2, ("/truth/x: expected shape", "memory budget"), capsys)


def _rebuild(src, dst):
    """Copy ``src`` into ``dst`` object by object (new object headers: with ``libver="latest"`` they take
    attributes of any size)."""
    for k, v in src.attrs.items():
        dst.attrs[k] = v
    for k, obj in (src.items() if isinstance(src, h5py.Group) else ()):
        if isinstance(obj, h5py.Group):
            _rebuild(obj, dst.create_group(k))
        else:
            _rebuild(obj, dst.create_dataset(k, data=obj[()]))


def _big_attribute(path, owner, key="junk", value=None):
    """``path`` rewritten with a 2.4 MB attribute ``key`` on ``owner`` (beyond the 64 kB of compact storage)."""
    new = path.with_name("rebuilt.h5")
    with h5py.File(path) as src, h5py.File(new, "w", libver="latest") as dst:
        _rebuild(src, dst)
        dst[owner].attrs[key] = np.zeros(300_000) if value is None else value
    os.replace(new, path)


@pytest.mark.parametrize("owner", ["/", "terms/ptychography", "variables/x"])
def test_attributes_are_budgeted_before_they_are_read(case, capsys, monkeypatch, owner):
    root, _ = case
    _big_attribute(root / "d.h5", owner)
    monkeypatch.setenv("MMIP_MAX_MEMORY", "1M")
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1"], 2,
        "attribute 'junk': declares 2.289 MiB, more than the memory budget", capsys)


def test_result_attributes_are_budgeted(case, capsys, monkeypatch):
    root, _ = case
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1"], 0, "", capsys)
    _big_attribute(root / "r.h5", "results")
    monkeypatch.setenv("MMIP_MAX_MEMORY", "1M")
    run(root, ["report", root / "r.h5", "-o", root / "rep"], 2, "/results attribute 'junk'", capsys)


def test_variables_inferred_from_attributes_are_budgeted(case, capsys):
    """``object_shape`` 60000 x 60000 (no /variables): refused by name before a 27 GB unknown is allocated."""
    root, _ = case

    def huge(f):
        del f["variables"]
        for t in ("ptychography", "fluorescence"):
            f[f"terms/{t}"].attrs["object_shape"] = np.array([60000, 60000])

    edit(root / "d.h5", huge)
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1"], 2,
        ("variable 'x' of shape (60000, 60000)", "variable 'w' of shape"), capsys)


def test_maps_channel_names_are_budgeted(tmp_path, tiny_dataset, capsys, monkeypatch):
    root = tmp_path / "imp"
    root.mkdir()
    argv = _facility(root, tiny_dataset)
    names = "MAPS/XRF_Analyzed/Fitted/Channel_Names"  # XRF-Maps v10, as export_maps writes them
    edit(root / "maps.h5", lambda f: (f.__delitem__(names),
                                       f.create_dataset(names, shape=(5_000_000,), dtype="S8")))
    run(root, argv, 2, "5000000 channel names for 1 maps", capsys)
    edit(root / "maps.h5", lambda f: (f.__delitem__(names),
                                       f.create_dataset(names, shape=(1,), dtype="S2000000")))
    monkeypatch.setenv("MMIP_MAX_MEMORY", "1M")
    run(root, argv, 2, (f"{names}: declares 1.907 MiB, more than the memory budget",  # or the import's plan:
                        "memory budget (MMIP_MAX_MEMORY=1M: 0.00 GiB) is too small: importing"), capsys)


def test_simulate_sizes_from_flags_are_budgeted(tmp_path, capsys):
    root = tmp_path / "sim"
    root.mkdir()
    run(root, ["simulate", "tomo-phantom", "--angles", "100000000", "-o", root / "t.h5"], 2,
        "100000000 angles needs about", capsys)
    assert not (root / "t.h5").exists()


@pytest.mark.parametrize(("flags", "message"), [(["--grid", "100000000"], "100000000 points (--grid)"),
                                              (["--dense-max", "100000"], "the dense Hessian of 4608 unknowns")])
def test_hessian_sizes_from_flags_are_budgeted(case, capsys, monkeypatch, flags, message):
    root, _ = case
    monkeypatch.setenv("MMIP_MAX_MEMORY", "10M")
    run(root, ["hessian", root / "d.h5", "-o", root / "h", *flags], 2, message, capsys)


# ---- 9. a full disk while the result is written: one line, exit 2, nothing left behind ---------------------------
@contextlib.contextmanager
def _full_folder(tmp_path):
    """A folder on a 16 kB file system (tmpfs, when this process may mount one), else ``None``."""
    folder = tmp_path / "full"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(folder)],
                                           capture_output=True).returncode:
        yield None
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def _fsize_limit():  # without a small file system: files over 16 kB fail to grow (EFBIG), as on a full disk
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))


def test_a_full_disk_during_the_result_write_is_one_line(case, tmp_path):
    """HDF5 failing inside its own writes printed 22 tracebacks from object finalisers and crashed (SIGSEGV, 139)."""
    root, _ = case
    before = digest(root / "d.h5")
    with _full_folder(tmp_path) as full:
        out = (full or root) / "r.h5"
        proc = subprocess.run([sys.executable, "-m", "multimodal_ip.cli", "reconstruct", str(root / "d.h5"), "-o",
                               str(out), "--iterations", "2"], capture_output=True, text=True, timeout=300,
                              preexec_fn=None if full else _fsize_limit)
        assert proc.returncode == 2, proc.stderr
        err = proc.stderr.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert f"cannot write {out}: " in err and ("No space left" in err or "File too large" in err), err
        assert not out.exists() and not list(out.parent.glob(".*.tmp"))
    assert digest(root / "d.h5") == before


# ---- the fuzzer's new surfaces: external storage, links in output folders, attributes, /truth -------------------
TARGETS = ["terms/ptychography/data", "terms/ptychography/probe", "terms/ptychography/positions",
           "terms/fluorescence/data", "terms/fluorescence/kernel", "truth/x", "truth/w"]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(surface=st.sampled_from(["external", "attribute", "truth", "link"]), target=st.sampled_from(TARGETS),
       size=st.sampled_from([1, 1000, 300_000]), allow=st.booleans(), name=st.sampled_from(
           ["report.md", "errors.json", "convergence.png", "reconstructions.png", "calibration.png"]),
       data=st.data())
def test_storage_surfaces_end_cleanly(tmp_path_factory, base, capsys, monkeypatch, surface, target, size, allow, name,
                                      data):
    """Any of the new surfaces: success or one line (exit 2), the input and the secret file untouched, no
    temporaries left, nothing written through a link."""
    tmp = tmp_path_factory.mktemp("fuzz")
    root = tmp / "case"
    root.mkdir()
    (root / "d.h5").write_bytes(base.read_bytes())
    secret = _secret_bin(tmp, 48 * 48 * 8 * 4)
    out = root / "out"
    if surface == "external":
        edit(root / "d.h5", lambda f: _external(f, target, secret, data.draw(st.sampled_from([None, 10**9]))))
    elif surface == "attribute":
        owner = data.draw(st.sampled_from(["/", "terms/ptychography", "terms/fluorescence", "variables/x",
                                           target]))
        _big_attribute(root / "d.h5", owner, data.draw(st.sampled_from(["junk", "object_shape", "modality", "format"])),
                       np.zeros(size) if size > 1 else np.array([60000, 60000]))
    elif surface == "truth":
        edit(root / "d.h5", lambda f: bomb(f, f"truth/{data.draw(st.sampled_from(['x', 'w', 'junk']))}",
                                             (2, 8 * size // 1000 + 1, 1000)))
    else:
        out.mkdir()
        link_to = data.draw(st.sampled_from([root / "d.h5", secret]))
        os.symlink(link_to, out / name)
    argv = ["compare", root / "d.h5", "-o", out, "--iterations", "1"] + (["--allow-external-links"] if allow else [])
    monkeypatch.setenv("MMIP_MAX_MEMORY", "2M")
    before = (digest(root / "d.h5"), digest(secret))
    atime = secret.stat().st_atime
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code in (0, 2), err
    if code:
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert (digest(root / "d.h5"), digest(secret)) == before
    if not allow and _atime_moves(tmp):
        assert secret.stat().st_atime == atime
    assert not list(root.rglob("*.tmp"))
