"""Calibration by a term's own estimator (``DataTerm(estimator=...)``, issue 33): the staged run calls it once when
nothing else moves, alternates it with the gradient solver otherwise, falls back to the gradient path unchanged
without an offer, and refuses in one line where it cannot be used. A toy linear term (no physics) and the
ptychography term's position offer from the command line."""

from pathlib import Path

import h5py
import numpy as np
import pylops
import pytest

from multimodal_ip import DataTerm, JointProblem, Variable, VariableSpace, solve
from multimodal_ip.cli import main
from multimodal_ip.errors import ConfigError
from multimodal_ip.losses import LeastSquares
from multimodal_ip.operators import Linear
from multimodal_ip.problem import CalibrationEstimate, CalibrationEstimator
from multimodal_ip.regularizers import Box, Tikhonov
from multimodal_ip.solvers import solve_staged
from multimodal_ip.solvers.alternating import plan_estimators

N, M = 12, 40


class _Shift:
    """The toy term's estimator of ``c``: least squares ``min_c ||M x + B c - d||``, exact in one call; records
    every call."""

    unknowns = ("c",)

    def __init__(self, matrix, data, converged=True, push=0.0):
        self.a, self.b, self.data = matrix[:, :N], matrix[:, N:], data
        self.converged, self.push, self.calls = converged, push, []

    def __call__(self, values, names, *, iterations, bounds, search):
        self.calls.append({"names": names, "iterations": iterations, "bounds": bounds, "search": search,
                           "inputs": sorted(values)})
        c = np.linalg.lstsq(self.b, self.data - self.a @ values["x"], rcond=None)[0] + self.push
        self.returned = c
        return CalibrationEstimate({"c": c}, 3, self.converged, "least squares")


def _toy(offer=True, parts=1, reader=False, regularizers=(), **kw):
    """``1/2 ||M x + B c - d||^2`` (noise-free, ``c`` a calibration unknown starting at zero), optionally with the
    estimator of ``c``, split into ``parts`` parts, or with a second term that also reads ``c``."""
    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((M, N + 2))
    truth = {"x": rng.standard_normal(N), "c": np.array([1.5, -0.7])}
    data = matrix @ np.concatenate([truth["x"], truth["c"]])
    shift = _Shift(matrix, data, **kw)
    rows = np.array_split(np.arange(M), parts)
    terms = [DataTerm(Linear(pylops.MatrixMult(matrix[r])), data[r], LeastSquares(), 1.0, ("x", "c"), "toy", part=i,
                      estimator=CalibrationEstimator(shift, shift.unknowns) if offer else None)
             for i, r in enumerate(rows)]
    if reader:
        terms.append(DataTerm(Linear(pylops.Identity(2)), truth["c"], LeastSquares(), 1.0, ("c",), "other"))
    space = VariableSpace([Variable("x", (N,)), Variable("c", (2,))])
    problem = JointProblem(space, terms, regularizers, truth=truth, calibration={"c": np.zeros(2)})
    return problem, shift, truth


def test_with_everything_else_frozen_the_run_is_one_call_of_the_offer():
    problem, shift, truth = _toy()
    x0 = problem.space.pack({"x": truth["x"], "c": np.zeros(2)})
    res = solve_staged(problem.with_frozen(("x",)), x0, maxiter=30)
    assert len(shift.calls) == 1 and shift.calls[0] == {"names": ("c",), "iterations": 30, "bounds": {},
                                                        "search": True, "inputs": ["c", "x"]}
    np.testing.assert_array_equal(res.arrays["c"], shift.returned)
    np.testing.assert_array_equal(res.arrays["x"], truth["x"])
    assert res.status == "converged" and res.message == "least squares"
    assert res.history["iteration"].tolist() == [0, 3] and res.history["estimator_iterations"][1] == 3
    objective = res.history["objective"]
    assert objective[1] < 1e-20 < objective[0]
    problem = _toy(converged=False)[0]  # the estimator's own word decides the status
    assert solve_staged(problem.with_frozen(("x",)), x0, maxiter=30).status == "maxiter"


def test_the_alternation_converges_to_the_truth():
    problem, shift, truth = _toy()
    res = solve_staged(problem, problem.start(0.0), maxiter=80, refine_after=6, calibration_round=4,
                       calibration="estimator")
    np.testing.assert_allclose(res.arrays["c"], truth["c"], atol=1e-4)
    np.testing.assert_allclose(res.arrays["x"], truth["x"], atol=1e-4)
    assert [c["search"] for c in shift.calls] == [True] + [False] * (len(shift.calls) - 1)
    estimates = np.flatnonzero(np.isfinite(res.history["estimator_iterations"]))
    assert len(shift.calls) == len(estimates) == 16 and estimates[0] == 7 and estimates[-1] == 80
    assert res.history["iteration"].tolist() == list(range(81))
    assert res.status == "maxiter" and "estimator of c" in res.message


def test_without_the_offer_the_gradient_path_is_unchanged():
    """No offer (or ``calibration=gradient``): the staged run of before, bit for bit (its two stages by hand)."""
    problem, _, _ = _toy(offer=False)
    x0 = problem.start(0.5)
    res = solve_staged(problem, x0, maxiter=20, refine_after=5)
    first = solve(problem.with_frozen(("c",)), x0, maxiter=5)
    second = solve(problem, first.x, maxiter=15)
    assert np.array_equal(res.x, second.x)
    expected = np.concatenate([first.history["objective"], second.history["objective"][1:]])
    assert np.array_equal(res.history["objective"], expected)
    offered, shift, _ = _toy()
    for mode in ("gradient", "auto"):  # auto: x moves too, the joint gradient (measured no worse)
        again = solve_staged(offered, x0, maxiter=20, refine_after=5, calibration=mode)
        assert shift.calls == [] and np.array_equal(again.x, res.x)
        assert np.array_equal(again.history["grad_norm"], res.history["grad_norm"])


