"""Hostile dataset and facility files: links leaving the file, malformed structure and attributes, declared sizes
beyond the memory budget, corrupt bytes; each one line, exit 2, nothing outside the case folder opened."""

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from hostile_helpers import bomb, cxi_file, edit, replace_dataset, run

from multimodal_ip.cli import main


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
    edit(root / "d.h5", lambda f: build(f, secret))
    for command in ("reconstruct", "compare", "hessian"):
        out = root / ("r.h5" if command == "reconstruct" else "out")
        run(root, [command, root / "d.h5", "-o", out, "--iterations", "1"], 2, message, capsys)


def test_soft_link_inside_the_file_is_followed(case, capsys):
    root, _ = case

    def move(f):
        f.move("terms/ptychography/probe", "probe_store")
        f["terms/ptychography/probe"] = h5py.SoftLink("/probe_store")

    edit(root / "d.h5", move)
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "2"], 0, "", capsys)


def test_external_links_only_when_allowed(case, capsys):
    root, secret = case
    other = root / "part.h5"
    with h5py.File(root / "d.h5") as f, h5py.File(other, "w") as g:
        g["data"] = f["terms/ptychography/data"][()]
    edit(root / "d.h5", lambda f: _external_data(f, other))
    argv = ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1"]
    run(root, argv, 2, "external link", capsys)
    run(root, [*argv, "--allow-external-links"], 0, "", capsys)


# ---- structure, attributes and declared sizes ------------------------------------------------------------------
def _set_attr(path, key, value):
    return lambda f: f[path].attrs.__setitem__(key, value)


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
    "string data": (replace_dataset("terms/ptychography/data", np.array([b"abc"])), "expected a numeric dataset"),
    "NaN data": (lambda f: f["terms/ptychography/data"].__setitem__((0, 0, 0), np.nan), "NaN or Inf"),
    "negative photons with poisson": (_set_attr("terms/ptychography", "photons_per_unit", -1.0),
                                      "photons_per_unit"),
    "zero photons with poisson": (_set_attr("terms/ptychography", "photons_per_unit", 0.0), "photons_per_unit"),
    "NaN photons with poisson": (_set_attr("terms/ptychography", "photons_per_unit", np.nan), "photons_per_unit"),
    "zero probe": (lambda f: f["terms/ptychography/probe"].__setitem__(..., 0), "probe is zero everywhere"),
    "truth of the wrong shape": (replace_dataset("truth/x", np.zeros((3, 3))), "/truth/x: expected shape"),
    "variables is a dataset": (lambda f: (f.__delitem__("variables"), f.create_dataset("variables", data=1)),
                               "expected a group"),
}


@pytest.mark.parametrize("name", STRUCTURE_CASES)
def test_malformed_structure_is_one_line(case, capsys, name):
    root, _ = case
    build, message = STRUCTURE_CASES[name]
    edit(root / "d.h5", build)
    extra = ["--likelihood", "poisson"] if "photons" in name else []
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1", *extra], 2, message, capsys)


def test_unused_datasets_are_never_read(case, capsys):
    """A gzip bomb in a dataset no modality reads (400 MB declared, a few kB on disk) costs nothing."""
    root, _ = case
    edit(root / "d.h5", lambda f: bomb(f, "terms/ptychography/unused", (100, 1000, 1000)))
    assert (root / "d.h5").stat().st_size < 50e6
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1"], 0, "", capsys)


def test_declared_size_beyond_the_budget_is_refused_before_reading(case, capsys, monkeypatch):
    root, _ = case
    edit(root / "d.h5", lambda f: bomb(f, "terms/ptychography/data", (400, 1000, 1000)))
    monkeypatch.setenv("MMIP_MAX_MEMORY", "200M")
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1"], 2, "memory budget", capsys)


def test_the_budget_follows_an_address_space_limit(case):
    """Under ``ulimit -v 3 GB`` a dataset declaring 4 GB is refused by name before anything is allocated."""
    import resource

    root, _ = case
    edit(root / "d.h5", lambda f: bomb(f, "terms/ptychography/data", (1000, 1000, 1000)))
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


def test_import_refuses_external_links_and_broken_geometry(tmp_path, tiny_dataset, capsys):
    from mmip_fluorescence.maps import export_maps
    from mmip_ptychography.cxi import Frame

    root = tmp_path / "imp"
    root.mkdir()
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as f:
        f["data"] = np.ones((25, 16, 16))
    cxi = cxi_file(root, tiny_dataset)
    frame = Frame(1e-8, (0.0, 0.0), (48, 48))
    export_maps(root / "maps.h5", tiny_dataset.terms["fluorescence"], frame)
    base = ["import", "--ptycho", cxi, "--xrf", root / "maps.h5", "-o", root / "d.h5"]
    run(root, [*base, "--xrf-axis-unit", "0"], 2, "--xrf-axis-unit must be", capsys)
    run(root, [*base, "--xrf-axis-unit", "nan"], 2, "--xrf-axis-unit must be", capsys)
    edit(root / "maps.h5", lambda f: f["MAPS/Scan/x_axis"].__setitem__(0, np.nan))
    run(root, base, 2, "expected finite real numbers", capsys)
    export_maps(root / "maps.h5", tiny_dataset.terms["fluorescence"], frame)
    edit(root / "maps.h5", replace_dataset("MAPS/XRF_Analyzed/Fitted/Channel_Names", np.array([b"Fe", b"Zn", b"Cu"])))
    run(root, base, 2, "3 channel names for 1 maps", capsys)
    edit(cxi, lambda f: f["entry_1/sample_1/geometry_1/translation"].__setitem__((0, 0), 1.0))
    run(root, base[:3] + ["-o", root / "d.h5"], 2, "check the translation unit", capsys)
    cxi = cxi_file(root, tiny_dataset)
    edit(cxi, lambda f: (f["entry_1/data_1"].__delitem__("data"),
                          f["entry_1/data_1"].__setitem__("data", h5py.ExternalLink(str(secret), "data"))))
    run(root, base[:3] + ["-o", root / "d.h5"], 2, "an external link to", capsys)
    assert not (root / "d.h5").exists()
