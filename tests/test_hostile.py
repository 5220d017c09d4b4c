"""Hostile inputs: every case ends with its documented exit code and one line, inputs untouched (checksums), no
Python-level open outside the case folder (audit hook), no leftover temporaries.

Each case builds its files in its own folder from the small simulated dataset; a ``secret.h5`` beside that folder
stands for a file the program must never read.
"""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from multimodal_ip.cli import main
from multimodal_ip.io import save_dataset

OPENED: list = []


def _audit(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "-"


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_dataset):
    path = tmp_path_factory.mktemp("hostile") / "base.h5"
    save_dataset(path, tiny_dataset)
    return path


@pytest.fixture
def case(tmp_path, base):
    """A case folder holding ``d.h5`` (a copy of the base dataset), and ``secret.h5`` outside it."""
    root = tmp_path / "case"
    root.mkdir()
    shutil.copy(base, root / "d.h5")
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as f:
        f["data"] = np.ones((25, 16, 16))
        f["x"] = np.ones(3)
    return root, secret


def run(root, argv, code, message, capsys, inputs=None):
    """Run ``mmip argv``; check exit code, one line, inputs unchanged, nothing opened outside ``root``."""
    inputs = [Path(p) for p in (inputs if inputs is not None else root.rglob("*")) if Path(p).is_file()]
    before = {p: _digest(p) for p in inputs}
    OPENED.clear()
    got = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    outside = [p for p in OPENED if "secret" in p]
    assert got == code, err
    if code:
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert any(m in err for m in (message if isinstance(message, tuple) else (message,))), err
    assert not outside, outside
    assert {p: _digest(p) for p in inputs} == before
    assert not list(root.rglob("*.tmp")), list(root.rglob("*.tmp"))
    return err


def _edit(path, fn):
    with h5py.File(path, "a") as f:
        fn(f)


# ---- links: nothing outside the named input is read ----------------------------------------------------------
def _external_data(f, secret):
    del f["terms/ptychography/data"]
    f["terms/ptychography/data"] = h5py.ExternalLink(str(secret), "data")


def _external_group(f, secret):
    f["terms/other"] = h5py.ExternalLink(str(secret), "/")


def _external_truth(f, secret):
    del f["truth/x"]
    f["truth/x"] = h5py.ExternalLink(str(secret), "x")


def _virtual(f, secret):
    layout = h5py.VirtualLayout(shape=(25, 16, 16), dtype="f8")
    layout[:] = h5py.VirtualSource(str(secret), "data", shape=(25, 16, 16))
    del f["terms/ptychography/data"]
    f["terms/ptychography"].create_virtual_dataset("data", layout)


def _virtual_missing(f, secret):
    layout = h5py.VirtualLayout(shape=(25, 16, 16), dtype="f8")
    layout[:] = h5py.VirtualSource(str(secret.with_name("gone.h5")), "data", shape=(25, 16, 16))
    del f["terms/ptychography/data"]
    f["terms/ptychography"].create_virtual_dataset("data", layout, fillvalue=0)


def _soft_loop(f, secret):
    f["terms/loop"] = h5py.SoftLink("/terms/loop")


def _dangling(f, secret):
    del f["terms/ptychography/probe"]
    f["terms/ptychography/probe"] = h5py.SoftLink("/nowhere/probe")


LINK_CASES = {
    "external link as data": (_external_data, "an external link to"),
    "external link as a term group": (_external_group, "an external link to"),
    "external link as truth": (_external_truth, "an external link to"),
    "virtual dataset": (_virtual, "a virtual dataset reading"),
    "virtual dataset, source missing": (_virtual_missing, "a virtual dataset reading"),
    "soft link loop": (_soft_loop, "cannot be resolved"),
    "dangling soft link": (_dangling, "cannot be resolved"),
}


@pytest.mark.parametrize("name", LINK_CASES)
def test_links_leaving_the_file_are_refused(case, capsys, name):
    root, secret = case
    build, message = LINK_CASES[name]
    _edit(root / "d.h5", lambda f: build(f, secret))
    for command in ("reconstruct", "compare", "hessian"):
        out = root / ("r.h5" if command == "reconstruct" else "out")
        run(root, [command, root / "d.h5", "-o", out, "--iterations", "1"], 2, message, capsys)


