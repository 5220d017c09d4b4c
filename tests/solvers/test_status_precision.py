"""Honest statuses at float32 and float64: a wrong Jacobian stalls (and the CLI names the term), a fit that reached
round-off converges, an iteration that changes nothing ends the run, and every documented way of writing a
NonlinearOperator is complete (the stall diagnosis never becomes an internal error)."""

import h5py
import numpy as np
import pylops
import pytest

from multimodal_ip import DataTerm, JointProblem, Variable, VariableSpace, hookimpl, plugins, solve
from multimodal_ip.cli import main
from multimodal_ip.diagnose import check_term_gradients
from multimodal_ip.io import load_result
from multimodal_ip.losses import LeastSquares
from multimodal_ip.operators import Linear, compose
from multimodal_ip.operators.nonlinear_operator import NonlinearOperator
from multimodal_ip.regularizers import NonNegative, Tikhonov
from multimodal_ip.solvers import Solver, get_solver
from multimodal_ip.solvers.base import ROUNDOFF_ULPS, unresolved

DTYPES = ["float32", "float64"]
#: solver name and options: native L-BFGS, scipy's L-BFGS-B, Gauss-Newton, ADMM (with a regularizer it needs)
SOLVERS = {"lbfgs-native": ("lbfgs", {"method": "native"}), "lbfgs-scipy": ("lbfgs", {"method": "scipy"}),
           "gauss-newton": ("gauss-newton", {}), "admm": ("admm", {})}
CLI_SOLVERS = {"lbfgs-native": ["--solver", "lbfgs", "--solver-option", "method=native"],
               "lbfgs-scipy": ["--solver", "lbfgs", "--solver-option", "method=scipy"],
               "gauss-newton": ["--solver", "gauss-newton"],
               "admm": ["--solver", "admm", "--regularizer", "nonnegative::x"]}


# ---- operators written each documented way: y = x**3, with a Jacobian of the given sign ------------------------
class CubeSplit(NonlinearOperator):
    """_forward and _jacobian only."""

    def __init__(self, n, dtype="float64", sign=1.0):
        super().__init__(dims=(n,), dimsd=(n,), dtype=dtype, name="Cube")
        self.sign = sign

    def _forward(self, x):
        return x**3

    def _jacobian(self, x):
        return pylops.Diagonal((3 * self.sign) * x.ravel() ** 2, dtype=x.dtype)


class CubeShared(CubeSplit):
    """_linearize only (value and Jacobian share x**2): forward and jacobian derive from it."""

    _forward = NonlinearOperator._forward
    _jacobian = NonlinearOperator._jacobian

    def _linearize(self, x):
        x2 = x * x
        return x2 * x, pylops.Diagonal((3 * self.sign) * x2.ravel(), dtype=x.dtype)


class CubeAll(CubeShared):
    """All three, each its own."""

    _forward = CubeSplit._forward
    _jacobian = CubeSplit._jacobian


WAYS = {"forward+jacobian": CubeSplit, "linearize": CubeShared, "all-three": CubeAll}


def cube_problem(dtype, sign=1.0, cls=CubeSplit, n=200, regularizers=()):
    """y = x**3 on n unknowns in [1, 2]: a zero-residual fit (exact data)."""
    rng = np.random.default_rng(0)
    d = ((1.0 + rng.random(n)) ** 3).astype(dtype)
    space = VariableSpace([Variable("x", (n,), dtype)])
    term = DataTerm(cls(n, dtype, sign), d, LeastSquares(), 1.0, ("x",), "cube")
    return JointProblem(space, [term], list(regularizers))