def test_estimates_respect_the_bounds():
    problem, shift, truth = _toy(regularizers=[Box(("c",), -1.0, 1.0)], push=5.0)
    x0 = problem.space.pack({"x": truth["x"], "c": np.zeros(2)})
    res = solve_staged(problem.with_frozen(("x",)), x0, maxiter=5)
    assert shift.calls[0]["bounds"] == {"c": (-1.0, 1.0)}
    assert np.all(np.abs(res.arrays["c"]) <= 1.0) and res.arrays["c"][0] == 1.0


def test_a_resumed_alternation_continues_exactly():
    problem, _, _ = _toy()
    opts = {"maxiter": 30, "refine_after": 4, "calibration_round": 6, "calibration": "estimator"}
    full = solve_staged(problem, problem.start(0.0), **opts)
    for stop_at in (9, 11):  # in a gradient round; just after an estimate
        saved = {}

        def keep(state, stop_at=stop_at, saved=saved):
            if state.iteration == stop_at:
                saved["state"] = state.solver.state_dict()

        solve_staged(_toy()[0], problem.start(0.0), callback=keep, **opts)
        resumed = solve_staged(_toy()[0], problem.start(0.0), resume_state=saved["state"], **opts)
        np.testing.assert_allclose(resumed.x, full.x, rtol=1e-10, atol=1e-12)
        assert resumed.history["iteration"].tolist() == list(range(31))
        np.testing.assert_allclose(resumed.history["objective"], full.history["objective"], rtol=1e-10)


@pytest.mark.parametrize(("kw", "mode", "words"), [
    ({"offer": False}, "estimator", "no data term offers an estimator of c"),
    ({"parts": 2}, "estimator", "evaluated in 2 parts"),
    ({"reader": True}, "estimator", "also read by other"),
    ({"regularizers": [Tikhonov("c", 0.1)]}, "estimator", "regularizer(s) tikhonov_c read c"),
    ({}, "sometimes", "expected one of auto, estimator, gradient"),
])
def test_refusals_are_one_line(kw, mode, words):
    problem, _, _ = _toy(**kw)
    with pytest.raises(ConfigError, match="calibration") as err:
        solve_staged(problem, problem.start(0.0), maxiter=5, calibration=mode)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_auto_falls_back_to_gradient_steps_where_the_offer_does_not_apply():
    """Another reader of ``c``, a penalty on it, or (the default's choice, measured) other unknowns that move."""
    for kw, frozen in (({"reader": True}, ("x",)), ({"regularizers": [Tikhonov("c", 0.1)]}, ("x",)), ({}, ())):
        problem, shift, _ = _toy(**kw)
        problem = problem.with_frozen(frozen)
        assert plan_estimators(problem, "auto") == []
        solve_staged(problem, problem.start(0.0), maxiter=4, refine_after=2)
        assert shift.calls == []


def test_mpi_ranks_are_refused():
    problem, _, _ = _toy()

    class Ranks:  # what the staged run sees of an MPI composition
        comm = object()
        calibration, frozen, terms = problem.calibration, ("x",), problem.terms
        space, regularizers, has_holdout = problem.space, (), False

    with pytest.raises(ConfigError, match="MPI ranks: run it in one process"):
        plan_estimators(Ranks(), "auto")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """The smallest phantom case (as tests/test_start_freeze.py): 25 positions off the raster by up to 1 px."""
    path = tmp_path_factory.mktemp("alt") / "sim.h5"
    assert main(["simulate", "phantom", "-o", str(path), "--n", "32", "--probe-size", "16", "--step", "4",
                 "--position-jitter", "1", "--seed", "1", "--noise", "0.03"]) == 0
    return path


def test_known_object_positions_from_the_command_line_are_the_offer_s(sim, tmp_path):
    """``--refine positions --freeze x,w --start truth:x,w``: one call of the ptychography term's estimator (the
    positions of :class:`~mmip_ptychography.PositionEstimator`, its posterior mean), closer to the truth."""
    from mmip_ptychography import PositionEstimator

    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(sim), "-o", str(out), "--terms", "ptychography", "--refine", "positions",
                 "--freeze", "x,w", "--start", "truth:x,w", "--iterations", "30", "--dtype", "float64"]) == 0
    with h5py.File(sim) as f:
        td, truth = f["terms/ptychography"], {k: f["truth"][k][()] for k in f["truth"]}
        data, probe, nominal = td["data"][()], td["probe"][()], td["positions"][()].astype(float)
        photons = float(td.attrs["photons_per_unit"])
    with h5py.File(out) as f:
        got = f["results/variables/positions"][()]
        iterations = f["results/history/iteration"][()]
        assert "posterior mean" in f["results"].attrs["message"]
    fit = PositionEstimator(truth["x"] + 1j * truth["w"].sum(0), probe, data, photons_per_unit=photons).fit(
        nominal, iterations=30, radius=2.0, starts=3, estimate="mean")
    np.testing.assert_array_equal(got, np.clip(fit.positions, nominal - 2.5, nominal + 2.5))
    assert len(iterations) == 2
    rms = [float(np.sqrt(np.mean(np.sum((p - truth["positions"]) ** 2, 1)))) for p in (nominal, got)]
    assert rms[1] < 0.5 * rms[0], rms


def test_cli_refuses_an_unknown_calibration_mode(sim, tmp_path, capsys):
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(sim), "-o", str(out), "--refine", "positions", "--iterations", "2",
                 "--solver-option", "calibration=sometimes"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "calibration='sometimes'" in err and not Path(out).exists()