def test_soft_link_inside_the_file_is_followed(case, capsys):
    root, _ = case

    def move(f):
        f.move("terms/ptychography/probe", "probe_store")
        f["terms/ptychography/probe"] = h5py.SoftLink("/probe_store")

    _edit(root / "d.h5", move)
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "2"], 0, "", capsys)


def test_external_links_only_when_allowed(case, capsys):
    root, secret = case
    other = root / "part.h5"
    with h5py.File(root / "d.h5") as f, h5py.File(other, "w") as g:
        g["data"] = f["terms/ptychography/data"][()]
    _edit(root / "d.h5", lambda f: _external_data(f, other))
    argv = ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1"]
    run(root, argv, 2, "external link", capsys)
    run(root, [*argv, "--allow-external-links"], 0, "", capsys)


# ---- structure, attributes and declared sizes ------------------------------------------------------------------
def _set_attr(path, key, value):
    return lambda f: f[path].attrs.__setitem__(key, value)


def _replace(path, value):
    def fn(f):
        del f[path]
        f[path] = value
    return fn


def _variable(attr, value):
    return lambda f: f["variables/x"].attrs.__setitem__(attr, value)


STRUCTURE_CASES = {
    "term is a dataset": (lambda f: f["terms"].create_dataset("bad", data=1), "expected a group (a data term)"),
    "truth is a group": (lambda f: (f["truth"].__delitem__("x"), f["truth"].create_group("x")),
                         "expected a dataset, got a group"),
    "format_version string": (_set_attr("/", "format_version", "1"), "format_version"),
    "format_version array": (_set_attr("/", "format_version", [1, 1]), "format_version"),
    "format_version 1.7": (_set_attr("/", "format_version", 1.7), "format_version 1.7"),
    "format not ours": (_set_attr("/", "format", "nexus"), "not a multimodal_ip file"),
    "string bound": (_variable("lower", "low"), "/variables/x"),
    "lower above upper": (lambda f: (f["variables/x"].attrs.__setitem__("lower", 2.0),
                                     f["variables/x"].attrs.__setitem__("upper", 1.0)), "lower 2.0 > upper 1.0"),
    "NaN bound": (_variable("lower", np.nan), "is NaN"),
    "zero-size variable": (_variable("shape", np.array([0, 48])), "must be positive"),
    "huge variable": (_variable("shape", np.array([2**25, 2**25])), "sane size"),
    "no modality": (lambda f: f["terms/ptychography"].attrs.__delitem__("modality"), "missing attribute 'modality'"),
    "unknown modality": (_set_attr("terms/ptychography", "modality", "sonar"), "no modality 'sonar'"),
    "string data": (_replace("terms/ptychography/data", np.array([b"abc"])), "expected a numeric dataset"),
    "NaN data": (lambda f: f["terms/ptychography/data"].__setitem__((0, 0, 0), np.nan), "NaN or Inf"),
    "negative photons with poisson": (_set_attr("terms/ptychography", "photons_per_unit", -1.0),
                                      "photons_per_unit"),
    "zero photons with poisson": (_set_attr("terms/ptychography", "photons_per_unit", 0.0), "photons_per_unit"),
    "NaN photons with poisson": (_set_attr("terms/ptychography", "photons_per_unit", np.nan), "photons_per_unit"),
    "zero probe": (lambda f: f["terms/ptychography/probe"].__setitem__(..., 0), "probe is zero everywhere"),
    "truth of the wrong shape": (_replace("truth/x", np.zeros((3, 3))), "/truth/x: expected shape"),
    "variables is a dataset": (lambda f: (f.__delitem__("variables"), f.create_dataset("variables", data=1)),
                               "expected a group"),
}