def overdetermined_problem(dtype, m=150, n=60):
    """y = (A x)**3 with 150 noisy values of 60 unknowns: the minimum has a residual."""
    rng = np.random.default_rng(1)
    a = (rng.standard_normal((m, n)) / np.sqrt(n)).astype(dtype)
    d = ((a @ rng.standard_normal(n)) ** 3 + 0.1 * rng.standard_normal(m)).astype(dtype)
    space = VariableSpace([Variable("x", (n,), dtype)])
    op = compose(CubeSplit(m, dtype), Linear(pylops.MatrixMult(a, dtype=dtype)))
    return JointProblem(space, [DataTerm(op, d, LeastSquares(), 1.0, ("x",), "over")])


def run(problem, solver, start, maxiter=300):
    name, options = SOLVERS[solver]
    if name == "admm" and not problem.regularizers:
        problem = problem.with_regularizers([Tikhonov("x", 1e-6)])
    return solve(problem, problem.space.full(start), name, maxiter=maxiter, **options)


# ---- the solvers -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_wrong_sign_jacobian_stalls_and_the_diagnosis_names_the_term(dtype, solver):
    problem = cube_problem(dtype, sign=-1.0)
    res = run(problem, solver, 1.5, maxiter=50)
    assert res.status == "stalled", (res.status, res.message)
    assert len(res.history) <= 3  # at once, not after 50 identical iterations
    verdict = check_term_gradients(problem, res.x)
    assert verdict["cube"] and "term 'cube'" in verdict["cube"] and "Taylor remainder" in verdict["cube"]


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["zero-residual", "with-residual"])
def test_a_fit_at_round_off_is_converged_not_stalled(dtype, solver, case):
    """Correct gradients run to exhaustion: never `stalled`; in float32 (where gtol=1e-10 cannot be met) the run
    ends `converged` on the round-off test, at the minimum."""
    problem = cube_problem(dtype) if case == "zero-residual" else overdetermined_problem(dtype)
    res = run(problem, solver, 1.5 if case == "zero-residual" else 0.5)
    assert res.status != "stalled", res.message
    if dtype == "float32":
        assert res.status == "converged", res.message
    reference = run(overdetermined_problem("float64") if case == "with-residual" else cube_problem("float64"),
                    "gauss-newton", 1.5 if case == "zero-residual" else 0.5)
    column = f"objective_{problem.term_names[0]}"  # the data misfit (ADMM adds a small Tikhonov term)
    misfit, best = res.history[column][-1], reference.history[column][-1]
    assert misfit <= best + 3e-4 * abs(best) + 1e-5, (misfit, best)


@pytest.mark.parametrize("dtype", DTYPES)
def test_roundoff_thresholds_scale_with_the_precision(dtype):
    eps = float(np.finfo(dtype).eps)
    assert unresolved(0.5 * ROUNDOFF_ULPS * eps, np.inf, 1.0, 1.0, dtype).startswith("predicted decrease")
    assert unresolved(2.0 * ROUNDOFF_ULPS * eps, np.inf, 1.0, 1.0, dtype) == ""
    assert "round-off of the iterate" in unresolved(1.0, 2 * eps, 1.0, 1.0, dtype)
    assert "round-off floor" in unresolved(1.0, 1.0, eps**2, 1.0, dtype, largest_objective=1.0)
    assert unresolved(-1.0, np.inf, 1.0, 1.0, dtype) == ""  # a model that predicts an increase is no convergence
    # a float64 decrease that float32 cannot resolve
    assert unresolved(1e-9, np.inf, 1.0, 1.0, "float32") and not unresolved(1e-9, np.inf, 1.0, 1.0, "float64")


class FlippedJacobian(NonlinearOperator):
    """Another operator with its Jacobian's sign flipped (a slip in a hand-written derivative)."""

    def __init__(self, op):
        super().__init__(op.dims, op.dimsd, op.dtype, op.dtyped, name="Flipped")
        self.op = op

    def _linearize(self, x):
        y, jac = self.op.linearize(x)
        return y, -1.0 * jac


