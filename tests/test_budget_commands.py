"""The memory budget in every command that reads a data file and runs a solver or sizes work by the unknowns
(``mmip reconstruct``, ``compare``, ``tune``, ``hessian`` and MPI runs): each fits ``MMIP_MAX_MEMORY`` or refuses in
one line, exit 2, before the data are read (docs/performance.md, "The budget in every command")."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib

import multimodal_ip.run_budget as run_budget
from multimodal_ip.cli import main
from multimodal_ip.errors import ConfigError
from multimodal_ip.io import load_dataset

COMMANDS = {
    "reconstruct": (["-o", "{out}/r.h5", "--iterations", "2"], "unknowns and solver"),
    "compare": (["-o", "{out}/cmp", "--iterations", "2"], "results kept"),
    "tune": (["-o", "{out}/tune", "--iterations", "2", "--c", "0.01", "--models", "tied"], "scoring problems"),
    "hessian": (["-o", "{out}/hessian", "--k", "2", "--grid", "3"], "the dense Hessian of 800 unknowns (--dense-max)"),
}


@pytest.fixture(scope="module")
def data(phantom_file):
    """A tiny joint file with its truth (ptychography and XRF, 20 x 20 object): every command runs on it."""
    return phantom_file(20, 12, "--noise", "0.03")


@pytest.fixture
def reads(monkeypatch):
    """The datasets the loader reads (every term's and the truth's arrays go through ``_read_checked``)."""
    import multimodal_ip.io.dataset as dataset

    seen: list = []
    real = dataset._read_checked
    monkeypatch.setattr(dataset, "_read_checked", lambda *a, **k: seen.append(a[2]) or real(*a, **k))
    # the program's share is its resident memory, which drifts in a long test session: pin it
    program = run_budget._resident_bytes()
    monkeypatch.setattr(run_budget, "_resident_bytes", lambda: program)
    return seen


def _argv(command, data, out):
    return [command, str(data), *(a.format(out=out) for a in COMMANDS[command][0])]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_budget_too_small_is_refused_before_the_read(command, data, tmp_path, reads, monkeypatch, capsys):
    """``MMIP_MAX_MEMORY=1M``: exit 2, one line naming the budget, the command's own parts and the least budget that
    would do; no dataset read, no output written."""
    monkeypatch.setenv("MMIP_MAX_MEMORY", "1M")
    assert main(_argv(command, data, tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"mmip {command}: error: memory budget of the run (MMIP_MAX_MEMORY=1M: 0.00 GiB)"), err
    assert COMMANDS[command][1] in err and "data 0" in err
    need = int(err.split("set MMIP_MAX_MEMORY to at least ")[1].rstrip("M"))
    assert need > run_budget.PROGRAM_MARGIN >> 20
    assert reads == [] and list(tmp_path.iterdir()) == []


def _fitted(monkeypatch) -> list:
    """The estimates the runs' plans keep (``fit_run``'s answers)."""
    kept: list = []
    real = run_budget.fit_run

    def fit_run(*args, **kwargs):
        kept.append(real(*args, **kwargs))
        return kept[-1]

    monkeypatch.setattr(run_budget, "fit_run", fit_run)
    return kept


@pytest.mark.parametrize("command", ["compare", "tune"])
def test_a_command_runs_or_fits_with_smaller_blocks_and_records_them(command, data, tmp_path, reads, monkeypatch,
                                                                      capsys):
    """A large budget runs the command with its own setting (the data then read); just below its estimate it keeps
    smaller blocks or fewer pairs, says so in one warning line and records the setting (``chosen.toml`` of a tune,
    ``report.md`` of a compare)."""
    kept = _fitted(monkeypatch)
    monkeypatch.setenv("MMIP_MAX_MEMORY", "8G")
    assert main(_argv(command, data, tmp_path / "large")) == 0
    assert reads and "to fit" not in capsys.readouterr().err
    own = kept[-1]
    assert own.fits and own.chunk_bytes is None and COMMANDS[command][1] in own.parts
    monkeypatch.setenv("MMIP_MAX_MEMORY", str(own.total - 1))
    assert main(_argv(command, data, tmp_path / "fitted")) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "to fit" in line]
    fitted = kept[-1]
    assert len(warned) == 1 and fitted.fits and fitted.total < own.total
    assert (fitted.chunk_bytes, fitted.pairs) != (own.chunk_bytes, own.pairs)
    if command == "tune":
        chosen = tomllib.loads((tmp_path / "fitted" / "tune" / "chosen.toml").read_text())
        assert chosen.get("chunk_memory") == str(fitted.chunk_bytes) or \
            chosen["solver_options"].get("memory") == fitted.pairs
    else:
        report = (tmp_path / "fitted" / "cmp" / "report.md").read_text()
        assert f"chunk memory {fitted.chunk_bytes}" in report or f'"memory": {fitted.pairs}' in report


def test_hessian_within_the_budget_reaches_the_study(data, tmp_path, reads, monkeypatch, capsys):
    """A large budget: the study gets the data read and its problem (the study itself is left out: it takes half a
    minute here); its estimate holds the dense Hessians of the 800 unknowns, or the Lanczos vectors when
    ``--dense-max`` is below them."""
    import mmip_paper.hessian as hessian

    kept = _fitted(monkeypatch)
    studied = []
    monkeypatch.setattr(hessian, "hessian_study", lambda ds, joint, stage, **kw: studied.append(joint.space.size)
                        or f"wrote {stage}/hessian.json")
    monkeypatch.setenv("MMIP_MAX_MEMORY", "8G")
    assert main(_argv("hessian", data, tmp_path)) == 0
    assert studied == [800] and reads
    landscape = kept[-1].parts["a loss landscape of 3 x 3 points (--grid)"]
    assert kept[-1].parts["the dense Hessian of 800 unknowns (--dense-max)"] + landscape == \
        hessian.study_bytes(800, 9000, 2, 3)
    assert main([*_argv("hessian", data, tmp_path / "lanczos"), "--dense-max", "799"]) == 0
    lanczos = kept[-1].parts["Lanczos vectors (--k)"] + landscape
    assert 0 < lanczos == hessian.study_bytes(800, 799, 2, 3) < hessian.study_bytes(800, 9000, 2, 3)
    capsys.readouterr()


def test_tune_plans_for_its_largest_model(data):
    """The tune's plan counts the largest model's unknowns (the grid's or an alternative's: ``matrix`` adds an
    object-sized unknown), a scoring problem per model and the held-out fit's validation."""
    from multimodal_ip.tune import settings_grid, tune_planner

    cfg = {"solver": "lbfgs", "solver_options": {}, "refine": [], "dtype": "float32", "chunk_memory": None,
           "iterations": 5, "start": None, "stopping": {}}

    def estimate(grid, alternatives=None):
        plan, planned = tune_planner(cfg, grid, 0.1, alternatives)
        seen = []
        load_dataset(data, precision="float32", plan=lambda *a: seen.append(plan(*a)))
        assert planned["stopping"]["rule"] == "validation" and cfg["stopping"] == {}
        return seen[0]

    tied = estimate(settings_grid([0.01], ["balanced"], {}))
    matrix = estimate(settings_grid([0.01], ["balanced"], {}, [((), ()), (("matrix",), ())]))
    alternative = estimate(settings_grid([0.01], ["balanced"], {}), lambda terms: [(("matrix",), ())])
    assert matrix.parts["unknowns and solver"] * 800 == tied.parts["unknowns and solver"] * 1200
    assert alternative.parts["unknowns and solver"] == matrix.parts["unknowns and solver"]
    assert matrix.parts["scoring problems"] == 2 * tied.parts["scoring problems"] > 0
    measured = run_budget.measured_values(load_dataset(data).terms)
    assert tied.parts["scoring problems"] == measured and tied.parts["validation"] == measured + 800 * 4


