__all__ = ["Linear"]


from pylops import LinearOperator

from .nonlinear_operator import NonlinearOperator


class Linear(NonlinearOperator):
    r"""A pylops ``LinearOperator`` seen as a :class:`NonlinearOperator` with constant Jacobian.

    Parameters
    ----------
    op : :class:`pylops.LinearOperator`
        The linear map; its ``dims``/``dimsd`` become this operator's shapes.
    dtype : :obj:`str`, optional
        Input dtype; defaults to ``op.dtype``. Set it when the operator maps real
        inputs to complex outputs (pylops keeps a single dtype).
    dtyped : :obj:`str`, optional
        Output dtype; defaults to ``op.dtype``.
    """

    def __init__(self, op: LinearOperator, dtype=None, dtyped=None, name=None):
        self.op = op
        dims = getattr(op, "dims", (op.shape[1],))
        dimsd = getattr(op, "dimsd", (op.shape[0],))
        super().__init__(
            dims,
            dimsd,
            dtype=dtype or getattr(op, "dtype_in", None) or op.dtype,
            dtyped=dtyped or op.dtype,
            name=name or f"Linear[{type(op).__name__}]",
        )

    def _forward(self, x):
        return self.op.matvec(x.ravel()).reshape(self.dimsd)

    def _jacobian(self, x):
        return self.op

    def __repr__(self) -> str:
        return f"{self.name}(shape={self.shape})"


