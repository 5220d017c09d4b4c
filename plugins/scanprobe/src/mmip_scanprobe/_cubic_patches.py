"""Windows of an object at fractional positions by separable cubic convolution (:class:`CubicPatches`, numba loops
when numba is installed). Re-exported by :mod:`mmip_scanprobe.windows` and :mod:`mmip_scanprobe`."""

__all__ = ["CubicPatches", "cubic_weights"]

from typing import Any

import numpy as np

from multimodal_ip.backend import get_array_module

from ._positions import as_positions, extract_patches
from .scatter import scatter_patches_

#: zero-based offsets of the four cubic-convolution taps around a sample's whole-pixel corner
_TAPS = 4

numba: Any
try:  # compiled loops for the cubic windows when numba is installed (multimodal_ip[fast]); numpy otherwise
    import numba
except ImportError:  # pragma: no cover
    numba = None

if numba is not None:  # pragma: no cover - compiled code is not traced by coverage

    @numba.njit(cache=True, nogil=True, parallel=True)
    def _sample_nb(zp, rows, cols, wr, wc, out):
        nb, n0, n1 = out.shape
        for k in numba.prange(nb):  # windows are independent: one per thread
            line = np.empty(n1 + 3, dtype=out.dtype)
            r, c = rows[k], cols[k]
            for i in range(n0):
                for j in range(n1 + 3):
                    line[j] = (wr[k, 0] * zp[r + i, c + j] + wr[k, 1] * zp[r + i + 1, c + j]
                               + wr[k, 2] * zp[r + i + 2, c + j] + wr[k, 3] * zp[r + i + 3, c + j])
                for j in range(n1):
                    out[k, i, j] = (wc[k, 0] * line[j] + wc[k, 1] * line[j + 1] + wc[k, 2] * line[j + 2]
                                    + wc[k, 3] * line[j + 3])

    @numba.njit(cache=True, nogil=True, parallel=True)
    def _position_gradient_nb(zp, rows, cols, wr, wc, dr, dc, cot, out):
        nb, n0, n1 = cot.shape
        for k in numba.prange(nb):
            lw = np.empty(n1 + 3, dtype=zp.dtype)
            ld = np.empty(n1 + 3, dtype=zp.dtype)
            r, c = rows[k], cols[k]
            s0 = 0.0
            s1 = 0.0
            for i in range(n0):
                for j in range(n1 + 3):
                    a0, a1, a2, a3 = zp[r + i, c + j], zp[r + i + 1, c + j], zp[r + i + 2, c + j], zp[r + i + 3, c + j]
                    lw[j] = wr[k, 0] * a0 + wr[k, 1] * a1 + wr[k, 2] * a2 + wr[k, 3] * a3
                    ld[j] = dr[k, 0] * a0 + dr[k, 1] * a1 + dr[k, 2] * a2 + dr[k, 3] * a3
                for j in range(n1):
                    d0 = wc[k, 0] * ld[j] + wc[k, 1] * ld[j + 1] + wc[k, 2] * ld[j + 2] + wc[k, 3] * ld[j + 3]
                    d1 = dc[k, 0] * lw[j] + dc[k, 1] * lw[j + 1] + dc[k, 2] * lw[j + 2] + dc[k, 3] * lw[j + 3]
                    q = cot[k, i, j]
                    s0 += d0.real * q.real + d0.imag * q.imag
                    s1 += d1.real * q.real + d1.imag * q.imag
            out[k, 0] = s0
            out[k, 1] = s1

    @numba.njit(cache=True, nogil=True)
    def _scatter_nb(acc, g, rows, cols, wr, wc):
        nb, n0, n1 = g.shape
        line = np.empty(n1 + 3, dtype=acc.dtype)
        for k in range(nb):
            r, c = rows[k], cols[k]
            for i in range(n0):
                line[:] = 0
                for j in range(n1):
                    v = g[k, i, j]
                    line[j] += wc[k, 0] * v
                    line[j + 1] += wc[k, 1] * v
                    line[j + 2] += wc[k, 2] * v
                    line[j + 3] += wc[k, 3] * v
                for t in range(4):
                    w = wr[k, t]
                    target = acc[r + i + t]
                    for j in range(n1 + 3):
                        target[c + j] += w * line[j]


def cubic_weights(fractions, derivative=False):
    r"""Keys cubic-convolution weights (:math:`a = -1/2`) of the taps at offsets -1, 0, 1, 2 for fractions
    :math:`f \in [0, 1)`: ``(J, 4)``, or their derivatives in :math:`f` (``derivative``). The kernel interpolates
    (``f = 0``: weights 0, 1, 0, 0) and is continuously differentiable, so a sample moves smoothly with its position,
    also across whole pixels.

    Parameters
    ----------
    fractions : :obj:`numpy.ndarray`
        Sub-pixel fractions :math:`f`, shape ``(J,)`` (any shape: the taps are a new last axis).
    derivative : :obj:`bool`, optional
        Return :math:`dh/df` of the weights instead of the weights.

    Returns
    -------
    weights : :obj:`numpy.ndarray`
        ``(*fractions.shape, 4)``: the weights (or derivatives) of the taps at offsets -1, 0, 1, 2.
    """
    f = fractions[..., None]
    if derivative:
        c = [(-1.5, 2.0, -0.5), (4.5, -5.0, 0.0), (-4.5, 4.0, 0.5), (1.5, -1.0, 0.0)]
        return sum((a * f**2 + b * f + e) * (t == np.arange(_TAPS)) for t, (a, b, e) in enumerate(c))
    c = [(-0.5, 1.0, -0.5, 0.0), (1.5, -2.5, 0.0, 1.0), (-1.5, 2.0, 0.5, 0.0), (0.5, -0.5, 0.0, 0.0)]
    return sum((a * f**3 + b * f**2 + e * f + d) * (t == np.arange(_TAPS)) for t, (a, b, e, d) in enumerate(c))