@pytest.mark.parametrize("name", STRUCTURE_CASES)
def test_malformed_structure_is_one_line(case, capsys, name):
    root, _ = case
    build, message = STRUCTURE_CASES[name]
    _edit(root / "d.h5", build)
    extra = ["--likelihood", "poisson"] if "photons" in name else []
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1", *extra], 2, message, capsys)


def _bomb(f, path, shape):
    """A dataset of ``shape`` that is a few kB on disk (chunked, compressed, all fill value)."""
    if path in f:
        del f[path]
    f.create_dataset(path, shape=shape, dtype="f4", compression="gzip", fillvalue=1.0,
                     chunks=(1,) * (len(shape) - 2) + shape[-2:])


def test_unused_datasets_are_never_read(case, capsys):
    """A gzip bomb in a dataset no modality reads (400 MB declared, a few kB on disk) costs nothing."""
    root, _ = case
    _edit(root / "d.h5", lambda f: _bomb(f, "terms/ptychography/unused", (100, 1000, 1000)))
    assert (root / "d.h5").stat().st_size < 50e6
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1"], 0, "", capsys)


def test_declared_size_beyond_the_budget_is_refused_before_reading(case, capsys, monkeypatch):
    root, _ = case
    _edit(root / "d.h5", lambda f: _bomb(f, "terms/ptychography/data", (400, 1000, 1000)))
    monkeypatch.setenv("MMIP_MAX_MEMORY", "200M")
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1"], 2, "memory budget", capsys)


