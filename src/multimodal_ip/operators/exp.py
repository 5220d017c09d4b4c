__all__ = ["Exp"]

from pylops import Diagonal

from ..backend import get_array_module
from .nonlinear_operator import NonlinearOperator


class Exp(NonlinearOperator):
    r"""Elementwise exponential :math:`y = e^x`, :math:`J(x) = \mathrm{diag}(e^x)` (complex-analytic)."""

    def __init__(self, dims, dtype="float64", name="Exp"):
        super().__init__(dims, dims, dtype=dtype, name=name)

    def _forward(self, x):
        return get_array_module(x).exp(x)

    def _linearize(self, x):
        y = get_array_module(x).exp(x)
        return y, Diagonal(y.ravel(), dtype=x.dtype)

    def _jacobian(self, x):
        return self._linearize(x)[1]
