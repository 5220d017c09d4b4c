import numpy as np
import pytest
from hypothesis import HealthCheck, settings

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