def test_the_budget_follows_an_address_space_limit(case):
    """Under ``ulimit -v 3 GB`` a dataset declaring 4 GB is refused by name before anything is allocated."""
    import resource

    root, _ = case
    _edit(root / "d.h5", lambda f: _bomb(f, "terms/ptychography/data", (1000, 1000, 1000)))
    limit = 3 << 30

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = {k: v for k, v in os.environ.items() if k != "MMIP_MAX_MEMORY"}
    proc = subprocess.run([sys.executable, "-m", "multimodal_ip.cli", "reconstruct", str(root / "d.h5"), "-o",
                           str(root / "r.h5")], capture_output=True, text=True, preexec_fn=cap, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "memory budget" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_corrupt_bytes(case, capsys):
    root, _ = case
    raw = bytearray((root / "d.h5").read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 4096] = os.urandom(4096)
    (root / "d.h5").write_bytes(bytes(raw))
    code = main(["reconstruct", str(root / "d.h5"), "-o", str(root / "r.h5"), "--iterations", "1"])
    err = capsys.readouterr().err.strip()
    assert code in (0, 1, 2) and len(err.splitlines()) <= 1 and "Traceback" not in err
    if code == 1:
        assert "traceback in" in err


# ---- outputs: never over an input, at any spelling --------------------------------------------------------------
def test_output_over_an_input_at_any_spelling(case, capsys):
    root, _ = case
    data = root / "d.h5"
    os.symlink(data, root / "link.h5")
    os.link(data, root / "hard.h5")
    for out in (data, root / "link.h5", root / "hard.h5", Path(os.path.relpath(data))):
        run(root, ["reconstruct", data, "-o", out, "--iterations", "1"], 2, "it is the input", capsys)
    shutil.copy(data, root / "r.h5.ckpt.h5")  # the checkpoint name of -o r.h5
    run(root, ["reconstruct", root / "r.h5.ckpt.h5", "-o", root / "r.h5", "--iterations", "2",
               "--checkpoint-every", "1"], 2, "it is the input", capsys)
    run(root, ["compare", data, "-o", root, "--iterations", "1"], 2, "contains the input", capsys)
    (root / "cfg.toml").write_text("iterations = 1\n")
    run(root, ["reconstruct", data, "-o", root / "cfg.toml", "--config", root / "cfg.toml"], 2, "it is the input",
        capsys)


@pytest.mark.parametrize(("out", "message"), [("", "empty output name"), ("a\nb.h5", "contains a newline"),
                                              ("d.h5/r.h5", "is not a folder"), ("sub", "it is a folder")])
def test_bad_output_names(case, capsys, out, message):
    root, _ = case
    (root / "sub").mkdir()
    target = out if not out or "\n" in out else str(root / out)
    run(root, ["reconstruct", root / "d.h5", "-o", target, "--iterations", "1"], 2, message, capsys)


def test_import_never_writes_over_its_inputs(tmp_path, tiny_dataset, capsys):
    from mmip_fluorescence.maps import export_maps
    from mmip_ptychography.cxi import Frame, export_cxi

    root = tmp_path / "imp"
    root.mkdir()
    export_cxi(root / "scan.cxi", tiny_dataset.terms["ptychography"], pixel_size_m=1e-8)
    frame = Frame(1e-8, (0.0, 0.0), (48, 48))
    export_maps(root / "maps.h5", tiny_dataset.terms["fluorescence"], frame)
    os.symlink(root / "scan.cxi", root / "alias.cxi")
    for out in ("scan.cxi", "alias.cxi", "maps.h5"):
        run(root, ["import", "--ptycho", root / "scan.cxi", "--xrf", root / "maps.h5", "-o", root / out], 2,
            "it is the input", capsys)


def _cxi_file(root, tiny_dataset):
    from mmip_ptychography.cxi import export_cxi

    export_cxi(root / "scan.cxi", tiny_dataset.terms["ptychography"], pixel_size_m=1e-8)
    return root / "scan.cxi"


def test_import_refuses_external_links_and_broken_geometry(tmp_path, tiny_dataset, capsys):
    from mmip_fluorescence.maps import export_maps
    from mmip_ptychography.cxi import Frame

    root = tmp_path / "imp"
    root.mkdir()
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as f:
        f["data"] = np.ones((25, 16, 16))
    cxi = _cxi_file(root, tiny_dataset)
    frame = Frame(1e-8, (0.0, 0.0), (48, 48))
    export_maps(root / "maps.h5", tiny_dataset.terms["fluorescence"], frame)
    base = ["import", "--ptycho", cxi, "--xrf", root / "maps.h5", "-o", root / "d.h5"]
    run(root, [*base, "--xrf-axis-unit", "0"], 2, "--xrf-axis-unit must be", capsys)
    run(root, [*base, "--xrf-axis-unit", "nan"], 2, "--xrf-axis-unit must be", capsys)
    _edit(root / "maps.h5", lambda f: f["MAPS/Scan/x_axis"].__setitem__(0, np.nan))
    run(root, base, 2, "expected finite real numbers", capsys)
    export_maps(root / "maps.h5", tiny_dataset.terms["fluorescence"], frame)
    _edit(root / "maps.h5", _replace("MAPS/XRF_Analyzed/Fitted/Channel_Names", np.array([b"Fe", b"Zn", b"Cu"])))
    run(root, base, 2, "3 channel names for 1 maps", capsys)
    _edit(cxi, lambda f: f["entry_1/sample_1/geometry_1/translation"].__setitem__((0, 0), 1.0))
    run(root, base[:3] + ["-o", root / "d.h5"], 2, "check the translation unit", capsys)
    cxi = _cxi_file(root, tiny_dataset)
    _edit(cxi, lambda f: (f["entry_1/data_1"].__delitem__("data"),
                          f["entry_1/data_1"].__setitem__("data", h5py.ExternalLink(str(secret), "data"))))
    run(root, base[:3] + ["-o", root / "d.h5"], 2, "an external link to", capsys)
    assert not (root / "d.h5").exists()


# ---- run files, flags and environment ------------------------------------------------------------------------
@pytest.mark.parametrize(("flags", "message"), [
    (["--solver-option", "gtol=abc"], "option gtol='abc': expected a finite number"),
    (["--solver-option", "memory=abc"], "option memory='abc': expected a positive integer"),
    (["--solver-option", "memory=0"], "expected a positive integer"),
    (["--solver", "gauss-newton", "--solver-option", "inner_iterations=-5"], "expected a positive integer"),
    (["--solver-option", "method=nope"], "lbfgs method must be"),
    (["--terms", ""], "terms must be a non-empty list"),
    (["--terms", "ptychography,ptychography"], "lists a term twice"),
    (["--balance-c", "nan"], "balance_c must be a finite number > 0"),
    (["--balance-c", "-1"], "balance_c must be a finite number > 0"),
    (["--balance-c", "1e308"], "balance_c must be a finite number > 0"),
    (["--balance-reference", "sonar"], "is not one of the terms"),
    (["--refine", "wobble"], "cannot refine ['wobble']"),
    (["--regularizer", "tv:abc:x"], "strength must be a number"),
    (["--regularizer", "tv:1e-3:nope"], "nope"),
    (["--regularizer", "sharpen:1:x"], "no regularizer 'sharpen'"),
    (["--solver", "admm"], "needs at least one regularizer"),
])
def test_bad_flags(case, capsys, flags, message):
    root, _ = case
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1", *flags], 2, message, capsys)


def test_admm_from_the_command_line(case, capsys):
    root, _ = case
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "2", "--solver", "admm",
               "--regularizer", "tv:1e-4:x,w", "--regularizer", "nonnegative::w"], 0, "", capsys)