@pytest.mark.parametrize("dtype", DTYPES)
def test_joint_problem_with_one_wrong_term_stalls_and_only_that_term_is_named(tiny_dataset, dtype):
    """Ptychography + XRF, the XRF Jacobian's sign flipped, from a point 20 iterations into the correct run (the
    all-ones start is a kink of the amplitude loss, where any Taylor test sees O(h)): stalled, and the diagnosis
    in the run's precision names the XRF term alone."""
    from dataclasses import replace

    from multimodal_ip.io import build_problem

    problem = build_problem(tiny_dataset, dtype=dtype)
    x = solve(problem, problem.start(), "lbfgs", maxiter=20).x
    terms = [replace(t, operator=FlippedJacobian(t.operator)) if t.name == "fluorescence" else t
             for t in problem.terms]
    wrong = JointProblem(problem.space, terms, problem.regularizers)
    assert solve(wrong, x, "lbfgs", maxiter=50).status == "stalled"
    verdict = check_term_gradients(wrong, x)
    assert verdict["ptychography"] is None and "term 'fluorescence'" in verdict["fluorescence"]


class Idle(Solver):
    """A third-party solver whose steps change nothing."""

    name = "idle"

    def step(self):
        return None


@pytest.mark.parametrize("dtype", DTYPES)
def test_an_iteration_that_changes_nothing_ends_the_run_stalled(dtype):
    problem = cube_problem(dtype)
    res = Idle(problem, maxiter=50).solve(problem.space.full(1.5))
    assert res.status == "stalled" and len(res.history) == 2
    assert f"iteration 1 changed neither the iterate nor the objective (at {dtype} precision)" in res.message


@pytest.mark.parametrize("dtype", DTYPES)
def test_admm_at_a_fixed_point_is_converged(dtype):
    """gtol=0: z and u unchanged (zero primal and dual residuals) with an inner solve that did not stall: converged."""
    problem = cube_problem(dtype, regularizers=[NonNegative("x")])
    res = solve(problem, problem.space.full(1.5), "admm", maxiter=300, gtol=0.0, inner_iterations=20)
    assert res.status == "converged" and len(res.history) < 301, res.message
    if dtype == "float32":  # float64 reaches a zero gradient first
        assert "fixed point: iteration" in res.message, res.message


# ---- the existing status tests, at both precisions ---------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_stopping_rules_at_both_precisions(tiny_dataset, dtype):
    """tests/solvers/test_solvers.py::test_stopping_rules (gtol, ftol, max_time, callbacks), in float32 too."""
    from multimodal_ip.io import build_problem

    joint = build_problem(tiny_dataset, dtype=dtype)
    x0 = joint.space.full(1.0)
    assert x0.dtype == np.dtype(dtype)
    assert solve(joint, x0, "lbfgs", maxiter=50, gtol=1e9).status == "converged"
    assert solve(joint, x0, "lbfgs", maxiter=50, ftol=0.5).status == "converged"
    assert solve(joint, x0, "lbfgs", maxiter=50, max_time_s=0.0).status == "max_time"
    res = solve(joint, x0, "lbfgs", maxiter=5)
    assert res.status == "maxiter" and np.all(np.diff(res.history["objective"]) < 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_overflowing_first_step_is_shortened_not_failed_at_both_precisions(dtype):
    """tests/solvers/test_line_search.py, in float32 too (exp overflows at a smaller argument there)."""
    from multimodal_ip.operators import Exp

    space = VariableSpace([Variable("x", (5,), dtype)])
    data = np.exp(np.linspace(8.0, 10.0, 5)).astype(dtype)
    problem = JointProblem(space, [DataTerm(Exp((5,), dtype=dtype), data, inputs=("x",), name="exp")])
    with np.errstate(over="ignore", invalid="ignore"):
        res = get_solver("lbfgs")(problem, np.zeros(5, dtype), maxiter=200, method="native")
    assert res.status == "converged", res.message
    np.testing.assert_allclose(res.x, np.log(data), rtol=1e-6 if dtype == "float64" else 1e-5)


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_gauss_newton_on_a_complex_variable_at_both_precisions(dtype):
    """tests/solvers/test_solvers.py::test_gauss_newton_with_a_smooth_regularizer_on_a_complex_variable (complex128),
    in complex64 too: converged or maxiter, never stalled, at the solution."""
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((30, 12)) + 1j * rng.standard_normal((30, 12))).astype(dtype)
    z_true = (rng.standard_normal((3, 4)) + 1j * rng.standard_normal((3, 4))).astype(dtype)
    space = VariableSpace([Variable("z", (3, 4), dtype)])
    matrix = pylops.MatrixMult(a, dtype=dtype)
    matrix.dims = (3, 4)  # reads the (3, 4) array flattened
    term = DataTerm(Linear(matrix), a @ z_true.ravel(), LeastSquares(), 1.0, ("z",), "lin")
    for derivative in (False, True):
        problem = JointProblem(space, [term], [Tikhonov(("z",), weight=1e-3, derivative=derivative)])
        res = solve(problem, space.full(0.0), "gauss-newton", maxiter=10)
        assert res.status in ("converged", "maxiter"), res.message
        z = space.unpack(res.x)["z"]
        assert np.linalg.norm(z - z_true) < 1e-2 * np.linalg.norm(z_true)


