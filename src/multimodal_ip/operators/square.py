__all__ = ["Square"]

from pylops import Diagonal

from .nonlinear_operator import NonlinearOperator


class Square(NonlinearOperator):
    r"""Elementwise square :math:`y = x^2`, :math:`J(x) = \mathrm{diag}(2x)` (complex-analytic).

    Parameters
    ----------
    dims : :obj:`int` or :obj:`tuple`
        Shape of the input (the output has the same shape).
    dtype : :obj:`str`, optional
        Input (and output) dtype, real or complex.
    name : :obj:`str`, optional
        Name shown in ``repr`` and in conformance errors.
    """

    def __init__(self, dims, dtype="float64", name="Square"):
        super().__init__(dims, dims, dtype=dtype, name=name)

    def _forward(self, x):
        return x * x

    def _jacobian(self, x):
        return Diagonal((2 * x).ravel(), dtype=x.dtype)
