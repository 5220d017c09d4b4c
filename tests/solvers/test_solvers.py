import numpy as np
import pytest

from multimodal_ip import solve
from multimodal_ip.errors import SolverError, UnknownPluginError
from multimodal_ip.io import build_problem
from multimodal_ip.regularizers import NonNegative, Tikhonov, TotalVariation
from multimodal_ip.solvers.admm import ADMMSolver
from multimodal_ip.solvers.gauss_newton import GaussNewton
from multimodal_ip.solvers.lbfgs import LBFGS


@pytest.fixture(scope="module")
def xrf_convex(tiny_dataset):
    """Fluorescence alone + Tikhonov on w: strictly convex (w only)."""
    problem = build_problem(tiny_dataset, terms=["fluorescence"])
    from multimodal_ip import VariableSpace
    from multimodal_ip.problem import JointProblem

    space = VariableSpace([problem.space["w"]])
    return JointProblem(space, problem.terms, [Tikhonov("w", 0.1)], {"w": tiny_dataset.truth["w"]})


def test_three_solvers_agree_on_convex_problem(xrf_convex):
    x0 = xrf_convex.space.full(1.0)
    reference = solve(xrf_convex, x0, "gauss-newton", maxiter=60, inner_iterations=100, inner_rtol=1e-10, gtol=1e-12)
    lb = solve(xrf_convex, x0, "lbfgs", maxiter=800, gtol=1e-12)
    # ADMM: the Tikhonov term goes to the proximal side, the data term to the smooth side
    ad = solve(xrf_convex, x0, "admm", maxiter=100, inner_iterations=20)
    scale = np.linalg.norm(reference.x)
    assert np.linalg.norm(lb.x - reference.x) / scale < 1e-5
    assert np.linalg.norm(ad.x - reference.x) / scale < 1e-3
    assert reference.history["grad_norm"][-1] < 1e-6 * reference.history["grad_norm"][0]


@pytest.mark.parametrize("solver", ["lbfgs", "gauss-newton"])
def test_joint_beats_ptychography_alone(tiny_dataset, solver):
    joint = build_problem(tiny_dataset)
    x0 = joint.space.full(1.0)
    r_joint = solve(joint, x0, solver, maxiter=40)
    r_ptycho = solve(joint.with_terms(["ptychography"]), x0, solver, maxiter=40)
    assert r_joint.history["error_total"][-1] < r_ptycho.history["error_total"][-1]
    cols = r_joint.history.columns
    for c in ("iteration", "time_s", "objective", "objective_ptychography", "objective_fluorescence", "grad_norm",
              "error_x", "error_w", "error_total"):
        assert c in cols
    assert np.all(np.diff(r_joint.history["objective"]) <= 1e-12)  # monotone decrease


def test_truncated_newton_mode_and_lbfgs_scipy(tiny_dataset):
    joint = build_problem(tiny_dataset)
    x0 = joint.space.full(1.0)
    newton = solve(joint, x0, "gauss-newton", maxiter=10, mode="newton")
    scipy_run = solve(joint, x0, "lbfgs", maxiter=30, method="scipy")
    for res in (newton, scipy_run):
        assert res.history["objective"][-1] < 0.5 * res.history["objective"][0]


def test_admm_with_tv_and_nonnegativity(tiny_dataset):
    joint = build_problem(tiny_dataset).with_regularizers([TotalVariation("w", 1e-4), NonNegative("x")])
    res = solve(joint, joint.space.full(1.0), "admm", maxiter=8, inner_iterations=5)
    assert res.arrays["x"].min() >= 0
    assert res.history["error_total"][-1] < res.history["error_total"][0]


