import numpy as np
import pylops
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from mmip_scanprobe import ComplexCoupling

from multimodal_ip import DataTerm, JointProblem, Variable, VariableSpace, balanced_weights
from multimodal_ip.errors import ShapeError, UnknownVariableError
from multimodal_ip.losses import Amplitude, LeastSquares, Poisson, get_loss
from multimodal_ip.operators import Exp, Linear, Modulus, compose
from multimodal_ip.regularizers import Tikhonov, TotalVariation
from multimodal_ip.testing import check_adjoint, check_gradient
from multimodal_ip.testing import strategies as mmst


def make_problem(rng, n=4, ne=2, loss="amplitude", regularizers=()):
    """x (n,n), w (ne,n,n); a complex 'ptycho-like' term on [x; w] and a linear term on w."""
    space = VariableSpace([Variable("x", (n, n)), Variable("w", (ne, n, n))])
    mat = rng.standard_normal((2 * n * n, n * n)) + 1j * rng.standard_normal((2 * n * n, n * n))
    far = pylops.MatrixMult(mat, dtype="complex128")
    op1 = compose(Linear(far), Linear(ComplexCoupling((n, n), ne)))
    op1.dimsd = (2 * n * n,)
    lin = pylops.MatrixMult(rng.random((ne * 3, ne * n * n)), dtype="float64")
    lin.dims = (ne, n, n)
    op2 = Linear(lin)
    truth = {"x": 1 + rng.random((n, n)), "w": 1 + rng.random((ne, n, n))}
    v_true = space.pack(truth)
    y1 = op1(v_true)
    losses = {"amplitude": Amplitude(), "poisson": Poisson(photons_per_unit=50.0), "least-squares": LeastSquares()}
    d1 = np.abs(y1) ** 2 if loss != "least-squares" else y1
    t1 = DataTerm(op1, d1, losses[loss], 1.0, ("x", "w"), "ptycho")
    t2 = DataTerm(op2, op2(truth["w"]), LeastSquares(), 0.3, ("w",), "xrf")
    return JointProblem(space, [t1, t2], regularizers, truth)


@pytest.mark.parametrize("loss", ["amplitude", "poisson", "least-squares"])
@given(seed=mmst.seeds(), n=st.integers(2, 5), ne=st.integers(1, 3))
@example(seed=106214, n=4, ne=1)  # the Poisson case whose pre-asymptotic steps once pulled the fitted slope to 1.79
def test_joint_gradient_taylor(loss, seed, n, ne):
    rng = np.random.default_rng(seed)
    regs = (Tikhonov("x", 0.1, derivative=True), TotalVariation("w", 0.05, eps=0.1))
    problem = make_problem(rng, n, ne, loss, regs)
    v = problem.space.pack({"x": 1 + rng.random((n, n)), "w": 1 + rng.random((ne, n, n))})
    check_gradient(problem, v, rng=rng)


def test_per_term_values_and_scatter(rng):
    problem = make_problem(rng)
    v = problem.space.full(1.0)
    objs = problem.objectives(v)
    assert set(objs) == {"ptycho", "xrf"}
    assert problem.value(v) == pytest.approx(sum(objs.values()))
    g_xrf = problem.with_terms(["xrf"]).gradient(v)
    # the xrf term reads only w: its gradient on x is exactly zero
    assert np.all(problem.space.unpack(g_xrf)["x"] == 0) and np.any(problem.space.unpack(g_xrf)["w"] != 0)


@pytest.mark.parametrize("loss", ["amplitude", "poisson", "least-squares"])
def test_stacked_jacobian_and_gauss_newton(rng, loss):
    problem = make_problem(rng, loss=loss, regularizers=(Tikhonov("w", 0.2),))
    v = problem.space.full(1.0) + 0.1 * rng.random(problem.space.size)
    lin = problem.linearize(v)
    jac = lin.jacobian()
    check_adjoint(jac, dtype="float64", rng=rng)
    gn = lin.gauss_newton(0.5)
    a, b = rng.standard_normal((2, problem.space.size))
    assert np.vdot(a, gn @ b) == pytest.approx(np.vdot(gn @ a, b), rel=1e-10)  # symmetric
    assert np.vdot(a, gn @ a) > 0  # positive definite with damping


