__all__ = ["Exp"]

from pylops import Diagonal

from ..backend import get_array_module
from .nonlinear_operator import NonlinearOperator


class Exp(NonlinearOperator):
    r"""Elementwise exponential :math:`y = e^x`, :math:`J(x) = \mathrm{diag}(e^x)` (complex-analytic).

    Parameters
    ----------
    dims : :obj:`int` or :obj:`tuple`
        Shape of the input (the output has the same shape).
    dtype : :obj:`str`, optional
        Input (and output) dtype, real or complex.
    name : :obj:`str`, optional
        Name shown in ``repr`` and in conformance errors.
    """

    def __init__(self, dims, dtype="float64", name="Exp"):
        super().__init__(dims, dims, dtype=dtype, name=name)

    def _forward(self, x):
        return get_array_module(x).exp(x)

    def _linearize(self, x):
        y = get_array_module(x).exp(x)
        return y, Diagonal(y.ravel(), dtype=x.dtype)

    def _jacobian(self, x):
        return self._linearize(x)[1]
