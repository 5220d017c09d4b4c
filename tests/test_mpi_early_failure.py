"""A rank of ``mpiexec -n 2 mmip reconstruct`` that fails alone before any collective (its own run file, its own
``-o``, pylops-mpi missing on its node, its own start file read after the build) ends both ranks with exit 2 and
the same one line naming it, never a hang (as does a rank failing in the build's options, in the balancing, or
out of memory in an evaluation of the solve): every rank gets its communicator first, then each step of its own before
a collective ends in an agreement (docs/performance.md, "A rank that fails alone"). Each test fails (the hung rank
killed) where the failing rank exits before joining the others."""

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
CLI = [sys.executable, "-m", "multimodal_ip.cli"]
#: rank 1's node has no pylops-mpi (its import fails), then the command line runs
NO_PYLOPS_MPI = "import sys; sys.modules['pylops_mpi'] = None; from multimodal_ip.cli import main; sys.exit(main())"
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


@pytest.fixture(scope="module")
def data(phantom_file):
    """A tiny joint file (ptychography and XRF, 20 x 20 object), split over two ranks."""
    return phantom_file(20, 12, "--noise", "0.03")


def _two_ranks(tmp_path, first, second):
    """``mpiexec`` of rank 0's and rank 1's command lines, each killed after ``RANK_TIMEOUT_S`` (a rank left waiting
    ends, and so the run): the process and each rank's stderr, written to a file of its own (never interleaved)."""
    parts: list = []
    for rank, cmd in enumerate((first, second)):
        log = tmp_path / f"stderr.{rank}"
        parts += [":"] * bool(parts) + ["-n", "1", "timeout", "-s", "KILL", str(RANK_TIMEOUT_S),
                                        "sh", "-c", 'exec "$@" 2>"$0"', str(log), *cmd]
    proc = subprocess.run([MPIEXEC, *parts], capture_output=True, text=True, timeout=RANK_TIMEOUT_S + 30)
    return proc, [(tmp_path / f"stderr.{r}").read_text() if (tmp_path / f"stderr.{r}").exists() else ""
                  for r in (0, 1)]


def _both_end_with(proc, errs, line, out):
    """Both ranks exit 2, each with ``line`` alone (no traceback, no warning), and nothing is written to ``out``."""
    assert proc.returncode == 2, (proc.returncode, errs, proc.stderr[-2000:])
    assert errs == [f"mmip reconstruct: error: {line}\n"] * 2, errs
    assert not out.exists() and not out.with_name(out.name + ".ckpt.h5").exists()


@pytest.mark.parametrize("bad", [pytest.param("missing", marks=pytest.mark.slow), "unparsable"])
def test_a_rank_whose_run_file_is_bad_ends_both_ranks(data, tmp_path, bad):
    """Rank 1 alone reads a run file it cannot use (``--config`` a path missing on its node, or a broken file) while
    rank 0 reads a good one: both exit 2 with rank 1's line."""
    good, broken = tmp_path / "good.toml", tmp_path / "broken.toml"
    good.write_text("iterations = 2\n")
    broken.write_text("iterations = = 2\n")
    mine = tmp_path / "gone.toml" if bad == "missing" else broken
    out = tmp_path / "r.h5"
    cmd = [*CLI, "reconstruct", str(data), "-o", str(out), "--stop", "iterations", "--config"]
    proc, errs = _two_ranks(tmp_path, [*cmd, str(good)], [*cmd, str(mine)])
    assert errs[1].startswith(f"mmip reconstruct: error: {mine}"), errs
    _both_end_with(proc, errs, errs[1].removeprefix("mmip reconstruct: error: ").strip(), out)
    assert errs[0].endswith("(MPI rank 1 of 2)\n")


def test_a_rank_that_cannot_write_its_output_ends_both_ranks(data, tmp_path):
    """Rank 1's ``-o`` is a read-only file (refused before ``run``, by the program's check of ``-o``): both exit 2
    with its line, and the read-only file is kept."""
    kept = tmp_path / "kept.h5"
    kept.write_bytes(b"mine")
    kept.chmod(0o444)
    out = tmp_path / "r.h5"
    args = ["reconstruct", str(data), "--iterations", "2", "--stop", "iterations", "-o"]
    proc, errs = _two_ranks(tmp_path, [*CLI, *args, str(out)], [*CLI, *args, str(kept)])
    _both_end_with(proc, errs, f"refusing to replace {kept}: the file exists and is read-only (make it writable, "
                               "e.g. chmod u+w, or choose another -o) (MPI rank 1 of 2)", out)
    assert kept.read_bytes() == b"mine"


def test_a_rank_whose_start_file_is_bad_ends_both_ranks(data, tmp_path):
    """Rank 1 alone starts from a file that is not HDF5, read after the build, while rank 0 (no ``--start``) goes
    on to the solver's first sum: both exit 2 with rank 1's line."""
    start = tmp_path / "start.h5"
    start.write_bytes(b"not an HDF5 file")
    out = tmp_path / "r.h5"
    cmd = [*CLI, "reconstruct", str(data), "-o", str(out), "--iterations", "2", "--stop", "iterations"]
    proc, errs = _two_ranks(tmp_path, cmd, [*cmd, "--start", str(start)])
    assert str(start) in errs[1], errs
    _both_end_with(proc, errs, errs[1].removeprefix("mmip reconstruct: error: ").strip(), out)
    assert errs[0].endswith("(MPI rank 1 of 2)\n")


#: rank 1's own failing step (the script it runs) and the line both ranks must end with
RANK_ONE_FAILS = {
    # its node lacks pylops-mpi: it still gets its communicator (mpi4py), so both ranks agree on its line
    "no pylops-mpi": (NO_PYLOPS_MPI, "MPI runs need mpi4py and pylops-mpi: pip install mpich mpi4py pylops-mpi "
                      "(import of pylops_mpi halted; None in sys.modules) (MPI rank 1 of 2)"),
    # its backend check fails (``cli.common._build_options``: no usable GPU on its node) before the build's first
    # agreement, while rank 0 goes on to it
    "build options": (NO_GPU, "backend 'cupy' is not available here (no device); use --backend numpy (MPI rank 1 "
                      "of 2)"),
    # it runs out of memory in an evaluation of the solve while rank 0 goes on to its sums: every evaluation is
    # agreed before its sums (before: rank 0 hung)
    "out of memory in the solve": (OUT_OF_MEMORY, "out of memory (set MMIP_MAX_MEMORY lower, or use a smaller "
                                   "problem)"),
    # its last agreement of the balancing pairs with rank 0's first agreed gradient: rank 0 raises the agreed
    # failure at once instead of waiting in a last agreement rank 1 never joins
    "balancing": (BALANCE_REFERENCE, "no reference term on this node (MPI rank 1 of 2)"),
}


@pytest.mark.parametrize("case", list(RANK_ONE_FAILS))
def test_a_rank_whose_own_step_fails_ends_both_ranks(data, tmp_path, case):
    """Rank 1 alone fails a step of its own (``RANK_ONE_FAILS``) while rank 0 goes on: both exit 2 with the same
    line, nothing written."""
    script, line = RANK_ONE_FAILS[case]
    out = tmp_path / "r.h5"
    args = ["reconstruct", str(data), "-o", str(out), "--iterations", "2", "--stop", "iterations"]
    proc, errs = _two_ranks(tmp_path, [*CLI, *args], [sys.executable, "-c", script, *args])
    _both_end_with(proc, errs, line, out)
