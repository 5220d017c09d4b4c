__all__ = ["NonlinearOperator"]

import numpy as np
from pylops import LinearOperator

from ..backend import get_array_module, real_dtype
from ..errors import DtypeError, ShapeError


def _to_tuple(dims) -> tuple:
    return tuple(int(d) for d in np.atleast_1d(dims))


class NonlinearOperator:
    r"""A differentiable map between arrays, with a pylops Jacobian.

    A subclass implements the map in any one of three ways, each complete:

    * :meth:`_forward` and :meth:`_jacobian`: :meth:`_linearize` calls both;
    * :meth:`_linearize` alone, returning ``(value, jacobian)`` and sharing work between them: :meth:`_forward`
      and :meth:`_jacobian` take their part of it (a subclass that evaluates often without the Jacobian adds a
      cheaper :meth:`_forward`);
    * all three, each its own.

    The public methods validate shape and dtype once, then call the private ones. A subclass that implements
    neither :meth:`_linearize` nor :meth:`_forward` (for a value) or :meth:`_jacobian` (for a Jacobian) raises
    ``NotImplementedError`` naming what to implement.

    Parameters
    ----------
    dims : :obj:`tuple`
        Shape of the input array.
    dimsd : :obj:`tuple`
        Shape of the output array.
    dtype : :obj:`str`, optional
        Input dtype (real or complex).
    dtyped : :obj:`str`, optional
        Output dtype; defaults to ``dtype``.
    name : :obj:`str`, optional
        Name shown in ``repr`` and in conformance errors.

    Notes
    -----
    The Jacobian :math:`J(x)` is a :class:`pylops.LinearOperator` acting on
    flattened arrays, with ``dims``/``dimsd`` set. Its adjoint ``J.H`` is taken
    with respect to the real inner product :math:`\Re\langle u, v\rangle`, so a
    map that is only :math:`\mathbb{R}`-linear (``clinear=False``) still has a
    well-defined adjoint, and gradients of real losses are ``J.H @ dL/dy``.
    """

    def __init__(self, dims, dimsd, dtype="float64", dtyped=None, name=None):
        self.dims = _to_tuple(dims)
        self.dimsd = _to_tuple(dimsd)
        self.dtype = np.dtype(dtype)
        self.dtyped = np.dtype(dtyped) if dtyped is not None else self.dtype
        self.name = name or type(self).__name__
        self.shape = (int(np.prod(self.dimsd)), int(np.prod(self.dims)))

    # ---- public API: validate, then compute ------------------------------------
    def forward(self, x):
        """Evaluate the operator at ``x`` (shape ``dims`` or flat)."""
        return self._forward(self._validate(x))

    __call__ = forward

    def jacobian(self, x) -> LinearOperator:
        """The Jacobian at ``x`` as a pylops ``LinearOperator`` (adjoint w.r.t. Re<.,.>)."""
        return self._jacobian(self._validate(x))

    def linearize(self, x):
        """``(forward(x), jacobian(x))``, sharing intermediate results where the operator can."""
        return self._linearize(self._validate(x))

    # ---- to implement (one of the three ways above) ----------------------------
    def _forward(self, x):
        if self._implements("_linearize"):
            return self._linearize(x)[0]
        raise NotImplementedError(self._missing("_forward"))

    def _jacobian(self, x) -> LinearOperator:
        if self._implements("_linearize"):
            return self._linearize(x)[1]
        raise NotImplementedError(self._missing("_jacobian"))

    def _linearize(self, x):
        if not (self._implements("_forward") and self._implements("_jacobian")):
            missing = " and ".join(m for m in ("_forward", "_jacobian") if not self._implements(m))
            raise NotImplementedError(self._missing(missing))
        return self._forward(x), self._jacobian(x)

    def _implements(self, method: str) -> bool:
        """Whether a subclass overrides ``method`` (the base versions derive from one another)."""
        return getattr(type(self), method) is not getattr(NonlinearOperator, method)

    def _missing(self, what: str) -> str:
        return (f"{type(self).__name__} ({self.name}) implements no {what}: implement _forward and _jacobian, or "
                "_linearize returning (value, jacobian)")

    # ---- composition -----------------------------------------------------------
    def __matmul__(self, other):
        from .composition import compose

        return compose(self, other)

    def __rmatmul__(self, other):
        from .composition import compose

        return compose(other, self)

    def __repr__(self) -> str:
        return f"{self.name}(dims={self.dims}, dimsd={self.dimsd}, dtype={self.dtype}, dtyped={self.dtyped})"

    # ---- helpers ---------------------------------------------------------------
    def _validate(self, x):
        shape = tuple(x.shape)
        if shape != self.dims:
            if shape == (self.shape[1],):
                x = x.reshape(self.dims)
            else:
                msg = (
                    f"{self.name}: input must have shape {self.dims} (or flat ({self.shape[1]},)); "
                    f"got {shape}"
                )
                raise ShapeError(msg)
        if self.dtype.kind == "f" and np.iscomplexobj(x):
            msg = f"{self.name}: input must be real ({self.dtype}); got {x.dtype}"
            raise DtypeError(msg)
        if self.dtype.kind == "c" and not np.iscomplexobj(x):
            ncp = get_array_module(x)
            x = x.astype(np.result_type(x.dtype, np.complex64)) if x.dtype.kind == "f" else ncp.asarray(x, self.dtype)
        if x.dtype.kind not in "fc":
            x = x.astype(self.dtype)
        return x

    @property
    def rdtype(self) -> np.dtype:
        return real_dtype(self.dtype)
