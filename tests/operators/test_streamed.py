"""Streamed terms: block-by-block loss, gradient and Gauss-Newton products equal the whole-batch operator, at any
block size, with held-out values, with and without the numba kernels, and without any whole-output temporaries."""

import tracemalloc

import numpy as np
import pytest
from mmip_ptychography import FarField, ptychography_operator, raster_positions
from mmip_scanprobe import ComplexCoupling
from mmip_scanprobe.scatter import scatter_patches_

from multimodal_ip import DataTerm, JointProblem, Variable, VariableSpace
from multimodal_ip.kernels import amplitude_misfit_, use_numba
from multimodal_ip.losses import Amplitude, LeastSquares, Poisson
from multimodal_ip.operators import Exp, Linear, Streamed, StreamedAfter, compose
from multimodal_ip.testing import check_adjoint, check_gradient


def _problems(n, npx, step, dtype, loss, block, holdout=False):
    rng = np.random.default_rng(n)
    probe = rng.standard_normal((npx, npx)) + 1j * rng.standard_normal((npx, npx))
    pos = raster_positions(n, npx, step_px=step)
    cdt = np.result_type(dtype, np.complex64)
    space = VariableSpace([Variable("x", (n, n), dtype), Variable("w", (2, n, n), dtype)])
    batch = compose(Linear(FarField(probe, pos, (n, n), dtype=cdt)),
                    Linear(ComplexCoupling((n, n), 2, coefficients=[1, 0.3], dtype=dtype)))
    streamed = ptychography_operator(probe, pos, (n, n), 2, coefficients=[1, 0.3], block=block, dtype=dtype)
    v = (1 + 0.1 * rng.standard_normal(space.size)).astype(dtype)
    data = (np.abs(batch.forward(v)) ** 2 * rng.uniform(0.8, 1.2, batch.dimsd)).astype(dtype)
    held = rng.random(data.shape) < 0.1 if holdout else None
    make = {"amplitude": lambda: Amplitude(0.1), "poisson": lambda: Poisson(50.0)}[loss]
    return [JointProblem(space, [DataTerm(op, data, make(), 1.0, ("x", "w"), "p", holdout=held)])
            for op in (batch, streamed)], v, streamed


