__all__ = ["ComplexCoupling"]

import numpy as np
from pylops import LinearOperator

from multimodal_ip.backend import complex_dtype, get_array_module
from multimodal_ip.errors import ConfigError


class ComplexCoupling(LinearOperator):
    r"""Real unknowns to one complex array: :math:`z = x + i \sum_e a_e w_e`.

    The input is the packed real vector ``[x.ravel(); w.ravel()]`` (the packing of
    a :class:`~multimodal_ip.VariableSpace` holding ``x`` of shape ``shape`` and
    ``w`` of shape ``(ne, *shape)``), the output the complex array of shape ``shape``.

    Parameters
    ----------
    shape : :obj:`tuple`
        Shape of ``x`` and of each ``w_e``.
    ne : :obj:`int`
        Number of imaginary-part maps ``w_e``.
    coefficients : array-like, optional
        Per-map weights :math:`a_e` (default all ones: the paper's coupling).
    dtype : :obj:`str`, optional
        Real input dtype; the output is the matching complex dtype.

    Notes
    -----
    Only :math:`\mathbb{R}`-linear (``clinear=False``). Adjoint with respect to
    :math:`\Re\langle\cdot,\cdot\rangle`: :math:`\bar x = \Re r`,
    :math:`\bar w_e = a_e \Im r`.
    """

    def __init__(self, shape, ne, coefficients=None, dtype="float64", name="ComplexCoupling"):
        shape = tuple(int(s) for s in shape)
        self.ne = int(ne)
        self.npix = int(np.prod(shape))
        coef = np.ones(self.ne) if coefficients is None else np.asarray(coefficients, dtype=float).ravel()
        if coef.shape != (self.ne,):
            msg = f"ComplexCoupling: need {self.ne} coefficients, got {coef.shape[0]}"
            raise ValueError(msg)
        with np.errstate(over="ignore"):
            self.coefficients = coef.astype(dtype)
        if not np.all(np.isfinite(self.coefficients)):
            msg = (f"coupling coefficients {coef.tolist()} do not fit the compute precision {np.dtype(dtype)} "
                   f"(largest {np.finfo(dtype).max:.3g}); use smaller ones or dtype float64")
            raise ConfigError(msg)
        self.dtype_in = np.dtype(dtype)
        super().__init__(
            dtype=complex_dtype(dtype),
            dims=(self.npix * (1 + self.ne),),
            dimsd=shape,
            clinear=False,
            name=name,
        )

    def form(self, v, out=None):
        r""":math:`z = x + i \sum_e a_e w_e` written into one complex array, without temporaries: the real part
        copied from ``x``, the imaginary part the weighted sum written straight into its view (one BLAS product,
        the rounding of ``coefficients @ w``).

        Parameters
        ----------
        v : array
            The packed real input ``[x.ravel(); w.ravel()]``.
        out : array, optional
            A C-contiguous complex array of ``npix`` elements (any shape, e.g. the first ``npix`` elements of a
            larger buffer) in ``v``'s complex precision; default a new one.

        Returns
        -------
        array
            ``out`` (or the new array), flat: ``(npix,)``.
        """
        out = None if out is None else out.reshape(self.npix)
        return self.combine(v[: self.npix], v[self.npix :].reshape(self.ne, self.npix), out=out)

    def combine(self, x, w, out=None):
        r""":math:`x + i \sum_e a_e w_e` of arrays of any one shape (e.g. a block of windows of ``x`` and of each
        ``w_e``): the work of :meth:`form`, whose object it equals element by element with one map (one product
        per element).

        Parameters
        ----------
        x : array
            Real, any shape.
        w : array
            Real, ``(ne, *x.shape)``.
        out : array, optional
            C-contiguous complex array of ``x.size`` elements; default a new one of ``x``'s shape.

        Returns
        -------
        array
            ``out`` (or the new array).
        """
        ncp = get_array_module(x)
        out = ncp.empty(x.shape, dtype=complex_dtype(x.dtype)) if out is None else out
        flat = out.reshape(-1)
        flat.real = x.reshape(-1)
        coef = ncp.asarray(self.coefficients, dtype=x.dtype)
        if self.ne == 1:  # BLAS's one-term product 0 + a w (a zero product is +0), without its strided-output cost
            ncp.multiply(w.reshape(-1), coef[0], out=flat.imag)
            flat.imag += 0
        else:
            ncp.matmul(coef, w.reshape(self.ne, -1), out=flat.imag)
        return out

    def adjoint(self, r, out=None):
        r"""The adjoint :math:`(\Re r, a_e \Im r)` of a complex array of any shape and strides (e.g. a cropped
        view of a padded accumulator): no flattened copy of ``r``.

        Parameters
        ----------
        r : array
            Complex, ``npix`` elements.
        out : array, optional
            Real, ``npix * (1 + ne)`` elements, C-contiguous; default a new one.

        Returns
        -------
        array
            ``(npix * (1 + ne),)``: ``out`` (or the new array), flat.
        """
        ncp = get_array_module(r)
        rdt = r.real.dtype
        coef = ncp.asarray(self.coefficients, dtype=rdt)
        out = ncp.empty(self.npix * (1 + self.ne), dtype=rdt) if out is None else out.reshape(-1)
        out[: self.npix].reshape(r.shape)[...] = r.real
        w = out[self.npix :].reshape(self.ne, *r.shape)
        ncp.multiply(coef.reshape(-1, *([1] * r.ndim)), r.imag[None], out=w)
        return out

    def adjoint_in_place(self, acc, pad=0):
        r"""The adjoint of one map (``ne == 1``) written over the complex array that holds ``r``: no second
        object-sized array. ``r`` is ``acc``, or its interior ``acc[pad:-pad, pad:-pad]`` (an edge-extended
        accumulator whose border is already folded in); its rows are moved to the front, the (re, im) pairs
        separated in place (block-sized temporaries) and the imaginary half scaled by
        :math:`a_1`: the values of :meth:`adjoint`, bit for bit.

        Parameters
        ----------
        acc : array
            C-contiguous complex, overwritten: ``npix`` elements, or ``(n0 + 2 pad, n1 + 2 pad)``.
        pad : :obj:`int`, optional
            Border width around the object in ``acc``.

        Returns
        -------
        array
            ``(2 npix,)`` real, a view of ``acc``'s memory: :math:`(\Re r, a_1 \Im r)`.
        """
        if self.ne != 1:
            msg = f"ComplexCoupling.adjoint_in_place: one map only (this coupling has {self.ne})"
            raise ValueError(msg)
        flat = acc.reshape(-1)
        if pad:
            n0, n1 = acc.shape[0] - 2 * pad, acc.shape[1] - 2 * pad
            for r in range(n0):  # each row's target ends before the next rows' sources begin
                flat[r * n1 : (r + 1) * n1] = acc[pad + r, pad : pad + n1].copy()
        out = flat[: self.npix].view(acc.real.dtype)
        _unshuffle_(out)
        imag = out[self.npix :]
        get_array_module(acc).multiply(imag, self.coefficients[0].astype(imag.dtype), out=imag)
        return out

    def _matvec(self, v):
        return self.form(v)

    def _rmatvec(self, r):
        return self.adjoint(r)