def test_lbfgs_b_respects_box(tiny_dataset):
    from multimodal_ip.regularizers import Box

    joint = build_problem(tiny_dataset).with_regularizers([Box("x", 1.0, 1.5)])
    res = solve(joint, joint.space.full(1.0), "lbfgs", maxiter=20)
    assert res.arrays["x"].min() >= 1.0 and res.arrays["x"].max() <= 1.5
    gn = solve(joint, joint.space.full(1.0), "gauss-newton", maxiter=5)
    assert gn.arrays["x"].max() <= 1.5


def test_box_takes_a_bound_per_entry():
    """Per-entry bounds (a refined unknown kept near its start): value, projection on the variable's shape and on
    its packed slice, L-BFGS-B's bounds, and one line for crossed bounds."""
    from pylops import Diagonal

    from multimodal_ip import DataTerm, Variable, VariableSpace
    from multimodal_ip.errors import ConfigError
    from multimodal_ip.losses import LeastSquares
    from multimodal_ip.operators import Linear
    from multimodal_ip.problem import JointProblem
    from multimodal_ip.regularizers import Box

    lo = np.array([[0.0, -1.0], [2.0, 0.5]])
    box = Box(["p"], lo, lo + 1.0)
    assert box.value({"p": lo + 0.5}) == 0.0 and box.value({"p": lo - 0.1}) == np.inf
    np.testing.assert_array_equal(box.project(np.full((2, 2), 1.2), 1.0), [[1.0, 0.0], [2.0, 1.2]])
    np.testing.assert_array_equal(box.project(np.full(4, 1.2), 1.0), [1.0, 0.0, 2.0, 1.2])  # a packed slice
    space = VariableSpace([Variable("p", (2, 2))])
    term = DataTerm(Linear(Diagonal(np.ones((2, 2)))), np.full((2, 2), 9.0), LeastSquares(), 1.0, ("p",))
    problem = JointProblem(space, [term], [box])
    r = solve(problem, np.zeros(4), "lbfgs", maxiter=20)
    np.testing.assert_allclose(r.x, (lo + 1.0).ravel())  # the data pull every entry to its upper bound
    assert "per-entry" in repr(box)
    with pytest.raises(ConfigError, match="lower bound exceeds"):
        Box(["p"], lo, lo - 1.0)


@pytest.mark.parametrize("cls", [LBFGS, GaussNewton, ADMMSolver])
def test_save_and_resume_is_exact(tiny_dataset, cls):
    joint = build_problem(tiny_dataset)
    if cls is ADMMSolver:
        joint = joint.with_regularizers([TotalVariation("w", 1e-4), NonNegative("x")])
    x0 = joint.space.full(1.0)
    full = cls(joint, maxiter=12).solve(x0)
    saved = {}

    def grab(state):
        if state.iteration == 5:
            saved.update(state.solver.state_dict())

    cls(joint, maxiter=5, callback=grab).solve(x0)
    resumed = cls(joint, maxiter=12).solve(resume_state=saved)
    np.testing.assert_array_equal(resumed.x, full.x)
    assert len(resumed.history) == len(full.history) == 13


def test_stopping_rules(tiny_dataset):
    joint = build_problem(tiny_dataset)
    x0 = joint.space.full(1.0)
    assert solve(joint, x0, "lbfgs", maxiter=50, gtol=1e9).status == "converged"
    assert solve(joint, x0, "lbfgs", maxiter=50, ftol=0.5).status == "converged"
    assert solve(joint, x0, "lbfgs", maxiter=50, max_time_s=0.0).status == "max_time"
    seen = []
    solve(joint, x0, "lbfgs", maxiter=3, callback=lambda s: seen.append(s.iteration))
    assert seen == [1, 2, 3]


def test_solver_errors(tiny_dataset):
    joint = build_problem(tiny_dataset)
    x0 = joint.space.full(1.0)
    with pytest.raises(UnknownPluginError, match="no solver 'lbgfs'"):
        solve(joint, x0, "lbgfs")
    with pytest.raises(SolverError, match="needs at least one regularizer"):
        solve(joint, x0, "admm")
    with pytest.raises(SolverError, match="use method='scipy'"):
        solve(joint.with_regularizers([NonNegative("x")]), x0, "lbfgs", method="native")
    with pytest.raises(SolverError, match="mode must be"):
        solve(joint, x0, "gauss-newton", mode="magic")