RUN_FILES = {
    "directory": (lambda p: p.mkdir(), "expected a regular run file, got a directory"),
    "invalid utf-8": (lambda p: p.write_bytes(b"iterations = \xff\xfe\n"), "not valid UTF-8"),
    # too deep for the parser, or (under a raised recursion limit: mypy's, when it ran in the same process) parsed
    # and refused for its unknown key: one line either way
    "deep nesting": (lambda p: p.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n"),
                     ("invalid TOML", "unknown setting 'a'")),
    "too large": (lambda p: p.write_text("# " + "x" * (2 << 20) + "\n"), "more than the"),
    "unknown method": (lambda p: p.write_text('solver_options = {method = "bogus"}\n'), "lbfgs method must be"),
    "bad regularizer table": (lambda p: p.write_text('regularizers = [{name = "tv"}]\n'), "needs name"),
    "term options for a missing term": (lambda p: p.write_text('[term_options.sonar]\nloss = "x"\n'),
                                        "term_options"),
}


@pytest.mark.parametrize("name", RUN_FILES)
def test_bad_run_files(case, capsys, name):
    root, _ = case
    build, message = RUN_FILES[name]
    build(root / "run.toml")
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--config", root / "run.toml"], 2, message,
        capsys)


def test_special_files_are_refused_without_hanging(case, capsys):
    root, _ = case
    fifo = root / "fifo"
    os.mkfifo(fifo)
    run(root, ["reconstruct", fifo, "-o", root / "r.h5"], 2, "got a FIFO", capsys, inputs=[root / "d.h5"])
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--config", fifo], 2, "got a FIFO", capsys,
        inputs=[root / "d.h5"])
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--config", "/dev/zero"], 2, "not a regular",
        capsys, inputs=[root / "d.h5"])
    run(root, ["import", "--ptycho", fifo, "-o", root / "x.h5"], 2, "got a FIFO", capsys, inputs=[root / "d.h5"])


@pytest.mark.parametrize(("var", "value", "message"), [("PMI_SIZE", "abc", "PMI_SIZE='abc'"),
                                                       ("MMIP_FFT_WORKERS", "0", "MMIP_FFT_WORKERS='0'"),
                                                       ("MMIP_MAX_MEMORY", "lots", "MMIP_MAX_MEMORY='lots'"),
                                                       ("MMIP_BLAS_THREADS", "0", "MMIP_BLAS_THREADS='0'")])
def test_bad_environment(case, capsys, monkeypatch, var, value, message):
    root, _ = case
    monkeypatch.setenv(var, value)
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1"], 2, message, capsys)