# ---- the CLI: a third-party modality with a wrong-sign Jacobian, in a float32 file ------------------------------
class CubeModality:
    """``y = x**3`` read from ``/terms/<name>/data``; the operator class comes from the module attribute."""

    operator = CubeSplit
    sign = -1.0
    measurements = ("data",)

    def variables(self, td):
        return [Variable("x", (int(np.shape(td.arrays["data"])[0]),))]

    def build_term(self, td, space, *, xp=None, **options):
        data = td.array("data")
        return DataTerm(self.operator(data.shape[0], space.dtype, self.sign), data, LeastSquares(), 1.0, ("x",),
                        td.name)

    def conformance_cases(self, rng):
        yield "n5", self.operator(5), 1.0 + rng.random(5)


def _register(monkeypatch, modality):
    class Extra:
        @staticmethod
        @hookimpl
        def mmip_register_modalities(register):
            register("cube", modality)

    real = plugins.build_plugin_manager
    monkeypatch.setattr(plugins, "build_plugin_manager",
                        lambda extra_plugins=(), load_entry_points=True: real((*extra_plugins, Extra)))
    plugins.reset()


@pytest.fixture(autouse=True)
def _fresh_registry():
    yield
    plugins.reset()


def _cube_file(path, n=200):
    """A float32 file (the CLI's default precision) with one `cube` term named `wrong`."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.attrs["format"], f.attrs["format_version"] = "multimodal_ip", 1
        g = f.create_group("terms/wrong")
        g.attrs["modality"] = "cube"
        g.create_dataset("data", data=(10 * (1.0 + rng.random(n)) ** 3).astype(np.float32))
    return path


@pytest.mark.parametrize("solver", CLI_SOLVERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cli_wrong_jacobian_exits_3_naming_the_term(tmp_path, capsys, monkeypatch, dtype, solver):
    """The issue's reproduction (`mmip reconstruct wj.h5 -o r.h5 --iterations 50`), at both precisions and with
    every solver: it was `maxiter`, exit 0, in float32 (native L-BFGS, ADMM) or `converged` (scipy)."""
    _register(monkeypatch, CubeModality())
    data = _cube_file(tmp_path / "wj.h5")
    with h5py.File(data) as f:
        assert f["terms/wrong/data"].dtype == np.float32
    out = tmp_path / "r.h5"
    code = main(["reconstruct", str(data), "-o", str(out), "--iterations", "50", "--dtype", dtype,
                 "--checkpoint-every", "0", *CLI_SOLVERS[solver]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3, err
    assert "stalled" in err[-1] and "term 'wrong' fails the gradient Taylor test" in err[-1], err[-1]
    result = load_result(out)
    assert result["status"] == "stalled" and len(result["history"]["objective"]) <= 3


class ExpWrongSign(NonlinearOperator):
    """exp(x) whose Jacobian has the wrong sign, written as `_linearize` alone (the value and the Jacobian's
    diagonal are one array): the fixture of tests/test_contract.py::test_wrong_jacobian_ends_stalled_naming_the_term,
    which runs at the default float32 only."""

    def __init__(self, n, dtype="float64"):
        super().__init__(dims=(n,), dimsd=(n,), dtype=dtype, name="ExpWrongSign")

    def _linearize(self, x):
        y = np.exp(x)
        return y, pylops.Diagonal(-y.ravel(), dtype=y.dtype)


class BadJacModality:
    def variables(self, td):
        return [Variable("x", (int(np.shape(td.arrays["matrix"])[1]),))]

    def build_term(self, td, space, *, xp=None, **options):
        m = pylops.MatrixMult(-td.array("matrix").astype(space.dtype), dtype=space.dtype)
        return DataTerm(compose(ExpWrongSign(m.shape[0], space.dtype), Linear(m)), td.array("data"), LeastSquares(),
                        1.0, ("x",), td.name)

    def conformance_cases(self, rng):
        yield "4x3", compose(ExpWrongSign(4), Linear(pylops.MatrixMult(rng.standard_normal((4, 3))))), \
            rng.standard_normal(3)


@pytest.mark.parametrize("solver", ["lbfgs", "gauss-newton"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_contract_wrong_jacobian_at_both_precisions(tmp_path, capsys, monkeypatch, dtype, solver):
    _register(monkeypatch, BadJacModality())
    rng = np.random.default_rng(0)
    matrix = 0.5 * rng.standard_normal((30, 6))
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"], f.attrs["format_version"] = "multimodal_ip", 1
        g = f.create_group("terms/faulty")
        g.attrs["modality"] = "cube"
        g["matrix"], g["data"] = matrix, np.exp(-matrix @ rng.standard_normal(6))
    code = main(["reconstruct", str(path), "-o", str(tmp_path / "r.h5"), "--solver", solver, "--iterations", "200",
                 "--checkpoint-every", "0", "--dtype", dtype])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3, err
    assert "stalled" in err[-1] and "term 'faulty' fails the gradient Taylor test" in err[-1]
    assert load_result(tmp_path / "r.h5")["status"] == "stalled"


def test_cli_default_precision_is_float32_and_stalls(tmp_path, capsys, monkeypatch):
    """Without --dtype (the default, float32), by subprocess-free main(): exit 3, the last line names the term."""
    _register(monkeypatch, CubeModality())
    data = _cube_file(tmp_path / "wj.h5")
    assert main(["reconstruct", str(data), "-o", str(tmp_path / "r.h5"), "--iterations", "50",
                 "--checkpoint-every", "0"]) == 3
    assert "term 'wrong' fails the gradient Taylor test" in capsys.readouterr().err.strip().splitlines()[-1]
    assert load_result(tmp_path / "r.h5")["variables"]["x"].dtype == np.float32


@pytest.mark.parametrize("dtype", DTYPES)
def test_cli_stall_is_exit_0_only_when_accepted_at_both_precisions(tmp_path, monkeypatch, capsys, dtype):
    """tests/test_contract.py::test_stall_is_exit_0_only_when_accepted (which runs at the default float32), with
    --dtype: a stall whose every term passes the Taylor test says so; --accept-stall makes it exit 0."""
    from multimodal_ip.cli import reconstruct
    from multimodal_ip.solvers import Result

    real = reconstruct._solve_with_progress

    def stalling(problem, cfg, desc, *a, **k):
        res = real(problem, cfg, desc, *a, **k)
        return Result(res.x, res.history, "stalled", "line search found no acceptable step", res.arrays)

    monkeypatch.setattr(reconstruct, "_solve_with_progress", stalling)
    data = tmp_path / "d.h5"
    assert main(["simulate", "phantom", "-o", str(data), "--n", "32", "--probe-size", "16", "--step", "4"]) == 0
    base = ["reconstruct", str(data), "-o", str(tmp_path / "r.h5"), "--iterations", "3", "--dtype", dtype]
    assert main(base) == 3
    assert "every term's gradient passes the Taylor test" in capsys.readouterr().err
    assert main([*base, "--accept-stall"]) == 0


# ---- item 3: every documented way to write an operator is complete ----------------------------------------------
@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_each_way_of_writing_an_operator_is_complete(way, dtype):
    from multimodal_ip.testing.checks import check_adjoint, check_jacobian

    op = WAYS[way](6, dtype)
    x = (1.0 + np.random.default_rng(0).random(6)).astype(dtype)
    np.testing.assert_allclose(op.forward(x), x**3, rtol=1e-6)
    value, jac = op.linearize(x)
    np.testing.assert_allclose(value, x**3, rtol=1e-6)
    np.testing.assert_allclose(op.jacobian(x).matvec(np.ones(6, dtype)), 3 * x**2, rtol=1e-6)
    np.testing.assert_allclose(jac.matvec(np.ones(6, dtype)), 3 * x**2, rtol=1e-6)
    check_adjoint(op.jacobian(x), rng=np.random.default_rng(1))
    assert check_jacobian(WAYS[way](6), x.astype(np.float64), rng=np.random.default_rng(2)) > 1.8


def test_an_operator_missing_a_part_says_what_to_implement():
    class NoJacobian(NonlinearOperator):
        def _forward(self, x):
            return x

    class Nothing(NonlinearOperator):
        pass

    np.testing.assert_array_equal(NoJacobian(3, 3).forward(np.ones(3)), np.ones(3))
    with pytest.raises(NotImplementedError, match=r"NoJacobian .* implements no _jacobian: implement _forward"):
        NoJacobian(3, 3).jacobian(np.ones(3))
    with pytest.raises(NotImplementedError, match=r"implements no _jacobian"):
        NoJacobian(3, 3).linearize(np.ones(3))
    for method in ("forward", "jacobian", "linearize"):
        with pytest.raises(NotImplementedError, match=r"Nothing .* implements no"):
            getattr(Nothing(3, 3), method)(np.ones(3))


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_stall_diagnosis_works_for_each_way(tmp_path, capsys, monkeypatch, way, dtype):
    """A `_linearize`-only operator made the diagnosis call `forward` and crash (NotImplementedError, exit 1):
    every way now stalls with exit 3 and the term named; a correct operator passes the diagnosis."""
    modality = CubeModality()
    modality.operator = WAYS[way]
    _register(monkeypatch, modality)
    data = _cube_file(tmp_path / "wj.h5")
    assert main(["reconstruct", str(data), "-o", str(tmp_path / "r.h5"), "--iterations", "20", "--dtype", dtype,
                 "--checkpoint-every", "0"]) == 3
    assert "term 'wrong' fails the gradient Taylor test" in capsys.readouterr().err.strip().splitlines()[-1]
    problem = cube_problem(dtype, cls=WAYS[way])
    assert check_term_gradients(problem, problem.space.full(1.5)) == {"cube": None}


def test_a_term_whose_code_raises_is_named_by_the_diagnosis_not_an_internal_error():
    class NoJacobian(NonlinearOperator):
        def _forward(self, x):
            return x**3

    space = VariableSpace([Variable("x", (4,))])
    problem = JointProblem(space, [DataTerm(NoJacobian(4, 4), np.ones(4), LeastSquares(), 1.0, ("x",), "half")])
    verdict = check_term_gradients(problem, np.ones(4))
    assert "term 'half' could not be evaluated: NotImplementedError" in verdict["half"]
