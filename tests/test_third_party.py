"""The third-party path: examples/custom_modality installed as its own distribution (make test installs it)."""

import subprocess
import sys

import pytest

KIT = [sys.executable, "-m", "pytest", "--mmip-conformance", "-p", "no:cacheprovider"]
toy = pytest.importorskip("mmip_toy", reason="install examples/custom_modality (make test does)")


def test_toy_is_listed_beside_builtins(capsys):
    from multimodal_ip.cli import main

    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if " toy " in f" {line} ")
    assert line.split()[:4] == ["modality", "toy", "mmip-toy", "0.1.0"]


def test_conformance_run_covers_installed_modalities(tmp_path):
    proc = subprocess.run(
        KIT + ["-v", "--rootdir", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    for name in ("toy-3x2", "toy-7x5", "ptychography-n16-Np8-Ne2", "ptychography-amplitude",
                 "fluorescence-n9-K4-Ne2-fft", "xrf-tomography-10x12-K48-Ne2", "xrf-tomography-map",
                 "transmission-tomography-10x12-K40-Ne2"):
        assert f"test_modality_adjoint[{name}] PASSED" in proc.stdout
        assert f"test_modality_taylor[{name}] PASSED" in proc.stdout


def test_conformance_run_catches_a_wrong_adjoint(tmp_path, monkeypatch):
    """A plugin whose Jacobian adjoint is wrong fails the conformance run, with the operator named."""
    pkg = tmp_path / "badmod"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "import numpy as np, pylops\n"
        "from multimodal_ip import hookimpl\n"
        "from multimodal_ip.operators import Linear\n"
        "class Bad(pylops.LinearOperator):\n"
        "    def __init__(self):\n"
        "        super().__init__(dtype=np.float64, shape=(3, 3), name='BadOp')\n"
        "    def _matvec(self, x): return 2 * x\n"
        "    def _rmatvec(self, y): return 3 * y\n"
        "class M:\n"
        "    def build_term(self, td, space, xp=None, **options): raise NotImplementedError\n"
        "    def conformance_cases(self, rng):\n"
        "        yield 'bad', Linear(Bad(), name='BadOp'), np.ones(3)\n"
        "@hookimpl\n"
        "def mmip_register_modalities(register):\n"
        "    register('bad', M())\n"
    )
    conftest = tmp_path / "conftest.py"
    conftest.write_text(
        "import badmod, multimodal_ip.plugins as p\n"
        "_orig = p.build_plugin_manager\n"
        "def patched(extra_plugins=(), load_entry_points=True):\n"
        "    return _orig(extra_plugins=(*extra_plugins, badmod), load_entry_points=load_entry_points)\n"
        "p.build_plugin_manager = patched\n"
    )
    proc = subprocess.run(
        KIT + ["-q", "--rootdir", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)},
    )
    assert proc.returncode == 1
    assert "adjoint check failed for J(bad: BadOp)" in proc.stdout


def test_a_modality_with_its_own_variable_names_gets_tables_and_figures(tmp_path, capsys):
    """Two toy terms over a variable named ``density`` (no x, no w): compare, report and hessian work unchanged,
    and the run file's regularizers apply."""
    import h5py
    import numpy as np

    from multimodal_ip.cli import main

    rng = np.random.default_rng(1)
    truth = 0.2 * rng.standard_normal((4, 5))
    path = tmp_path / "toy.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"], f.attrs["format_version"] = "multimodal_ip", 1
        f["truth/density"] = truth
        d = f.create_dataset("variables/density", data=h5py.Empty("f8"))  # a 2-D map: the toy reads it flattened
        d.attrs["shape"], d.attrs["dtype"] = np.array([4, 5]), "float64"
        for name in ("near", "far"):
            g = f.create_group(f"terms/{name}")
            g.attrs["modality"], g.attrs["variable"] = "toy", "density"
            g["matrix"] = 0.3 * rng.standard_normal((40, 20))
            g["data"] = np.exp(-g["matrix"][()] @ truth.ravel())
    (tmp_path / "run.toml").write_text(
        'balance_reference = "near"\niterations = 20\n'
        'regularizers = [{name = "tikhonov", strength = 1e-9, variables = ["density"]}]\n')
    assert main(["compare", str(path), "-o", str(tmp_path / "cmp"), "--config", str(tmp_path / "run.toml"),
                 "--accept-stall"]) == 0
    out = capsys.readouterr().out
    assert "| method | error density | error total | time (s) |" in out
    assert (tmp_path / "cmp" / "reconstructions.png").stat().st_size > 1000
    assert main(["reconstruct", str(path), "-o", str(tmp_path / "r.h5"), "--config", str(tmp_path / "run.toml"),
                 "--accept-stall"]) == 0
    assert "objective_tikhonov" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "r.h5"), "-o", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "reconstructions.png").stat().st_size > 1000
    assert main(["hessian", str(path), "-o", str(tmp_path / "h"), "--balance-reference", "near", "--grid", "5"]) == 0
    assert (tmp_path / "h" / "eigenvalues.png").exists()