@pytest.mark.parametrize(("argv", "message"), [
    (["simulate", "phantom", "--n", "0"], "--n must be >= 1"),
    (["simulate", "phantom", "--step", "0"], "--step must be >= 1"),
    (["simulate", "phantom", "--probe-size", "0"], "--probe-size must be >= 1"),
    (["simulate", "phantom", "--n-elements", "0"], "--n-elements must be >= 1"),
    (["simulate", "phantom", "--seed", "-1"], "--seed must be >= 0"),
    (["simulate", "phantom", "--noise", "nan"], "--noise must be"),
    (["simulate", "phantom", "--position-jitter", "nan"], "--position-jitter must be"),
    (["simulate", "phantom", "--n", "200000"], "memory budget"),
    (["simulate", "phantom", "--n", "32", "--probe-size", "8"], "zone-plate"),
])
def test_bad_simulations(case, capsys, argv, message):
    root, _ = case
    run(root, [*argv, "-o", root / "s.h5"], 2, message, capsys)
    assert not (root / "s.h5").exists()


def test_report_and_hessian_flags(case, capsys):
    root, _ = case
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "2"], 0, "", capsys)
    run(root, ["report", root / "r.h5", "-o", root / "r.h5"], 2, "it is the input", capsys)
    run(root, ["report", root / "d.h5", "-o", root / "rep"], 2, "not a multimodal_ip result file", capsys)
    for flag in ("--grid", "--k", "--dense-max"):
        run(root, ["hessian", root / "d.h5", "-o", root / "h", flag, "0"], 2, f"{flag} must be >= 1", capsys)


# ---- checkpoints and resume ---------------------------------------------------------------------------------
def test_resume_refuses_another_dataset_and_bad_checkpoints(case, capsys, tiny_dataset):
    from dataclasses import replace

    root, _ = case
    argv = ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "6", "--checkpoint-every", "2"]
    run(root, argv[:5] + ["2", "--checkpoint-every", "1"], 0, "", capsys)
    # a checkpoint as an interrupted run leaves it
    from multimodal_ip.io.results import load_checkpoint, save_checkpoint
    from multimodal_ip.safety import file_fingerprint

    (root / "keep").mkdir()
    state = {"solver": "lbfgs", "iteration": 1, "elapsed": 0.1, "scalars": {},
             "arrays": {"x": np.ones(2 * 48 * 48), "s_list": np.zeros((0, 2 * 48 * 48)),
                        "y_list": np.zeros((0, 2 * 48 * 48))}, "history": {"iteration": np.zeros(1)}}
    from multimodal_ip.cli import build_parser
    from multimodal_ip.config import run_config

    cfg = run_config(build_parser().parse_args([str(a) for a in argv]))
    ckpt = root / "r.h5.ckpt.h5"
    other = root / "other.h5"
    ds = replace(tiny_dataset, terms={k: replace(t, arrays={**t.arrays, "data": t.arrays["data"] * 1.01})
                                      for k, t in tiny_dataset.terms.items()})
    save_dataset(other, ds)
    save_checkpoint(ckpt, state, cfg, file_fingerprint(other))
    run(root, [*argv, "--resume"], 2, "made from another input", capsys)
    state["arrays"]["x"] = np.full(2 * 48 * 48, np.nan)
    save_checkpoint(ckpt, state, cfg, file_fingerprint(root / "d.h5"))
    run(root, [*argv, "--resume"], 2, "contains NaN or Inf", capsys)
    ckpt.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(2000))
    run(root, [*argv, "--resume"], 2, "r.h5.ckpt.h5", capsys)
    state["arrays"]["x"] = np.ones(7)
    save_checkpoint(ckpt, state, cfg, file_fingerprint(root / "d.h5"))
    run(root, [*argv, "--resume"], 2, "holds x of shape (7,)", capsys)
    assert load_checkpoint(ckpt)[1]["fingerprint"] == file_fingerprint(root / "d.h5")


def test_stale_temporaries_are_removed_and_umask_respected(case, capsys):
    root, _ = case
    from multimodal_ip.atomic import temporary_marker, temporary_prefix

    # a temporary of this program on this machine whose pid cannot be running, its marker inside: provably ours
    # (tests/test_hostile_storage.py: what is not provably ours stays)
    stale = root / (temporary_prefix(root / "r.h5").replace(f".{os.getpid()}.", ".999999999.", 1) + "abc.tmp")
    stale.write_bytes(temporary_marker(999999999).ljust(512, b"\0") + b"x" * 100)
    old = os.umask(0o027)
    try:
        run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1"], 0, "", capsys,
            inputs=[root / "d.h5"])
    finally:
        os.umask(old)
    assert not stale.exists()
    assert (root / "r.h5").stat().st_mode & 0o777 == 0o640