#: pairs per step of the in-place unshuffle (its temporaries: one such block, 2 MB in float32)
_BLOCK = 1 << 18


def _swap_(a, b) -> None:
    """Exchange two equal-length, non-overlapping 1-D arrays, a block at a time."""
    for s in range(0, a.shape[0], _BLOCK):
        t = a[s : s + _BLOCK].copy()
        a[s : s + _BLOCK] = b[s : s + _BLOCK]
        b[s : s + _BLOCK] = t


def _reverse_(a) -> None:
    """Reverse a 1-D array in place, a block from each end at a time."""
    i, j = 0, a.shape[0]
    while j - i >= 2 * _BLOCK:
        t = a[i : i + _BLOCK].copy()
        a[i : i + _BLOCK] = a[j - _BLOCK : j][::-1]
        a[j - _BLOCK : j] = t[::-1]
        i, j = i + _BLOCK, j - _BLOCK
    if j - i > 1:
        a[i:j] = a[i:j][::-1].copy()


def _unshuffle_(a) -> None:
    """``a`` (``2 n`` reals: (re, im) pairs) becomes ``[re (n); im (n)]`` in place: each half separated
    recursively (a block through one copy), then the middle rotated ``[im_left | re_right] -> [re_right | im_left]``
    (a swap when the halves are equal, else three reversals)."""
    n = a.shape[0] // 2
    if n <= _BLOCK:
        t = a.copy()
        a[:n] = t[0::2]
        a[n:] = t[1::2]
        return
    h = (n // 2 + _BLOCK - 1) // _BLOCK * _BLOCK  # a whole number of blocks: equal halves where possible
    _unshuffle_(a[: 2 * h])
    _unshuffle_(a[2 * h :])
    middle = a[h : n + h]
    if h == n - h:
        _swap_(middle[:h], middle[h:])
    else:
        _reverse_(middle[:h])
        _reverse_(middle[h:])
        _reverse_(middle)
