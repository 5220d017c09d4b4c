__all__ = ["Square"]

from pylops import Diagonal

from .nonlinear_operator import NonlinearOperator


class Square(NonlinearOperator):
    r"""Elementwise square :math:`y = x^2`, :math:`J(x) = \mathrm{diag}(2x)` (complex-analytic)."""

    def __init__(self, dims, dtype="float64", name="Square"):
        super().__init__(dims, dims, dtype=dtype, name=name)

    def _forward(self, x):
        return x * x

    def _jacobian(self, x):
        return Diagonal((2 * x).ravel(), dtype=x.dtype)
