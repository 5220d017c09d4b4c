import numpy as np
import pylops
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mmip_scanprobe import ComplexCoupling

from multimodal_ip.errors import ConformanceError, DtypeError, ShapeError
from multimodal_ip.operators import Exp, Linear, Modulus, Square, compose
from multimodal_ip.testing import check_adjoint, check_jacobian
from multimodal_ip.testing import strategies as mmst


@given(dims=mmst.shapes(max_dims=4), dtype=mmst.dtypes(), seed=mmst.seeds())
def test_modulus_conformance(dims, dtype, seed):
    rng = np.random.default_rng(seed)
    x = mmst.random_array(rng, dims, dtype) + (1 if dtype.kind == "f" else 0)
    check_adjoint(Modulus(dims, dtype=dtype).jacobian(x), dtype=dtype, rng=rng)
    x64 = x.astype(np.result_type(dtype, np.float64))
    x64 = np.where(np.abs(x64) < 0.1, 0.5, x64)  # keep the Taylor test away from the kink at 0
    check_jacobian(Modulus(dims, dtype=x64.dtype), x64, rng=rng)


@pytest.mark.parametrize("cls", [Square, Exp])
@given(dims=mmst.shapes(max_dims=4), dtype=mmst.dtypes(), seed=mmst.seeds())
def test_smooth_elementwise_conformance(cls, dims, dtype, seed):
    rng = np.random.default_rng(seed)
    x = 0.5 * mmst.random_array(rng, dims, dtype)
    check_adjoint(cls(dims, dtype=dtype).jacobian(x), dtype=dtype, rng=rng)
    x64 = x.astype(np.result_type(dtype, np.float64))
    assert check_jacobian(cls(dims, dtype=x64.dtype), x64, rng=rng) > 1.8


def test_modulus_is_safe_at_zero():
    x = np.array([0, 3 + 4j, 0])
    y, jac = Modulus(3).linearize(x)
    assert np.all(np.isfinite(jac.rmatvec(np.ones(3))))
    np.testing.assert_allclose(y, [0, 5, 0])


@given(shape=mmst.shapes(min_dims=2, max_dims=2), ne=st.integers(1, 3), dtype=mmst.dtypes(real_only=True),
       seed=mmst.seeds())
def test_complex_coupling_adjoint(shape, ne, dtype, seed):
    rng = np.random.default_rng(seed)
    op = ComplexCoupling(shape, ne, coefficients=rng.random(ne), dtype=dtype)
    check_adjoint(op, dtype=dtype, rng=rng)


@given(dims=mmst.shapes(max_dims=3, max_side=4), seed=mmst.seeds())
def test_compositions_chain_rule(dims, seed):
    """nonlinear o nonlinear, nonlinear o linear, linear o nonlinear."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(dims))
    mat = pylops.MatrixMult(rng.standard_normal((n, n)) / np.sqrt(n), dtype="float64")
    mat.dims = mat.dimsd = (n,)
    x = 0.3 * rng.standard_normal(n)
    # a pylops operator on the left of `@` keeps pylops semantics, so linear o nonlinear uses compose
    for op in (compose(Square(n), Exp(n)), Exp(n) @ mat, compose(mat, Square(n)), Linear(mat) @ Square(n),
               compose(Exp(n), mat, Square(n))):
        check_adjoint(op.jacobian(x), dtype="float64", rng=rng)
        assert check_jacobian(op, x, rng=rng) > 1.8


def test_complex_chain_modulus_of_linear(rng):
    coupling = ComplexCoupling((3, 4), 2)
    op = Modulus((3, 4)) @ Linear(coupling)
    x = 1 + rng.random(36)
    check_adjoint(op.jacobian(x), dtype="float64", rng=rng)
    assert check_jacobian(op, x, rng=rng) > 1.8
    assert "Composition(Modulus" in repr(op)


def test_operator_input_validation():
    with pytest.raises(ShapeError, match=r"Modulus: input must have shape \(3, 4\)"):
        Modulus((3, 4))(np.zeros((4, 3), complex))
    with pytest.raises(DtypeError, match="must be real"):
        Exp(3)(np.zeros(3, complex))
    with pytest.raises(ShapeError, match="cannot compose"):
        compose(Exp(3), Exp(4))


def test_wrong_adjoint_is_caught():
    class BadAdjoint(pylops.LinearOperator):
        def __init__(self):
            super().__init__(dtype=np.float64, shape=(4, 3), name="BadAdjoint")

        def _matvec(self, x):
            return np.concatenate([x, x[:1]])

        def _rmatvec(self, y):
            return y[:3] * 1.1

    with pytest.raises(ConformanceError, match=r"adjoint check failed for BadAdjoint.*relative error"):
        check_adjoint(BadAdjoint())


def test_wrong_jacobian_is_caught(rng):
    class WrongExp(Exp):
        def _linearize(self, x):
            y, _ = super()._linearize(x)
            return y, pylops.Diagonal(1.05 * y.ravel())

    with pytest.raises(ConformanceError, match=r"Jacobian check failed for WrongExp.*h\^1\.0"):
        check_jacobian(WrongExp(5, name="WrongExp"), rng.standard_normal(5), rng=rng)