class EdgePadding:
    """The object extended by ``PAD`` edge values on every side, and the adjoint of that extension: what a window
    sampler (:class:`CubicPatches`, the ptychography plugin's band-limited sampler) samples from and scatters into."""

    PAD = 0
    #: ``(n0, n1)``, set by the sampler
    object_shape: tuple = ()

    def pad(self, z):
        """The object extended by its edge values (the array every block samples from).

        Parameters
        ----------
        z : array
            The object ``(n0, n1)``.

        Returns
        -------
        array
            ``(n0 + 2 PAD, n1 + 2 PAD)``.
        """
        ncp = get_array_module(z)
        return ncp.pad(z, self.PAD, mode="edge")

    def padded_shape(self) -> tuple:
        """``(n0 + 2 PAD, n1 + 2 PAD)`` of the sampler's ``object_shape``: the shape :meth:`pad` returns."""
        return tuple(int(n) + 2 * self.PAD for n in self.object_shape)

    def pad_in_place(self, zp):
        """:meth:`pad` inside one buffer (no second object-sized array): the object, held row-major in the first
        ``n0 * n1`` elements of ``zp``, is moved row by row (last row first, each through a one-row copy) to the
        interior, then the border is filled with the edge values; equal to :meth:`pad` bit for bit.

        Parameters
        ----------
        zp : array
            C-contiguous, :meth:`padded_shape`; overwritten.

        Returns
        -------
        array
            ``zp``.
        """
        p = self.PAD
        if not p:
            return zp
        n0, n1 = self.object_shape
        flat = zp.reshape(-1)
        for r in range(n0 - 1, -1, -1):  # each row's target starts after its source: later rows are already moved
            zp[p + r, p : p + n1] = flat[r * n1 : (r + 1) * n1].copy()
        zp[:p, p : p + n1] = zp[p, p : p + n1]
        zp[p + n0 :, p : p + n1] = zp[p + n0 - 1, p : p + n1]
        zp[:, :p] = zp[:, p : p + 1]
        zp[:, p + n1 :] = zp[:, p + n1 - 1 : p + n1]
        return zp

    @classmethod
    def unpad_adjoint(cls, acc):
        """Adjoint of :meth:`pad`: the border's sums folded into the edge pixels (in place), then cropped.

        Parameters
        ----------
        acc : array
            ``(n0 + 2 PAD, n1 + 2 PAD)``, overwritten.

        Returns
        -------
        array
            ``(n0, n1)``: a view of ``acc``.
        """
        p = cls.PAD
        acc[p, :] += acc[:p, :].sum(axis=0)
        acc[-p - 1, :] += acc[-p:, :].sum(axis=0)
        acc[:, p] += acc[:, :p].sum(axis=1)
        acc[:, -p - 1] += acc[:, -p:].sum(axis=1)
        return acc[p:-p, p:-p]


