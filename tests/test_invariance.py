"""Term invariances (the ptychography's global phase) and the solvers' ``align`` option."""

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mmip_paper import simulate
from mmip_ptychography.coupling import global_phase

from multimodal_ip.cli import main
from multimodal_ip.errors import SolverError
from multimodal_ip.io import build_problem, load_result, save_dataset
from multimodal_ip.regularizers import NonNegative
from multimodal_ip.solvers import solve_staged

sys.path.insert(0, str(Path(__file__).parents[1] / "examples" / "validation"))
import validation_cases  # noqa: E402  (the independent simulator of the validation study)


@pytest.fixture(scope="module")
def small():
    return simulate("phantom", n=48, probe_size=16, step=8, noise=0.03, seed=0)


@settings(max_examples=25, deadline=None)
@given(t=st.floats(-3.0, 3.0), coef=st.lists(st.floats(0.1, 3.0), min_size=1, max_size=3), seed=st.integers(0, 99))
def test_global_phase_rotates_z_and_is_a_group(t, coef, seed):
    rng = np.random.default_rng(seed)
    a = np.array(coef)
    x, w = rng.random((5, 6)), rng.random((len(a), 5, 6))
    inv = global_phase(a, len(a))
    moved = inv.apply({"x": x, "w": w}, t)
    z, z2 = x + 1j * np.tensordot(a, w, 1), moved["x"] + 1j * np.tensordot(a, moved["w"], 1)
    np.testing.assert_allclose(z2, z * np.exp(1j * t), atol=1e-12)
    back = inv.apply(moved, -t)
    np.testing.assert_allclose(back["x"], x, atol=1e-12)
    np.testing.assert_allclose(back["w"], w, atol=1e-12)
    zero = inv.apply({"x": x, "w": w}, 0.0)
    np.testing.assert_array_equal(zero["x"], x)
    np.testing.assert_array_equal(zero["w"], w)


@settings(max_examples=10, deadline=None)
@given(t=st.floats(-3.0, 3.0))
def test_the_ptychography_term_does_not_see_its_invariance(small, t):
    alone = build_problem(small, terms=["ptychography"], dtype="float64")
    inv = alone.invariances()["ptychography"]
    v = alone.start() + 0.3 * np.random.default_rng(1).random(alone.space.size)
    arrays = alone.space.unpack(v)
    moved = alone.space.pack({**arrays, **inv.apply(arrays, t)})
    assert alone.value(moved) == pytest.approx(alone.value(v), rel=1e-10)
    joint = build_problem(small, dtype="float64")
    # the XRF does see it: a turn of t rad changes the joint value by about 0.04 |t| relative here (measured), so
    # below 1e-4 rad the change is within a few 1e-6 (hypothesis found t = 1e-5)
    assert joint.value(moved) != pytest.approx(joint.value(v), rel=1e-6) or abs(t) < 1e-4


def test_align_finds_the_phase_the_maps_pin(small):
    problem = build_problem(small, dtype="float64")
    inv = problem.invariances()["ptychography"]
    truth = problem.space.pack({**problem.truth, **inv.apply(problem.truth, 0.05)})  # the truth, 0.05 rad off
    v, moves = problem.align(truth)
    assert moves["ptychography"] == pytest.approx(-0.05, abs=0.01)
    assert problem.value(v) < problem.value(truth)
    assert problem.relative_errors(v)["total"] < 0.3 * problem.relative_errors(truth)["total"]


def test_align_leaves_a_term_alone_and_no_invariance_untouched(small):
    alone = build_problem(small, terms=["ptychography"])
    v = alone.start()
    assert alone.align(v) == (v, {})  # nothing else pins the phase
    xrf = build_problem(small, terms=["fluorescence"])
    assert xrf.invariances() == {} and xrf.align(xrf.start())[1] == {}


@pytest.mark.parametrize("solver", ["lbfgs", "gauss-newton"])
def test_aligned_runs_descend_and_record_the_moves(small, solver):
    problem = build_problem(small, dtype="float64")
    h = solve_staged(problem, problem.start(), solver, maxiter=6, align=True).history
    moves = h["align_ptychography"][1:]
    assert np.all(np.isfinite(moves)) and np.all(np.abs(moves) <= 0.8 + 1e-12) and np.any(moves != 0)
    assert np.all(np.diff(h["objective"]) <= 1e-12 * np.abs(h["objective"][:-1]))


def test_align_is_refused_where_the_solver_state_cannot_follow(small):
    problem = build_problem(small, regularizers=[NonNegative(["w"])])
    with pytest.raises(SolverError, match="admm.*cannot take align"):
        solve_staged(problem, problem.start(), "admm", maxiter=2, align=True)
    with pytest.raises(SolverError, match="lbfgs-b.*cannot take align"):
        solve_staged(problem, problem.start(), "lbfgs", maxiter=2, align=True, method="scipy")