class _Ranks:
    """The part of an mpi4py communicator the plan reads: this rank of ``size``, and what the others answer to
    an ``allgather`` (``others(value)``)."""

    def __init__(self, rank=0, size=2, others=lambda value: value):
        self.rank, self.size, self.others = rank, size, others

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size

    def allgather(self, value):
        return [value if r == self.rank else self.others(value) for r in range(self.size)]


def test_each_rank_plans_for_its_share(data, monkeypatch):
    """An MPI rank's plan sees its share of the split data (the bytes it then reads), adds the sums over ranks,
    and builds with the blocks it fitted."""
    from multimodal_ip.distributed import _share_plan, build_distributed_problem
    from multimodal_ip.io.problem_builder import BuildOptions

    monkeypatch.setenv("MMIP_MAX_MEMORY", "8G")
    whole: list = []
    load_dataset(data, precision="float32", plan=lambda s, t, n: whole.append(n))
    seen: list = []

    def record(space, terms, nbytes):  # what the share offers, while the file is open
        seen.append(({n: (np.shape(t.arrays["data"]), np.asarray(t.arrays["positions"])) for n, t in terms.items()},
                     nbytes))
        return "estimate"

    for rank in (0, 1):
        share, kept = _share_plan(record, (rank, 2), "float32")
        ds = load_dataset(data, part=(rank, 2), precision="float32", plan=share)
        terms, nbytes = seen[rank]
        assert kept == ["estimate"]
        assert nbytes == sum(a.nbytes for td in ds.terms.values() for a in td.arrays.values()) + \
            sum(a.nbytes for a in ds.truth.values()) < whole[0]
        for name, td in ds.terms.items():
            assert terms[name][0] == td.arrays["data"].shape
            assert np.array_equal(terms[name][1], td.arrays["positions"])
    cfg = {"solver": "lbfgs", "solver_options": {}, "refine": [], "dtype": "float32", "chunk_memory": None,
           "iterations": 5, "stopping": {}}
    kept = _fitted(monkeypatch)
    monkeypatch.setattr(run_budget, "_resident_bytes", lambda: 0)
    comm = _Ranks(rank=1)
    ds, problem = build_distributed_problem(data, comm, options=BuildOptions(dtype="float32", balance=False),
                                            plan=run_budget.run_planner(cfg, comm=comm))
    assert kept[-1].parts["MPI sums"] == 2 * 800 * 4 and ds.terms["ptychography"].attrs["split_offset"] > 0
    monkeypatch.setenv("MMIP_MAX_MEMORY", str(kept[-1].total - 1))  # this rank's share fits only in smaller blocks
    _, fitted = build_distributed_problem(data, comm, options=BuildOptions(dtype="float32", balance=False),
                                          plan=run_budget.run_planner(cfg, comm=comm))
    assert kept[-1].chunk_bytes and cfg["chunk_memory"] == str(kept[-1].chunk_bytes)
    assert _blocks(problem) is None and _blocks(fitted) >= 1  # default blocks, then those of the fitted size


