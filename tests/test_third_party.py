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
                 "fluorescence-n9-K4-Ne2-fft"):
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
