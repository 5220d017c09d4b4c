r"""Operators written forward-only in JAX: the Jacobian and its adjoint by automatic differentiation.

A modality author writes one pure function ``forward(inputs, params) -> prediction`` with ``jax.numpy``
(``inputs``: the term's variables by name, complex ones complex; ``params``: fixed arrays such as a probe or scan
positions) and wraps it in :class:`Autodiff`. The value, the Jacobian's products (JVP) and its adjoint (VJP) are
derived by JAX and compiled once per shape and dtype (shared by every operator built from the same function, so a
term split into parts or rebuilt compiles nothing new). JAX is optional: it is imported when an :class:`Autodiff`
is built, and a missing JAX is one :class:`~multimodal_ip.errors.ConfigError` line.
"""

__all__ = ["Autodiff", "jax_available"]

import functools
import importlib.util
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from pylops import LinearOperator

from ..backend import real_dtype
from ..errors import ConfigError, DtypeError
from ..variables import Variable
from .nonlinear_operator import NonlinearOperator


def jax_available() -> bool:
    """Whether JAX is installed (without importing it).

    Returns
    -------
    :obj:`bool`
        ``True`` when ``import jax`` would find a module.
    """
    return importlib.util.find_spec("jax") is not None


def _jax():
    """JAX, with 64-bit types enabled (float64 runs compute in float64; float32 inputs stay float32)."""
    try:
        import jax
    except ImportError:
        msg = ("this term's operator is written in JAX, which is not installed: pip install 'jax[cpu]' (or the extra "
               "multimodal_ip[autodiff])")
        raise ConfigError(msg) from None
    if not jax.config.read("jax_enable_x64"):
        jax.config.update("jax_enable_x64", True)
    return jax


def _unpack(layout, packed, u):
    """The variables by name from the operator's input ``u`` (traced): the array itself for one variable, else
    slices of the packed real vector (a complex variable's entries as interleaved real and imaginary parts)."""
    from jax import lax

    if not packed:
        return {layout[0][0]: u}
    out, start = {}, 0
    for name, shape, is_complex in layout:
        n = int(np.prod(shape)) * (2 if is_complex else 1)
        part = u[start : start + n]
        start += n
        out[name] = (lax.complex(part[0::2], part[1::2]) if is_complex else part).reshape(shape)
    return out


@functools.lru_cache(maxsize=128)
def _compiled(forward, layout, packed):
    """``(value, value_and_pullback, jvp, pull)``: the jit-compiled functions of one forward function and input
    layout (compiled on first call, once per shape and dtype of the input and the parameters)."""
    jax = _jax()
    jnp = jax.numpy

    def f(u, params):
        return forward(_unpack(layout, packed, u), params)

    def value_and_pullback(u, params):
        return jax.vjp(lambda a: f(a, params), u)

    def jvp(u, du, params):
        return jax.jvp(lambda a: f(a, params), (u,), (du,))[1]

    def pull(pullback, r):
        # JAX transposes the R-linear map literally (no conjugation): conj(vjp(conj r)) is the adjoint for Re<.,.>
        return jnp.conj(pullback(jnp.conj(r))[0])

    return jax.jit(f), jax.jit(value_and_pullback), jax.jit(jvp), jax.jit(pull)


