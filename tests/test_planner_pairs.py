"""The run's memory plan counts the L-BFGS pairs the solver holds at its peak: a run command's solver lets its pairs
go before its last step's evaluations (``release_last``), so at most ``iterations - 2`` are held
(tests/solvers/test_lbfgs_memory.py counts them with tracemalloc), while ``mmip tune``'s fits keep
``min(memory, iterations)``. A budget between the new and the old estimate now fits and the run stays within it.
``mmip hessian`` records its block size in bytes."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from multimodal_ip import run_budget
from multimodal_ip.cli import main
from multimodal_ip.config import DEFAULTS
from multimodal_ip.io import load_dataset
from multimodal_ip.tune import tune_planner

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def phantom(phantom_file):
    """A small joint file with its truth (12 x 12 object)."""
    return phantom_file(12, 12, "--noise", "0.03")


def _planned(path, plan):
    """The estimate ``plan`` keeps for ``path`` (read as a run reads it)."""
    kept: list = []
    load_dataset(path, precision="float32", plan=lambda *a: kept.append(plan(*a)))
    return kept[-1]


def _loaded(path):
    """``(space, lazy terms, bytes)`` the loader hands its plan."""
    seen: dict = {}
    load_dataset(path, precision="float32", plan=lambda space, terms, nbytes: seen.update(a=(space, terms, nbytes)))
    return seen["a"]


def _cfg(iterations, **options):
    return dict(copy.deepcopy(DEFAULTS), iterations=iterations, solver_options=options)


@pytest.mark.parametrize("iterations", [1, 2, 3, 5, 12, 40])
def test_a_run_counts_the_pairs_held_at_its_peak_and_tune_all_it_keeps(phantom, monkeypatch, iterations):
    """``release_last`` runs (reconstruct, compare) count min(memory, iterations - 2) pairs at the peak and keep the
    solver's memory; a tune counts min(memory, iterations); the difference is 2 vectors per pair."""
    monkeypatch.setenv("MMIP_MAX_MEMORY", "8G")
    monkeypatch.setattr(run_budget, "_resident_bytes", lambda: 0)
    run = _planned(phantom, run_budget.run_planner(_cfg(iterations), release_last=True))
    tune = _planned(phantom, tune_planner(_cfg(iterations), [], 0.1)[0])
    kept = min(10, iterations)
    assert run.pairs == tune.pairs == kept
    assert run.peak_pairs == max(0, min(10, iterations - 2)) and tune.peak_pairs == kept
    vector = _loaded(phantom)[0].size * 4  # float32 unknowns
    assert tune.parts["unknowns and solver"] - run.parts["unknowns and solver"] == \
        2 * (tune.peak_pairs - run.peak_pairs) * vector


@pytest.mark.parametrize(("options", "regularizers", "releases"), [
    ({}, [], True), ({"method": "native"}, [], True), ({"release_last": False}, [], False),
    ({"precondition": "curvature"}, [], False), ({"method": "scipy"}, [], False),
    ({}, [{"name": "nonnegative", "variables": ["w"]}], False), ({"method": "native"},
                                                                 [{"name": "nonnegative", "variables": ["w"]}], True),
])
def test_only_a_solver_that_lets_its_pairs_go_counts_fewer(phantom, monkeypatch, options, regularizers, releases):
    """The fewer pairs are counted only where the run's solver lets them go: not with ``release_last = false``, a
    preconditioner, or scipy's L-BFGS-B (``method = "scipy"``, or ``auto`` with a constraint)."""
    monkeypatch.setenv("MMIP_MAX_MEMORY", "8G")
    monkeypatch.setattr(run_budget, "_resident_bytes", lambda: 0)
    cfg = dict(_cfg(5, **options), regularizers=regularizers)
    est = _planned(phantom, run_budget.run_planner(cfg, release_last=True))
    assert (est.pairs, est.peak_pairs) == ((5, 3) if releases else (5, 5))


