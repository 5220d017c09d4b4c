"""No collective inside an MPI agreement (docs/performance.md, "Memory budget of a run"): the ranks agree on the memory
plan between two agreements, and each term's local gradient of the balancing is agreed before its sum. A rank that
fails before it plans, or in its share of the balancing, while the other goes on ends both ranks with exit 2 and the
same one line, never a mismatch of collectives (a wrong plan, a ``TypeError`` or a hang)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mpi4py", reason="MPI needs mpi4py (make test installs mpich + mpi4py from wheels)")
pytest.importorskip("pylops_mpi", reason="MPI runs need pylops-mpi (make test installs it)")
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec on PATH (pip install mpich)")
#: seconds a rank may take (a failing run of two ranks takes about 4 s on 2 shared cores); a hung rank is killed
RANK_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def data(phantom_file):
    """A tiny joint file (ptychography and XRF, 20 x 20 object), split over two ranks."""
    return phantom_file(20, 12, "--noise", "0.03")


#: rank 1's own gradient fails (as a bug or a bad value of its share would), in the balancing's first sum over ranks
BROKEN_SHARE = """
import sys
from multimodal_ip.cli import main
from multimodal_ip.errors import DataError
from multimodal_ip.problem import JointProblem

def broken(self, v):
    raise DataError("rank 1: its share's gradient failed")

JointProblem.linearize = broken
sys.exit(main(sys.argv[1:]))
"""


def _two_ranks(first, second, env=None):
    """``mpiexec`` of rank 0's and rank 1's command lines (each killed after ``RANK_TIMEOUT_S``: a rank left waiting
    in a collective ends, and so the run): the process, with the one line each rank wrote."""
    rank = ["timeout", "-s", "KILL", str(RANK_TIMEOUT_S)]
    proc = subprocess.run([MPIEXEC, "-n", "1", *rank, *first, ":", "-n", "1", *rank, *second],
                          capture_output=True, text=True, timeout=RANK_TIMEOUT_S + 30, env=env)
    # one line per rank (mpiexec forwards the ranks' stderr as it comes: cut at the prefix)
    return proc, [line.strip() for line in proc.stderr.split("mmip reconstruct: ")[1:]]


@pytest.mark.parametrize("stop", [["--stop", "iterations"], []], ids=["plan", "stop-auto"])
def test_a_rank_failing_before_its_plan_ends_both_ranks(data, tmp_path, stop):
    """Rank 1 alone has a bad ``MMIP_MAX_MEMORY``: it fails reading the file's structure (``plan``: in the build,
    before its plan, while rank 0 plans; ``stop-auto``: in the decision of ``--stop auto``, while rank 0 goes on).
    Both ranks exit 2 within the timeout, one line each naming rank 1's failure, no traceback, nothing written."""
    cmd = [sys.executable, "-m", "multimodal_ip.cli", "reconstruct", str(data), "-o", str(tmp_path / "r.h5"),
           "--iterations", "2", *stop]
    env = {k: v for k, v in os.environ.items() if k != "MMIP_MAX_MEMORY"}
    proc, lines = _two_ranks(cmd, ["env", "MMIP_MAX_MEMORY=lots", *cmd], env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert lines == ["error: MMIP_MAX_MEMORY='lots': expected a positive size such as 8G, 500M or 1000000 "
                     "(MPI rank 1 of 2)"] * 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert not (tmp_path / "r.h5").exists()


def test_a_rank_failing_in_the_balancing_ends_both_ranks(data, tmp_path):
    """The balancing sums each term's gradient over the ranks: rank 1's own gradient fails while rank 0 waits in the
    first sum. Each rank's local work is agreed before its sum, so both exit 2 with rank 1's line."""
    args = ["reconstruct", str(data), "-o", str(tmp_path / "r.h5"), "--iterations", "2", "--stop", "iterations"]
    proc, lines = _two_ranks([sys.executable, "-m", "multimodal_ip.cli", *args],
                             [sys.executable, "-c", BROKEN_SHARE, *args])
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert lines == ["error: rank 1: its share's gradient failed (MPI rank 1 of 2)"] * 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "r.h5").exists()