def test_gauss_newton_is_hessian_at_zero_residual(rng):
    problem = make_problem(rng, loss="least-squares")
    v = problem.space.pack(problem.truth)
    gn = problem.linearize(v).gauss_newton(0.0)
    d = rng.standard_normal(problem.space.size)
    eps = 1e-6
    fd = (problem.gradient(v + eps * d) - problem.gradient(v - eps * d)) / (2 * eps)
    np.testing.assert_allclose(gn @ d, fd, rtol=1e-5, atol=1e-8)


def test_balanced_weights(rng):
    problem = make_problem(rng)
    v0 = problem.space.full(1.0)
    w = balanced_weights(problem, v0, "ptycho", 0.01)
    grads = problem.with_weights({"ptycho": 1, "xrf": 1}).term_gradients(v0)
    assert w["ptycho"] == 1.0
    assert np.linalg.norm(w["xrf"] * grads["xrf"]) == pytest.approx(0.01 * np.linalg.norm(grads["ptycho"]))


def test_relative_errors(rng):
    problem = make_problem(rng)
    v = problem.space.pack(problem.truth)
    assert problem.relative_errors(v)["total"] == 0
    assert problem.relative_errors(2 * v)["x"] == pytest.approx(1.0)


def test_problem_validation(rng):
    problem = make_problem(rng)
    t = problem.terms[0]
    with pytest.raises(UnknownVariableError, match="reads unknown variable 'q'"):
        JointProblem(problem.space, [DataTerm(t.operator, t.data, inputs=("x", "q"), name="a")])
    with pytest.raises(ShapeError, match="expects input shape"):
        JointProblem(problem.space, [DataTerm(t.operator, t.data, inputs=("x",), name="a")])
    with pytest.raises(ShapeError, match="data must have shape"):
        DataTerm(Exp(3), np.zeros(4))
    with pytest.raises(UnknownVariableError, match="unknown term"):
        problem.with_terms(["nope"])
    with pytest.raises(ValueError, match="unknown loss 'l3'"):
        get_loss("l3")


def test_modulus_term_on_complex_variable(rng):
    space = VariableSpace([Variable("z", (3, 3), "complex128")])
    op = Modulus((3, 3))
    truth = {"z": rng.standard_normal((3, 3)) + 1j * rng.standard_normal((3, 3))}
    problem = JointProblem(space, [DataTerm(op, np.abs(truth["z"]), inputs="z", name="m")], truth=truth)
    check_gradient(problem, space.pack(truth) + 0.3, rng=rng)


def test_poisson_intensity_loss_is_bounded_below_and_smooth_across_its_floor():
    """A negative predicted intensity must not lower the likelihood without bound (it used to fall linearly)."""
    from multimodal_ip.losses import Poisson

    loss = Poisson(photons_per_unit=3.0, intensity=True)
    d = np.array([0.0, 2.0, 5.0])
    values = [loss.value(np.full(3, m), d) for m in (-1e6, -1e3, -1.0, 0.0, 1.0)]
    assert min(values) >= loss.value(d.clip(1e-300), d) - 1e-9  # the data themselves are the minimiser
    assert values[0] > values[1] > values[2]
    mu0 = loss._floor(d)
    for y in (np.full(3, mu0 * (1 - 1e-9)), np.full(3, -0.5), np.array([-1.0, 0.3, 7.0])):
        _, g = loss.value_and_gradient(y, d)
        h = 1e-4 * max(mu0, float(np.abs(y).min()))
        num = np.array([(loss.value(y + h * e, d) - loss.value(y - h * e, d)) / (2 * h) for e in np.eye(3)])
        np.testing.assert_allclose(g, num, rtol=1e-3, atol=1e-5)  # C1 at the floor: the FD step straddles it