def test_align_recovers_the_phase_the_gradient_hardly_moves():
    """The validation study's sparse case (half size), paper weight c = 0.01: the ptychography fixes z up to its
    phase in a few iterations, the maps pin the phase, and L-BFGS alone takes ~60 iterations to turn it (measured at
    full size, docs/validation.md); aligned, the error falls below 0.12 within 10 iterations."""
    ds = validation_cases.dataset("sparse", 0.03, 0, 0.5)
    problem = build_problem(ds, balance_c=0.01)
    plain = solve_staged(problem, problem.start(), "lbfgs", maxiter=10).history["error_total"]
    h = solve_staged(problem, problem.start(), "lbfgs", maxiter=10, align=True).history
    assert plain[-1] > 0.6 and h["error_total"][-1] < 0.12
    moves = np.abs(h["align_ptychography"][1:])
    assert moves[0] == pytest.approx(0.1, rel=0.02) and moves.max() > 0.15  # the trust region grew past 0.1 rad


def test_cli_solver_option_align(tmp_path, small, capsys):
    data = tmp_path / "d.h5"
    save_dataset(data, small)
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(data), "-o", str(out), "--iterations", "3", "--solver-option", "align=true"]) == 0
    assert "align_ptychography" in load_result(out)["history"]
    capsys.readouterr()
    assert main(["reconstruct", str(data), "-o", str(tmp_path / "a.h5"), "--iterations", "3", "--solver", "admm",
                 "--regularizer", "nonnegative::w", "--solver-option", "align=true"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot take align" in err[0]


def test_align_under_mpi_matches_one_process(tmp_path, small, mpiexec):
    import subprocess

    data = tmp_path / "d.h5"
    save_dataset(data, small)
    flags = ["--iterations", "8", "--dtype", "float64", "--solver-option", "align=true"]
    assert main(["reconstruct", str(data), "-o", str(tmp_path / "r1.h5"), *flags]) == 0
    proc = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "multimodal_ip.cli", "reconstruct", str(data),
                           "-o", str(tmp_path / "r2.h5"), *flags], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one, two = load_result(tmp_path / "r1.h5"), load_result(tmp_path / "r2.h5")
    np.testing.assert_allclose(two["history"]["align_ptychography"], one["history"]["align_ptychography"],
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(two["variables"]["x"], one["variables"]["x"], rtol=1e-6, atol=1e-9)


def test_an_aligned_run_resumes_exactly():
    """The trust region along the phase (grown while the moves reach it) is in the checkpoint: a run resumed from
    its state after iteration 2 (step grown to 0.4 rad) continues as the uninterrupted one."""
    problem = build_problem(validation_cases.dataset("sparse", 0.03, 0, 0.5), balance_c=0.01)
    saved = {}

    def keep(state):
        if state.iteration == 2:
            saved.update(state.solver.state_dict())

    full = solve_staged(problem, problem.start(), "lbfgs", maxiter=8, align=True, callback=keep)
    assert saved["scalars"]["align_step_ptychography"] == pytest.approx(0.4)
    resumed = solve_staged(problem, problem.start(), "lbfgs", maxiter=8, align=True, resume_state=saved)
    np.testing.assert_array_equal(resumed.x, full.x)
    np.testing.assert_array_equal(resumed.history["align_ptychography"], full.history["align_ptychography"])


def test_the_kit_catches_a_wrong_invariance(small):
    import dataclasses

    from multimodal_ip import Invariance, JointProblem
    from multimodal_ip.testing import check_invariance

    problem = build_problem(small, dtype="float64")
    check_invariance(problem, problem.start() + 0.1)  # the ptychography's phase holds
    xrf = next(t for t in problem.terms if t.name == "fluorescence")
    wrong = dataclasses.replace(xrf, invariance=Invariance(lambda a, s: {"w": a["w"] * (1 + s)}, 0.1, "scale"))
    bad = JointProblem(problem.space, [t for t in problem.terms if t.name != "fluorescence"] + [wrong])
    with pytest.raises(AssertionError, match="fluorescence.*along its invariance 'scale'"):
        check_invariance(bad, bad.start())


def test_no_invariance_when_the_maps_do_not_reach_the_object():
    assert global_phase([0.0, 0.0], 2) is None  # Im z = 0 whatever w is: no change of the unknowns turns z
    share = global_phase([1e308], 1).apply({"x": np.ones((2, 2)), "w": np.zeros((1, 2, 2))}, 0.1)["w"]
    assert np.all(np.isfinite(share))  # a / sum(a^2) without overflowing a^2
