import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from multimodal_ip import Variable, VariableSpace
from multimodal_ip.problem import Linearization

settings.register_profile("ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow reproduction cases")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow reproduction case: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def phantom_file(tmp_path_factory):
    """``phantom_file(n, probe_size, *flags)``: the path of ``mmip simulate phantom --n n --probe-size probe_size
    --step 4 *flags`` (ptychography and XRF, with its truth), made once a session for each set of arguments (tests
    read it, never write it)."""
    from multimodal_ip.cli import main

    made: dict = {}

    def make(n, probe_size, *flags):
        key = (n, probe_size, *flags)
        if key not in made:
            path = tmp_path_factory.mktemp("phantom") / "d.h5"
            assert main(["simulate", "phantom", "-o", str(path), "--n", str(n), "--probe-size", str(probe_size),
                         "--step", "4", *flags]) == 0
            made[key] = path
        return made[key]

    return make


@pytest.fixture(scope="session")
def tiny_dataset():
    """A small joint ptychography + XRF dataset (n=48, Np=16, step 8, 3 % noise)."""
    from mmip_paper import simulate

    return simulate("phantom", seed=1, noise=0.03, n=48, probe_size=16, step=8)


def _killed_after_checkpoint(cmd, out):
    """Start ``cmd`` (writing ``out``), SIGKILL it once its first checkpoint exists; the checkpoint's path."""
    import os
    import signal
    import subprocess
    import time

    ckpt = out.with_name(out.name + ".ckpt.h5")
    proc = subprocess.Popen([*cmd, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "the run finished before it could be killed: make it longer"
    assert ckpt.exists()
    return ckpt


@pytest.fixture
def killed_after_checkpoint():
    """``killed_after_checkpoint(cmd, out)``: a run of ``cmd -o out`` killed right after its first checkpoint."""
    return _killed_after_checkpoint


@pytest.fixture
def killed_and_resumed(tmp_path, killed_after_checkpoint):
    """``killed_and_resumed(cmd) -> (uninterrupted, resumed)`` result dicts of ``cmd -o ...`` (a reconstruct command
    with checkpoints): one run straight through, one killed after its first checkpoint and resumed."""
    import subprocess

    from multimodal_ip.io import load_result

    def run(cmd):
        full, out = tmp_path / "uninterrupted.h5", tmp_path / "killed.h5"
        subprocess.run([*cmd, "-o", str(full)], check=True, capture_output=True)
        killed_after_checkpoint(cmd, out)
        subprocess.run([*cmd, "-o", str(out), "--resume"], check=True, capture_output=True)
        return load_result(full), load_result(out)

    return run


@pytest.fixture
def mpiexec():
    """The ``mpiexec`` of this environment (pip's mpich); the test is skipped without MPI."""
    import shutil
    import sys
    from pathlib import Path

    pytest.importorskip("mpi4py", reason="MPI needs mpi4py (make test installs mpich + mpi4py from wheels)")
    pytest.importorskip("pylops_mpi", reason="MPI runs need pylops-mpi (make test installs it)")
    exe = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if exe is None:
        pytest.skip("no mpiexec on PATH (pip install mpich)")
    return exe


class DiagonalObjective:
    """``f(x) = sum d (x - b)^2 / 2`` on ``n`` unknowns: the gradient is its one unknown-sized allocation (the
    value goes a block at a time). Only the members of :class:`~multimodal_ip.problem.Objective` L-BFGS and a staged
    run use (the memory tests count unknown vectors with it)."""

    def __init__(self, n, dtype=np.float64):
        rng = np.random.default_rng(0)
        self.space = VariableSpace([Variable("x", (n,), dtype=dtype)])
        self.d = (1 + rng.random(n)).astype(dtype)
        self.b = rng.random(n).astype(dtype)
        self.xp, self.regularizers, self.calibration, self.has_holdout, self.frozen = np, (), {}, False, ()

    def at_precision(self, v):
        return v

    def linearize(self, v):
        g = np.subtract(v, self.b)
        value = sum(0.5 * float((g[k:k + 65536] * self.d[k:k + 65536] * g[k:k + 65536]).sum())
                    for k in range(0, g.size, 65536))
        g *= self.d
        return Linearization(value, {"fit": value}, g, v, None)

    def relative_errors(self, v):
        return {}


@pytest.fixture(scope="session")
def diagonal_objective():
    """:class:`DiagonalObjective`, called ``diagonal_objective(n, dtype=np.float64)``."""
    return DiagonalObjective