@pytest.mark.parametrize("numba_on", ["1", "0"])
@pytest.mark.parametrize(("n", "npx", "step", "block"), [(40, 16, 4, 1), (41, 15, 5, 7), (40, 16, 4, 10**6)])
@pytest.mark.parametrize("loss", ["amplitude", "poisson"])
def test_streamed_equals_the_whole_batch(monkeypatch, numba_on, n, npx, step, block, loss):
    monkeypatch.setenv("MMIP_NUMBA", numba_on)
    (batch, streamed), v, op = _problems(n, npx, step, "float64", loss, block)
    assert streamed.terms[0].streamed and not batch.terms[0].streamed
    assert len(op.blocks()) == -(-op.dimsd[0] // min(block, op.dimsd[0]))
    lin0, lin1 = batch.linearize(v), streamed.linearize(v)
    assert lin1.objective == pytest.approx(lin0.objective, rel=1e-12)
    assert np.linalg.norm(lin1.gradient - lin0.gradient) <= 1e-12 * np.linalg.norm(lin0.gradient)
    assert streamed.value(v) == pytest.approx(batch.value(v), rel=1e-12)
    d = np.random.default_rng(0).standard_normal(v.size)
    h0, h1 = lin0.gauss_newton(0.1).matvec(d), lin1.gauss_newton(0.1).matvec(d)
    assert np.linalg.norm(h1 - h0) <= 1e-12 * np.linalg.norm(h0)
    j0, j1 = lin0.jacobian(), lin1.jacobian()  # the whole stacked Jacobian still exists (tests, the kit)
    assert np.linalg.norm(j1.matvec(d) - j0.matvec(d)) <= 1e-12 * np.linalg.norm(j0.matvec(d))


def test_streamed_holdout_matches_the_whole_batch():
    (batch, streamed), v, _ = _problems(40, 16, 4, "float64", "amplitude", 3, holdout=True)
    lin0, lin1 = batch.linearize(v), streamed.linearize(v)
    assert lin1.validation["p"] == pytest.approx(lin0.validation["p"], rel=1e-12)
    assert lin1.objective == pytest.approx(lin0.objective, rel=1e-12)
    assert np.linalg.norm(lin1.gradient - lin0.gradient) <= 1e-12 * np.linalg.norm(lin0.gradient)
    assert streamed.objectives(v)["p"] == pytest.approx(batch.objectives(v)["p"], rel=1e-12)


def test_float32_streamed_stays_float32():
    (batch, streamed), v, _ = _problems(40, 16, 4, "float32", "amplitude", 5)
    f0, g0 = batch.value_and_gradient(v)
    f1, g1 = streamed.value_and_gradient(v)
    assert g1.dtype == np.float32
    assert f1 == pytest.approx(f0, rel=1e-5) and np.linalg.norm(g1 - g0) <= 1e-5 * np.linalg.norm(g0)


def test_no_whole_batch_temporaries():
    """Peak traced allocation of one objective + gradient stays far below one whole batch of spectra."""
    (_, streamed), v, op = _problems(200, 32, 4, "float64", "amplitude", 8)
    whole_batch = int(np.prod(op.dimsd)) * 16  # complex128 spectra of every position
    streamed.linearize(v)  # warm-up (FFT plans, compiled kernels)
    tracemalloc.start()
    streamed.linearize(v)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert op.dimsd[0] == 1849 and whole_batch > 30e6
    assert peak < whole_batch / 4, (peak, whole_batch)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_kernels_match_numpy(monkeypatch, dtype):
    rng = np.random.default_rng(5)
    cdt = np.result_type(dtype, np.complex64)
    y = (rng.standard_normal((3, 8, 8)) + 1j * rng.standard_normal((3, 8, 8))).astype(cdt)
    y[0, 0, :3] = 0  # |y| = 0: gradient 0
    d = rng.random((3, 8, 8)).astype(dtype)
    d[1, 1, 1] = -0.5  # negative intensities count as 0
    out = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("MMIP_NUMBA", flag)
        yy = y.copy()
        acc = np.zeros((12, 12), cdt)
        back = y.copy()
        scatter_patches_(acc, back, y[2].conj(), np.array([0, 4, 2]), np.array([1, 0, 4]))
        out[flag] = (amplitude_misfit_(yy, d, 0.3), yy, acc)
    ref_val = float(np.sum((np.abs(y) - np.sqrt(np.maximum(d, 0))) ** 2))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    ref_acc = np.zeros((12, 12), cdt)
    for k, (r, c) in enumerate(zip([0, 4, 2], [1, 0, 4], strict=True)):
        ref_acc[r : r + 8, c : c + 8] += y[k] * y[2].conj()
    for val, grad, acc in out.values():
        assert val == pytest.approx(ref_val, rel=tol)
        assert np.all(grad[0, 0, :3] == 0)
        np.testing.assert_allclose(acc, ref_acc, rtol=tol, atol=tol)
    np.testing.assert_allclose(out["1"][1], out["0"][1], rtol=tol, atol=tol)
    np.testing.assert_allclose(out["1"][2], out["0"][2], rtol=tol, atol=tol)
    monkeypatch.setenv("MMIP_NUMBA", "0")
    assert not use_numba()


class _Rows(Streamed):
    """A toy streamed operator: row blocks of a dense matrix applied to the shared vector (the core alone)."""

    def __init__(self, a, block):
        self.a = a
        super().__init__((a.shape[1],), (a.shape[0],), block=block)

    def stream_prepare(self, u):
        return u

    def stream_tangent(self, state, du):
        return du

    def stream_forward(self, state, rows):
        return self.a[rows] @ state

    def stream_jvp(self, state, tangent, rows):
        return self.a[rows] @ tangent

    def stream_accumulator(self, state):
        return np.zeros_like(state)

    def stream_vjp(self, state, rows, g, acc):
        acc += self.a[rows].T @ g

    def stream_finish(self, state, acc):
        return acc


def test_streamed_after_a_nonlinear_operator_is_streamed_and_differentiable():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((23, 9))
    op = compose(_Rows(a, 4), Exp((9,)))
    assert isinstance(op, StreamedAfter) and len(op.blocks()) == 6
    u = 0.3 * rng.standard_normal(9)
    np.testing.assert_allclose(op.forward(u), a @ np.exp(u), rtol=1e-12)
    check_adjoint(op.jacobian(u), rng=rng)
    space = VariableSpace([Variable("x", (9,))])
    problem = JointProblem(space, [DataTerm(op, rng.standard_normal(23), LeastSquares(), 1.0, ("x",), "rows")])
    check_gradient(problem, u, rng=rng)
    op.block = 23
    assert len(op.blocks()) == 1 and op.left.block == 23