def _blocks(problem) -> int:
    """The positions per block of the ptychography term's streamed model."""
    return next(t.operator.block for t in problem.terms if t.name == "ptychography")


def test_ranks_keep_the_most_cautious_setting_or_all_refuse(data):
    """Every rank keeps the setting the rank that needs the most asks for (their solvers run in lockstep); when one
    rank fits nothing, every rank refuses."""
    seen: list = []
    load_dataset(data, precision="float32", plan=lambda s, t, n: seen.append((s, t, n)))
    space, terms, nbytes = seen[0]
    kw = dict(dtype="float32", solver="lbfgs", iterations=5, program=0)
    own = run_budget.fit_run(space, terms, nbytes, budget=1 << 40, **kw)
    alone = run_budget.fit_run(space, terms, nbytes, budget=1 << 40, comm=_Ranks(), **kw)
    assert (alone.pairs, alone.chunk_bytes) == (own.pairs, own.chunk_bytes) == (5, None)
    other_needs_two = run_budget.fit_run(space, terms, nbytes, budget=1 << 40, comm=_Ranks(others=lambda i: max(i, 5)),
                                         **kw)
    assert other_needs_two.pairs < own.pairs and other_needs_two.fits
    with pytest.raises(ConfigError, match="set MMIP_MAX_MEMORY to at least"):
        run_budget.fit_run(space, terms, nbytes, budget=1 << 40, comm=_Ranks(others=lambda i: 99), **kw)


MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
#: a rank that counts the datasets it reads, then runs the command line
COUNTED = ("import sys, multimodal_ip.io.dataset as d; from multimodal_ip.cli import main; reads = []; "
           "real = d._read_checked; d._read_checked = lambda *a, **k: reads.append(a[2]) or real(*a, **k); "
           "rc = main(sys.argv[1:]); print('reads', len(reads)); sys.exit(rc)")


def _mpi(data, out, budget):
    pytest.importorskip("mpi4py", reason="MPI needs mpi4py (make test installs mpich + mpi4py from wheels)")
    pytest.importorskip("pylops_mpi", reason="MPI runs need pylops-mpi (make test installs it)")
    if MPIEXEC is None:
        pytest.skip("no mpiexec on PATH (pip install mpich)")
    import os

    # each rank killed before the launcher's limit: a hung rank ends with the ranks' lines, not left busy-waiting
    return subprocess.run([MPIEXEC, "-n", "2", "timeout", "-s", "KILL", "240", sys.executable, "-c", COUNTED,
                           "reconstruct", str(data), "-o", str(out), "--iterations", "2"], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, MMIP_MAX_MEMORY=budget))


def test_mpi_ranks_refuse_before_reading(data, tmp_path):
    """``mpiexec -n 2 mmip reconstruct`` under a budget too small for a rank: every rank exits 2 with the same one
    line (the rank named), having read nothing."""
    proc = _mpi(data, tmp_path / "r.h5", "1M")
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr  # the two ranks' lines may interleave on a loaded machine: counted, not split
    assert err.count("mmip reconstruct: error: memory budget of the run (MMIP_MAX_MEMORY=1M") == 2, err
    assert err.count("MPI sums") == 2 and err.count("(MPI rank 0 of 2)") == 2 and err.count("Traceback") == 0, err
    assert proc.stdout.count("reads") == 2 and set(proc.stdout.replace("reads", " ").split()) == {"0"}, proc.stdout
    assert not (tmp_path / "r.h5").exists()


@pytest.mark.slow
def test_mpi_ranks_run_within_the_budget_named(data, tmp_path):
    """The budget a refused MPI run names is enough for both ranks to run to the end (16 s)."""
    refused = _mpi(data, tmp_path / "r.h5", "1M")
    need = refused.stderr.split("set MMIP_MAX_MEMORY to at least ")[1].split("M")[0]
    proc = _mpi(data, tmp_path / "r.h5", f"{need}M")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "r.h5").exists()
