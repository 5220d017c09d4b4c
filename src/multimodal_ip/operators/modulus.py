__all__ = ["Modulus"]

from pylops import Diagonal, Real

from ..backend import get_array_module, real_dtype
from .nonlinear_operator import NonlinearOperator


class Modulus(NonlinearOperator):
    r"""Elementwise modulus :math:`y = |x|` (safe at 0).

    Parameters
    ----------
    dims : :obj:`tuple`
        Shape of the input (the output has the same shape).
    dtype : :obj:`str`, optional
        Input dtype; complex inputs give real outputs.

    Notes
    -----
    .. math:: J(x)\delta = \Re\{\bar u \odot \delta\},\quad J(x)^H r = u \odot r,
              \quad u = x/|x|\ (0 \text{ at } x=0)

    For complex input :math:`J` is only :math:`\mathbb{R}`-linear (``clinear=False``).
    """

    def __init__(self, dims, dtype="complex128", name="Modulus"):
        super().__init__(dims, dims, dtype=dtype, dtyped=real_dtype(dtype), name=name)

    def _forward(self, x):
        return get_array_module(x).abs(x)

    def _jacobian(self, x):
        ncp = get_array_module(x)
        ax = ncp.abs(x)
        u = ncp.where(ax > 0, x / ncp.where(ax > 0, ax, 1), 0).astype(x.dtype)
        if self.dtype.kind == "f":
            return Diagonal(u.ravel(), dtype=x.dtype)
        return Real(x.size, dtype=x.dtype) @ Diagonal(u.conj().ravel(), dtype=x.dtype)