def test_a_failed_checkpoint_write_does_not_end_the_run(case, capsys, monkeypatch):
    import multimodal_ip.io.results as results
    from multimodal_ip.errors import DataError

    root, _ = case

    def full_disk(*args, **kwargs):
        msg = "cannot write r.h5.ckpt.h5: No space left on device"
        raise DataError(msg)

    monkeypatch.setattr(results, "save_checkpoint", full_disk)
    code = main([str(a) for a in ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "3",
                                  "--checkpoint-every", "1"]])
    err = capsys.readouterr().err
    assert code == 0 and err.count("checkpoint not written") == 1
    assert not list(root.glob(".*.tmp"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_exits_130_with_a_consistent_checkpoint(case, sig):
    root, _ = case
    from multimodal_ip.io.results import load_checkpoint

    # a run long enough to be interrupted: 625 patterns at 10 % noise, far from round-off convergence
    assert main(["simulate", "phantom", "-o", str(root / "d.h5"), "--n", "128", "--probe-size", "32", "--step", "4",
                 "--noise", "0.1"]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "multimodal_ip.cli", "reconstruct", str(root / "d.h5"), "-o",
                             str(root / "r.h5"), "--iterations", "100000", "--checkpoint-every", "1",
                             "--solver-option", "gtol=0"], stderr=subprocess.PIPE, text=True,
                            # a shell's background job inherits SIGINT ignored; a terminal user's run does not
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    ckpt = root / "r.h5.ckpt.h5"
    deadline = time.time() + 60
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].endswith("interrupted") and "Traceback" not in err
    state, _ = load_checkpoint(ckpt)
    assert state["iteration"] >= 1 and not list(root.glob(".*.tmp"))


def test_unexpected_exceptions_are_one_line_with_a_log(case, capsys, monkeypatch):
    root, _ = case
    import multimodal_ip.cli as cli

    def boom(args):
        msg = "a bug"
        raise ZeroDivisionError(msg)

    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser(), boom))
    assert main(["plugins"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "internal error: ZeroDivisionError: a bug" in err
    log = Path(err.split("traceback in ")[1].split(";")[0])
    assert "Traceback" in log.read_text()
    log.unlink()


def _with_func(parser, func):
    for action in parser._subparsers._group_actions:
        for sub in action.choices.values():
            sub.set_defaults(func=func)
    return parser


@pytest.mark.parametrize("where", ["data", "output", "config"])
@pytest.mark.parametrize("command", ["reconstruct", "compare", "tune"])
def test_file_names_with_a_nul_byte_are_bad_input(case, capsys, where, command):
    """The OS cannot name such a file (os.stat raises ValueError): one line, exit 2 (was an internal error)."""
    root, _ = case
    data, out = str(root / "d.h5"), str(root / "out")
    argv = [command, data + "\x00x" if where == "data" else data, "-o", out + "\x00" if where == "output" else out,
            "--iterations", "1"] + (["--config", "\x00"] if where == "config" else [])
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "NUL byte" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(("command", "dtype", "message"), [
    ("reconstruct", "float64", "balancing against"),
    ("tune", "float64", "held-out loss at the flat start is not finite"),
    ("reconstruct", "float32", "do not fit the compute precision float32"),
    ("tune", "float32", "do not fit the compute precision float32")])
def test_overflowing_balance_is_one_line(case, capsys, command, dtype, message):
    """A coupling so large the start gradients overflow (float64), or that float32 cannot hold: one error line, no
    numpy warnings before it (found by the flag fuzzer: tune --coupling 1e308)."""
    root, _ = case
    capsys.readouterr()
    assert main([command, str(root / "d.h5"), "-o", str(root / "out"), "--iterations", "1", "--coupling",
                 "1e308", "--dtype", dtype]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