class CubicPatches(EdgePadding):
    r"""Windows of an object at fractional top-left positions, sampled by separable cubic convolution.

    :math:`S_p z(r) = \sum_{t, u} h(r_0 + p_0 - t)\, h(r_1 + p_1 - u)\, z(t, u)` for the window's pixels ``r``, with
    the Keys kernel ``h`` (:func:`cubic_weights`). The object is extended by its edge values (``PAD`` pixels each side)
    so windows at the border sample it too. Unlike a Fourier shift of the probe inside its window, the samples do not
    wrap around the window and do not depend on which whole pixel a position is split from: :math:`S_p z` is a
    continuously differentiable function of ``p`` everywhere, which position refinement needs (a probe shift jumped
    by half of a position's misfit where the split flips at half a pixel). Whole-pixel positions give the plain
    window exactly.

    Parameters
    ----------
    positions : array, shape ``(J, 2)``
        Top-left (row, col) of each window, fractional. Windows may hang up to ``PAD - 1`` pixels over the object's
        edge (the edge values continue there, so the samples stay smooth across it); further out they are clipped.
    window : :obj:`tuple`
        ``(Np0, Np1)``.
    object_shape : :obj:`tuple`
        ``(n0, n1)``.
    """

    PAD = 3

    def __init__(self, positions, window, object_shape):
        pos = as_positions(positions)
        self.window, self.object_shape = tuple(int(s) for s in window), tuple(int(s) for s in object_shape)
        hi = np.array(self.object_shape, dtype=float) - np.array(self.window) + self.PAD - 1
        pos = np.clip(pos, 1 - self.PAD, np.nextafter(hi, -np.inf))  # every tap inside the edge-extended object
        self.corners = np.floor(pos).astype(np.int64)
        self.fractions = pos - self.corners
        self._w = cubic_weights(self.fractions)  # (J, 2, 4)
        self._dw = cubic_weights(self.fractions, derivative=True)

    def _support(self, zp, rows):
        """``(B, Np0 + 3, Np1 + 3)`` whole-pixel patches covering every tap of the block's samples."""
        c = get_array_module(zp).asarray(self.corners[rows] + self.PAD - 1)
        return extract_patches(zp, c, (self.window[0] + _TAPS - 1, self.window[1] + _TAPS - 1))

    def _weights(self, rows, like, derivative=False):
        ncp = get_array_module(like)
        w = ncp.asarray((self._dw if derivative else self._w)[rows], dtype=like.real.dtype)
        return w[:, 0], w[:, 1]

    @staticmethod
    def _pass(a, w, axis, n):
        """``sum_t w[:, t] a[..., t:t+n along axis]`` for the block (one axis of the separable interpolation)."""
        ncp = get_array_module(a)
        shape = list(a.shape)
        shape[axis] = n
        out = ncp.zeros(shape, dtype=ncp.result_type(a.dtype, w.dtype))
        index = [slice(None)] * a.ndim
        for t in range(_TAPS):
            index[axis] = slice(t, t + n)
            out += w[:, t, None, None] * a[tuple(index)]
        return out

    @staticmethod
    def _pass_adjoint(g, w, axis, n):
        ncp = get_array_module(g)
        shape = list(g.shape)
        shape[axis] = n + _TAPS - 1
        out = ncp.zeros(shape, dtype=g.dtype)
        index = [slice(None)] * g.ndim
        for t in range(_TAPS):
            index[axis] = slice(t, t + n)
            out[tuple(index)] += w[:, t, None, None] * g
        return out

    def _compiled(self, *arrays):
        from multimodal_ip.kernels import use_numba

        return numba is not None and all(use_numba(a) and a.flags.c_contiguous for a in arrays)

    def _sample(self, zp, rows, wr, wc):
        if self._compiled(zp):
            c = self.corners[rows] + self.PAD - 1
            out = np.empty((len(c), *self.window), dtype=zp.dtype)
            _sample_nb(zp, c[:, 0], c[:, 1], np.ascontiguousarray(wr), np.ascontiguousarray(wc), out)
            return out
        return self._pass(self._pass(self._support(zp, rows), wr, 1, self.window[0]), wc, 2, self.window[1])

    def sample(self, zp, rows):
        """The block's windows ``(B, Np0, Np1)`` of the padded object ``zp``."""
        return self._sample(zp, rows, *self._weights(rows, zp))

    def derivatives(self, zp, rows):
        """``(d S / d p0, d S / d p1)`` of the block's windows."""
        wr, wc = self._weights(rows, zp)
        dr, dc = self._weights(rows, zp, derivative=True)
        return self._sample(zp, rows, dr, wc), self._sample(zp, rows, wr, dc)

    def scatter(self, acc_padded, g, rows):
        """``acc_padded += S^T g`` for the block (``acc_padded`` shaped like ``pad``'s result)."""
        wr, wc = self._weights(rows, g)
        c = self.corners[rows] + self.PAD - 1
        if self._compiled(acc_padded, g):
            _scatter_nb(acc_padded, g, c[:, 0], c[:, 1], np.ascontiguousarray(wr), np.ascontiguousarray(wc))
            return
        back = self._pass_adjoint(self._pass_adjoint(g, wc, 2, self.window[1]), wr, 1, self.window[0])
        scatter_patches_(acc_padded, back, None, c[:, 0], c[:, 1])

    def position_gradient(self, zp, rows, cotangent):
        r"""``(B, 2)``: :math:`\Re\langle \partial S_{p_j} z / \partial p_{jk}, c_j\rangle` for the block's
        ``cotangent`` windows :math:`c_j`."""
        ncp = get_array_module(zp)
        if self._compiled(zp, cotangent):  # one pass: the derivative windows are never stored
            wr, wc = self._weights(rows, zp)
            dr, dc = self._weights(rows, zp, derivative=True)
            c = self.corners[rows] + self.PAD - 1
            out = np.empty((len(c), 2), dtype=zp.real.dtype)
            _position_gradient_nb(zp, c[:, 0], c[:, 1], *(np.ascontiguousarray(a) for a in (wr, wc, dr, dc)),
                                  cotangent, out)
            return out
        d0, d1 = self.derivatives(zp, rows)
        return ncp.stack([_re_inner(d0, cotangent), _re_inner(d1, cotangent)], axis=1)


def _re_inner(a, b):
    """``Re sum conj(a_j) b_j`` per item of the first axis."""
    ncp = get_array_module(a)
    return ncp.einsum("jab,jab->j", a.real, b.real) + ncp.einsum("jab,jab->j", a.imag, b.imag)
