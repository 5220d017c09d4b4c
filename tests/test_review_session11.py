"""Review of the MPI agreements (session 11): a rank that fails alone while it turns the run configuration into the
build's options (``cli.common._build_options``: ``--backend cupy`` on a node without a usable GPU, a regularizer
plugin missing on one node) ends every rank with exit 2 and one agreed line, instead of leaving the others waiting in
the build's first agreement (a hang until the rank is killed)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from multimodal_ip.cli import main

pytest.importorskip("mpi4py", reason="MPI needs mpi4py (make test installs mpich + mpi4py from wheels)")
pytest.importorskip("pylops_mpi", reason="MPI runs need pylops-mpi (make test installs it)")
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec on PATH (pip install mpich)")
#: seconds a rank may take (a failing run of two ranks takes about 4 s on 2 shared cores); a hung rank is killed
RANK_TIMEOUT_S = 60
CLI = [sys.executable, "-m", "multimodal_ip.cli"]
#: rank 1's node has no usable GPU: its backend check fails (as ``_xp("cupy")`` does there), then the command runs
NO_GPU = """
import sys
import multimodal_ip.cli.common as common
from multimodal_ip.cli import main
from multimodal_ip.errors import ConfigError

def no_gpu(backend):
    raise ConfigError("backend 'cupy' is not available here (no device); use --backend numpy")

common._xp = no_gpu
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny joint file (ptychography and XRF, 20 x 20 object), split over two ranks."""
    path = tmp_path_factory.mktemp("review11") / "d.h5"
    assert main(["simulate", "phantom", "-o", str(path), "--n", "20", "--probe-size", "12", "--step", "4",
                 "--noise", "0.03"]) == 0
    return path


def test_a_rank_failing_in_the_build_options_ends_both_ranks(data, tmp_path):
    """Rank 1 alone fails its backend check, before the build's first agreement, while rank 0 goes on to it: both
    exit 2 within the timeout with rank 1's line, no traceback, nothing written."""
    out = tmp_path / "r.h5"
    args = ["reconstruct", str(data), "-o", str(out), "--iterations", "2", "--stop", "iterations"]
    parts: list = []
    for rank, cmd in enumerate(([*CLI, *args], [sys.executable, "-c", NO_GPU, *args])):
        parts += [":"] * bool(parts) + ["-n", "1", "timeout", "-s", "KILL", str(RANK_TIMEOUT_S),
                                        "sh", "-c", 'exec "$@" 2>"$0"', str(tmp_path / f"stderr.{rank}"), *cmd]
    proc = subprocess.run([MPIEXEC, *parts], capture_output=True, text=True, timeout=RANK_TIMEOUT_S + 30)
    errs = [(tmp_path / f"stderr.{r}").read_text() if (tmp_path / f"stderr.{r}").exists() else "" for r in (0, 1)]
    assert proc.returncode == 2, (proc.returncode, errs, proc.stderr[-2000:])
    assert errs == ["mmip reconstruct: error: backend 'cupy' is not available here (no device); use --backend numpy "
                    "(MPI rank 1 of 2)\n"] * 2, errs
    assert not out.exists() and not out.with_name(out.name + ".ckpt.h5").exists()

#: rank 1's share runs out of memory at the solve's first evaluation (after the build and the balancing)
OUT_OF_MEMORY = """
import sys
import multimodal_ip.cli.common as common
from multimodal_ip.cli import main

real = common._check_start

def out_of_memory(problem, *args):
    problem.local.linearize = lambda v: (_ for _ in ()).throw(MemoryError("rank 1's share"))
    return real(problem, *args)

common._check_start = out_of_memory
sys.exit(main(sys.argv[1:]))
"""


def test_a_rank_out_of_memory_in_the_solve_ends_both_ranks(data, tmp_path):
    """Rank 1 alone runs out of memory in an evaluation of the solve, while rank 0 goes on to its sums: every
    evaluation is agreed before its sums, so both ranks stop with the same line (before: rank 0 hung)."""
    out = tmp_path / "r.h5"
    args = ["reconstruct", str(data), "-o", str(out), "--iterations", "2", "--stop", "iterations"]
    parts: list = []
    for rank, cmd in enumerate(([*CLI, *args], [sys.executable, "-c", OUT_OF_MEMORY, *args])):
        parts += [":"] * bool(parts) + ["-n", "1", "timeout", "-s", "KILL", str(RANK_TIMEOUT_S),
                                        "sh", "-c", 'exec "$@" 2>"$0"', str(tmp_path / f"stderr.{rank}"), *cmd]
    proc = subprocess.run([MPIEXEC, *parts], capture_output=True, text=True, timeout=RANK_TIMEOUT_S + 30)
    errs = [(tmp_path / f"stderr.{r}").read_text() if (tmp_path / f"stderr.{r}").exists() else "" for r in (0, 1)]
    assert proc.returncode not in (0, 9, 137), (proc.returncode, errs, proc.stderr[-2000:])  # 9/137: a rank killed
    assert proc.returncode == 2, (proc.returncode, errs)
    assert errs[0] == errs[1] and "out of memory" in errs[0] and "Traceback" not in errs[0], errs
    assert not out.exists()

#: rank 1 alone fails in the balancing before its first agreed gradient (the reference term chosen on its node)
BALANCE_REFERENCE = """
import sys
import multimodal_ip.io.problem_builder as builder
from multimodal_ip.cli import main
from multimodal_ip.errors import ConfigError

def no_reference(*args, **kwargs):
    raise ConfigError("no reference term on this node")

builder.balance_reference = no_reference
sys.exit(main(sys.argv[1:]))
"""


def test_a_rank_failing_in_the_balancing_before_its_first_sum_ends_both_ranks(data, tmp_path):
    """Rank 1's last agreement of the balancing pairs with rank 0's first agreed gradient: rank 0 raises the agreed
    failure at once instead of waiting in a last agreement rank 1 never joins."""
    out = tmp_path / "r.h5"
    args = ["reconstruct", str(data), "-o", str(out), "--iterations", "2", "--stop", "iterations"]
    parts: list = []
    for rank, cmd in enumerate(([*CLI, *args], [sys.executable, "-c", BALANCE_REFERENCE, *args])):
        parts += [":"] * bool(parts) + ["-n", "1", "timeout", "-s", "KILL", str(RANK_TIMEOUT_S),
                                        "sh", "-c", 'exec "$@" 2>"$0"', str(tmp_path / f"stderr.{rank}"), *cmd]
    proc = subprocess.run([MPIEXEC, *parts], capture_output=True, text=True, timeout=RANK_TIMEOUT_S + 30)
    errs = [(tmp_path / f"stderr.{r}").read_text() if (tmp_path / f"stderr.{r}").exists() else "" for r in (0, 1)]
    assert proc.returncode == 2, (proc.returncode, errs, proc.stderr[-2000:])
    assert errs == ["mmip reconstruct: error: no reference term on this node (MPI rank 1 of 2)\n"] * 2, errs
    assert not out.exists()