def test_gauss_newton_with_a_smooth_regularizer_on_a_complex_variable():
    """Tikhonov on a complex unknown under Gauss-Newton: its Hessian-vector product is packed like the gradient
    (it raised UFuncTypeError when a complex array was added to the real packed vector)."""
    import pylops

    from multimodal_ip import DataTerm, JointProblem, Variable, VariableSpace
    from multimodal_ip.losses import LeastSquares
    from multimodal_ip.operators import Linear
    from multimodal_ip.regularizers import Tikhonov

    rng = np.random.default_rng(0)
    a = rng.standard_normal((30, 12)) + 1j * rng.standard_normal((30, 12))
    z_true = rng.standard_normal((3, 4)) + 1j * rng.standard_normal((3, 4))
    space = VariableSpace([Variable("z", (3, 4), "complex128")])
    matrix = pylops.MatrixMult(a, dtype="complex128")
    matrix.dims = (3, 4)  # reads the (3, 4) array flattened
    op = Linear(matrix)
    term = DataTerm(op, a @ z_true.ravel(), LeastSquares(), 1.0, ("z",), "lin")
    for derivative in (False, True):
        problem = JointProblem(space, [term], [Tikhonov(("z",), weight=1e-3, derivative=derivative)])
        res = solve(problem, space.full(0.0), "gauss-newton", maxiter=10)
        assert res.status in ("converged", "maxiter")
        z = space.unpack(res.x)["z"]
        assert np.linalg.norm(z - z_true) < 1e-2 * np.linalg.norm(z_true)


def test_solvers_run_blas_on_one_thread_unless_asked(monkeypatch, tiny_dataset):
    """The solvers' vector reductions run on MMIP_BLAS_THREADS BLAS threads (default 1): threads only slow
    10^5-element dot products, badly so when another process holds a core."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from multimodal_ip.backend import solver_threads

    blas = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    if not blas:
        pytest.skip("numpy reports no BLAS library to limit")
    with solver_threads():
        assert {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"} == {1}
    monkeypatch.setenv("MMIP_BLAS_THREADS", "2")
    with solver_threads():
        assert {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"} <= {1, 2}
    seen = []
    problem = build_problem(tiny_dataset)
    monkeypatch.delenv("MMIP_BLAS_THREADS")
    solve(problem, problem.start(), "lbfgs", maxiter=2, callback=lambda st: seen.append(
        {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}))
    assert seen and all(s == {1} for s in seen)


@pytest.mark.parametrize("method", ["native", "scipy"])
def test_lbfgs_history_fits_the_memory_budget(tiny_dataset, monkeypatch, method):
    """With a budget too small for 10 pairs the history shrinks, with one warning naming the numbers; the run
    still converges downhill. With room, nothing changes (no warning)."""
    import warnings

    from multimodal_ip.solvers.lbfgs import fit_memory

    p = build_problem(tiny_dataset)
    nbytes = p.start().nbytes
    assert fit_memory(10, nbytes, budget=100 * nbytes) == 10
    with pytest.warns(UserWarning, match=r"keeps 3 correction pair\(s\) instead of 10"):
        assert fit_memory(10, nbytes, budget=12 * nbytes) == 3
    monkeypatch.setenv("MMIP_MAX_MEMORY", str(8 * nbytes))  # room for 2 pairs
    with pytest.warns(UserWarning, match="instead of 10"):
        r = solve(p, p.start(), "lbfgs", maxiter=10, method=method)
    assert r.history["objective"][-1] < r.history["objective"][0]
    monkeypatch.setenv("MMIP_MAX_MEMORY", "8G")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        solve(p, p.start(), "lbfgs", maxiter=3, method=method)