class Autodiff(NonlinearOperator):
    r"""A term's forward model written in JAX; Jacobian and adjoint derived by automatic differentiation.

    Parameters
    ----------
    forward : callable
        ``forward(inputs, params) -> prediction``: a pure function of ``jax.numpy`` arrays. ``inputs`` maps each
        variable's name to its array (its shape; complex for a complex variable), ``params`` is ``params`` below.
        The prediction is one array (real or complex); its shape and dtype are found by tracing, without computing.
    variables : sequence of :class:`~multimodal_ip.Variable`
        The variables the term reads, in the term's ``inputs`` order. One variable: the operator takes its array
        (shape and kind of the variable); several: the packed real vector of
        :class:`~multimodal_ip.VariableSpace` (complex entries as interleaved real pairs), as the core passes it.
    params : mapping, optional
        Fixed arrays (probe, positions, matrices), converted once to JAX arrays in the operator's precision (floats
        to ``dtype``, complex to the matching complex type, integers kept).
    dtype : :obj:`str`, optional
        Real precision, ``float32`` or ``float64`` (default: the first variable's).
    name : :obj:`str`, optional
        Name in messages (default ``Autodiff[<function name>]``).

    Notes
    -----
    For :math:`F` with real or complex input, ``jacobian`` is a :class:`pylops.LinearOperator` whose
    ``matvec`` is the JVP :math:`J\delta` and whose ``rmatvec`` is the adjoint for :math:`\Re\langle u, v\rangle`,
    :math:`J^H r = \overline{\mathrm{vjp}(\bar r)}` (JAX's VJP transposes without conjugating), so gradients of
    real losses are ``J.H @ dL/dy`` as for every operator of the project. ``linearize`` evaluates the value and
    keeps JAX's residuals, so the adjoint after it costs one backward pass (no second forward). Arrays cross from
    numpy to JAX with ``jax.device_put`` (no copy where the array is 64-byte aligned; the input point is copied once,
    since the kept residuals may alias it) and back with ``numpy.asarray`` (a read-only view, no copy).
    """

    def __init__(self, forward: Callable, variables: Sequence[Variable], params: Mapping | None = None,
                 dtype=None, name=None):
        jax = _jax()
        variables = tuple(variables)
        if not variables:
            msg = "Autodiff needs at least one variable"
            raise ValueError(msg)
        rdtype = np.dtype(dtype) if dtype is not None else real_dtype(variables[0].dtype)
        cdtype = np.result_type(rdtype, np.complex64)
        self.layout = tuple((v.name, tuple(v.shape), v.is_complex) for v in variables)
        self.packed = len(variables) > 1
        if self.packed:
            dims: tuple = (sum(v.real_size for v in variables),)
            in_dtype = rdtype
        else:
            dims, in_dtype = tuple(variables[0].shape), cdtype if variables[0].is_complex else rdtype
        self.function = forward
        self.params = jax.tree_util.tree_map(lambda a: _as_jax(jax, a, rdtype, cdtype), dict(params or {}))
        self._value, self._value_and_pullback, self._jvp, self._pull = _compiled(forward, self.layout, self.packed)
        out = jax.eval_shape(self._value, jax.ShapeDtypeStruct(dims, in_dtype), self.params)
        if not getattr(out, "shape", ()):
            msg = (f"Autodiff: forward {getattr(forward, '__name__', forward)!r} must return one array of at least "
                   f"one dimension; got {out}")
            raise TypeError(msg)
        super().__init__(dims=dims, dimsd=tuple(out.shape), dtype=in_dtype, dtyped=out.dtype,
                         name=name or f"Autodiff[{getattr(forward, '__name__', 'forward')}]")

    def to_jax(self, x, copy=False):
        """``x`` (numpy) as a JAX array in the input's dtype: ``jax.device_put``, no copy unless ``copy``.

        Parameters
        ----------
        x : :obj:`numpy.ndarray`
            An input-shaped array (an input point or a tangent).
        copy : :obj:`bool`, optional
            Copy first (for a point whose residuals are kept: the caller may overwrite ``x`` later).

        Returns
        -------
        :obj:`jax.Array`
            The array on JAX's default device.
        """
        import jax

        if self.dtype.kind == "f" and np.iscomplexobj(x):
            x = x.real
        x = np.asarray(x).reshape(self.dims)
        x = np.array(x, dtype=self.dtype, copy=True) if copy else np.ascontiguousarray(x, dtype=self.dtype)
        return jax.device_put(x)

    def _check_numpy(self, x):
        if type(x).__module__.split(".")[0] == "cupy":
            msg = f"{self.name}: a JAX operator takes numpy arrays (JAX on the CPU); got a cupy array"
            raise DtypeError(msg)

    def _forward(self, x):
        self._check_numpy(x)
        return np.asarray(self._value(self.to_jax(x), self.params))

    def _linearize(self, x):
        self._check_numpy(x)
        u = self.to_jax(x, copy=True)
        y, pullback = self._value_and_pullback(u, self.params)
        return np.asarray(y), _AutodiffJacobian(self, u, pullback)

    def _jacobian(self, x):
        self._check_numpy(x)
        u = self.to_jax(x, copy=True)
        return _AutodiffJacobian(self, u, self._value_and_pullback(u, self.params)[1])

    def __repr__(self) -> str:
        names = ", ".join(name for name, _, _ in self.layout)
        return f"{self.name}(inputs=({names}), dims={self.dims}, dimsd={self.dimsd}, dtyped={self.dtyped})"


def _as_jax(jax, a, rdtype, cdtype) -> Any:
    """A parameter as a JAX array in the operator's precision (floats real, complex complex, integers kept)."""
    a = np.asarray(a)
    if a.dtype.kind == "c":
        a = a.astype(cdtype)
    elif a.dtype.kind == "f":
        a = a.astype(rdtype)
    return jax.device_put(np.ascontiguousarray(a))


class _AutodiffJacobian(LinearOperator):
    """The Jacobian of an :class:`Autodiff` at one point: JVP products, the VJP adjoint from the kept residuals."""

    def __init__(self, op: Autodiff, u, pullback):
        self.op, self.u, self.pullback = op, u, pullback
        super().__init__(dtype=np.result_type(op.dtype, op.dtyped), dims=op.dims, dimsd=op.dimsd,
                         name=f"J({op.name})")

    def _matvec(self, du):
        return np.asarray(self.op._jvp(self.u, self.op.to_jax(du), self.op.params)).ravel()

    def _rmatvec(self, r):
        import jax

        op = self.op
        r = np.asarray(r).reshape(op.dimsd)
        if op.dtyped.kind == "f" and np.iscomplexobj(r):
            r = r.real
        g = op._pull(self.pullback, jax.device_put(np.ascontiguousarray(r, dtype=op.dtyped)))
        return np.asarray(g).ravel()