def test_fewer_pairs_are_tried_only_where_fewer_are_held(phantom, monkeypatch):
    """Under a tight budget a release_last run skips the pair counts that hold as many at the peak as its own (at 5
    iterations 10, 4 and 3 pairs all hold 3): the next tried is 2."""
    monkeypatch.setattr(run_budget, "_resident_bytes", lambda: 0)
    space, terms, nbytes = _loaded(phantom)
    kw = dict(dtype="float32", solver="lbfgs", iterations=5, budget=1 << 40, program=0)
    tried, _ = run_budget._settings(space, terms, nbytes, release_last=True, **kw)
    assert list(dict.fromkeys(t.pairs for t in tried)) == [5, 2, 1] and tried[0].peak_pairs == 3
    assert [t.peak_pairs for t in tried] == [min(t.pairs, 3) for t in tried]
    plain, _ = run_budget._settings(space, terms, nbytes, **kw)
    assert list(dict.fromkeys(t.pairs for t in plain)) == [5, 4, 3, 2, 1]
    assert run_budget.peak_pairs(None, 5, True) is None and run_budget.peak_pairs(7, 5, False) == 7


_PROBE = """
import json, resource, sys
import multimodal_ip.run_budget as rb
from multimodal_ip.cli import main
real = rb.fit_run
def fit(*a, **k):
    est = real(*a, **k)
    old = real(*a, **dict(k, release_last=False, budget=1 << 40))
    print("PLAN " + json.dumps({"new": est.total, "old": old.total, "pairs": est.pairs}), file=sys.stderr)
    return est
rb.fit_run = fit
rc = main(sys.argv[1:])
# VmHWM: this process's own peak (ru_maxrss keeps the peak of the parent it was started from: pytest's, in a suite)
hwm = [int(ln.split()[1]) * 1024 for ln in open("/proc/self/status") if ln.startswith("VmHWM:")]
print("PEAK " + str(hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024), file=sys.stderr)
sys.exit(rc)
"""


def _run(argv, budget):
    out = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, check=False,
                         env={**os.environ, "MMIP_MAX_MEMORY": str(budget)})
    lines = out.stderr.splitlines()
    plan = json.loads(next(ln for ln in lines if ln.startswith("PLAN "))[5:])
    peak = int(next(ln for ln in lines if ln.startswith("PEAK "))[5:])
    return out, plan, peak


def test_a_budget_between_the_new_and_the_old_estimate_fits_and_holds(tmp_path):
    """A 3-iteration reconstruct (J = 256 scan) under a budget halfway between the estimate counting the pairs held
    at the peak (1) and the old one (3 pairs): it runs its own setting (no fitting warning) to the end, within the
    budget."""
    data = tmp_path / "s.h5"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_xrf_positions.py"), "make", str(data), "--j",
                    "256"], check=True, capture_output=True)
    argv = ["reconstruct", str(data), "--iterations", "3"]
    out, plan, peak = _run([*argv, "-o", str(tmp_path / "a.h5")], 8 << 30)
    assert out.returncode == 0 and plan["pairs"] == 3 and plan["old"] > plan["new"] >= peak
    budget = (plan["new"] + plan["old"]) // 2
    out, plan, peak = _run([*argv, "-o", str(tmp_path / "b.h5")], budget)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "to fit" not in out.stderr and plan["pairs"] == 3 and plan["new"] <= budget < plan["old"]
    assert peak <= plan["new"] <= budget, (peak, plan, budget)


def test_hessian_json_records_the_block_size_in_bytes(phantom, tmp_path, monkeypatch):
    """``mmip hessian --chunk-memory 64M`` (not fitted) records 67108864, an int; default blocks record null (the
    fitted byte count: tests/plugins/test_hessian_record.py)."""
    monkeypatch.setenv("MMIP_MAX_MEMORY", "8G")
    argv = ["hessian", str(phantom), "--grid", "3", "--k", "2"]
    assert main([*argv, "--chunk-memory", "64M", "-o", str(tmp_path / "given")]) == 0
    record = json.loads((tmp_path / "given" / "hessian.json").read_text())
    assert record["run"] == {"chunk_memory": 64 << 20, "fitted": False}
    assert type(record["run"]["chunk_memory"]) is int
    assert main([*argv, "-o", str(tmp_path / "default")]) == 0
    assert json.loads((tmp_path / "default" / "hessian.json").read_text())["run"] == {"chunk_memory": None,
                                                                                      "fitted": False}
