__all__ = ["AFFINE_SIZE", "CalibrationLayout", "CubicPatches", "SubpixelShift", "affine_frame", "affine_positions",
           "as_positions", "cubic_weights", "extract_patches", "split_positions", "REFINABLE"]

from typing import Any

import numpy as np

from multimodal_ip.backend import complex_dtype, fft2, get_array_module, ifft2, real_dtype, to_numpy
from multimodal_ip.errors import ConfigError, ShapeError

from .scatter import scatter_patches_

#: calibration unknowns a window-based model may refine, in packing order
REFINABLE = ("probe", "positions", "affine")
#: entries of the ``affine`` unknown: the 2 x 2 matrix (row-major) and the translation, all in pixels
AFFINE_SIZE = 6


def affine_frame(object_shape, window):
    r"""``(centre, half)`` of the frame the ``affine`` unknown acts in: the centre of the range of window corners
    of an ``object_shape`` object and its larger half-extent (at least 1). Both depend on the object and window
    only, so every chunk and MPI rank uses the same frame."""
    centre = (np.asarray(object_shape, dtype=float) - np.asarray(window, dtype=float)) / 2
    return centre, max(float(np.abs(centre).max()), 1.0)


def affine_positions(nominal, affine, object_shape, window, base=None):
    r"""Positions moved by the ``affine`` unknown :math:`a = (m_{00}, m_{01}, m_{10}, m_{11}, t_0, t_1)`:

    .. math:: p_j = q_j + M u_j + t,\qquad u_j = (n_j - c) / h

    where :math:`n_j` are the ``nominal`` positions, :math:`q_j` the ``base`` (the refined positions variable
    when the positions are refined too; default the nominal positions), and :math:`(c, h)` the
    :func:`affine_frame`: :math:`M` is in pixels of displacement at the frame's edge (a 1 % scale of an
    ``h = 200`` px scan is :math:`m_{00} = m_{11} = 2`), :math:`t` in pixels. Zero is the identity."""
    nominal = np.asarray(to_numpy(nominal), dtype=float)
    base = nominal if base is None else np.asarray(to_numpy(base), dtype=float)
    centre, half = affine_frame(object_shape, window)
    a = np.asarray(to_numpy(affine), dtype=float).ravel()
    return base + ((nominal - centre) / half) @ a[:4].reshape(2, 2).T + a[4:]


def as_positions(positions_px, what="positions"):
    """``positions_px`` as a (J, 2) float array on the host; :class:`~multimodal_ip.errors.ShapeError` when it is
    not (J, 2) with J >= 1 or holds NaN/Inf."""
    pos = np.asarray(to_numpy(positions_px), dtype=float)
    if pos.ndim != 2 or pos.shape[1] != 2 or pos.shape[0] == 0:
        msg = f"{what} must have shape (J, 2) with J >= 1; got {pos.shape}"
        raise ShapeError(msg)
    if not np.all(np.isfinite(pos)):
        msg = f"{what} contain NaN or Inf"
        raise ShapeError(msg)
    return pos


def split_positions(positions_px, object_shape, window, allow_outside=False, what="positions", strict=True):
    r"""Whole-pixel corners and sub-pixel remainders of window positions.

    A window at ``corner + fraction`` is modelled by shifting the window function (probe, beam footprint) by
    ``fraction`` with :class:`SubpixelShift`.

    Parameters
    ----------
    positions_px : :obj:`numpy.ndarray`
        ``(J, 2)`` top-left window positions (pixels, fractional).
    object_shape : :obj:`tuple` of :obj:`int`
        Shape of the object.
    window : :obj:`tuple` of :obj:`int`
        Shape of the window.
    allow_outside : :obj:`bool`, optional
        Windows must only touch the object; otherwise they lie inside it.
    what : :obj:`str`, optional
        The positions' name in error messages.
    strict : :obj:`bool`, optional
        A rounded corner more than a pixel outside the allowed range is an error; ``False`` only clips
        (positions being refined may wander).

    Returns
    -------
    corners : :obj:`numpy.ndarray`
        ``(J, 2)`` int64 top-left pixels, clipped into the allowed range.
    fractions : :obj:`numpy.ndarray`
        ``positions - corners``, ``(J, 2)`` float, usually in [-0.5, 0.5] (larger only where clipping moved a
        corner).

    Raises
    ------
    ShapeError
        ``positions_px`` is not (J, 2), holds NaN/Inf, or (``strict``) lies outside the allowed range.
    """
    pos = as_positions(positions_px, what)
    corners = np.rint(pos)
    if allow_outside:
        lo = np.array([-(window[0] - 1), -(window[1] - 1)])
        hi = np.array(object_shape) - 1
    else:
        lo = np.zeros(2)
        hi = np.array(object_shape) - np.array(window)
    bad = np.any((corners < lo - 1) | (corners > hi + 1), axis=1)
    if strict and np.any(bad):
        j = int(np.flatnonzero(bad)[0])
        msg = (f"{what}[{j}] = {tuple(float(v) for v in pos[j])} puts the {tuple(window)} window outside the "
               f"{tuple(object_shape)} object (allowed top-left rows {lo[0]:g}..{hi[0]:g}, cols {lo[1]:g}..{hi[1]:g})")
        raise ShapeError(msg)
    corners = np.clip(corners, lo, hi).astype(np.int64)
    return corners, pos - corners


def extract_patches(z, positions, window):
    """Gather the ``(J, *window)`` patches of ``z`` at top-left ``positions`` (one vectorised gather)."""
    windows = get_array_module(z).lib.stride_tricks.sliding_window_view(z, window)  # numpy and cupy alike
    return windows[positions[:, 0], positions[:, 1]]


class SubpixelShift:
    r"""Fourier shift of a window function by per-position fractions: :math:`a_j(r) = a(r - \delta_j)`.

    Parameters
    ----------
    fractions : array, shape ``(J, 2)``
        Shifts :math:`\delta_j` in pixels (row, col).
    window : :obj:`tuple`
        ``(Np0, Np1)`` shape of the window function.
    xp : module, optional
        Array module of the results (numpy or cupy).
    dtype : :obj:`str`, optional
        Complex dtype of the results.

    Notes
    -----
    :math:`a_j = F^{-1}(\hat a\, e^{-2\pi i (k_0\delta_{j0} + k_1\delta_{j1})})` with unshifted frequency grids, so a
    whole-pixel shift is exact up to wrap-around at the window's edge; :meth:`adjoint` applies the conjugate ramp
    (the shift is unitary); :meth:`derivatives` are :math:`\partial a_j / \partial \delta_{j0}` and
    :math:`\partial a_j / \partial \delta_{j1}` (multiplication by :math:`-2\pi i k`).
    """

    def __init__(self, fractions, window, xp=np, dtype="complex128"):
        dtype = complex_dtype(dtype)
        frac = xp.asarray(to_numpy(fractions), dtype=real_dtype(dtype))
        self.k0 = xp.fft.fftfreq(window[0]).astype(real_dtype(dtype))[None, :, None]
        self.k1 = xp.fft.fftfreq(window[1]).astype(real_dtype(dtype))[None, None, :]
        # the ramp is separable: (J, Np0, 1) x (J, 1, Np1) factors, never a (J, Np0, Np1) array
        self.r0 = xp.exp(-2j * np.pi * frac[:, 0, None, None] * self.k0).astype(dtype)
        self.r1 = xp.exp(-2j * np.pi * frac[:, 1, None, None] * self.k1).astype(dtype)

    def _ramped(self, spectrum, conj=False):
        out = spectrum * (self.r0.conj() if conj else self.r0)
        out *= self.r1.conj() if conj else self.r1
        return out

    def __call__(self, a):
        """``(J, Np0, Np1)`` shifted copies of ``a`` (``(Np0, Np1)``, or one per position)."""
        return ifft2(self._ramped(fft2(a)))

    def adjoint(self, b):
        """Adjoint of ``__call__`` for a per-position batch ``b`` (:meth:`shared_adjoint` sums it for a shared
        ``a`` without the batch of inverse FFTs)."""
        return ifft2(self._ramped(fft2(b), conj=True))

    def derivatives(self, a):
        """``(d a_j / d delta_j0, d a_j / d delta_j1)``, each ``(J, Np0, Np1)``."""
        spectrum = self._ramped(fft2(a))
        return ifft2(spectrum * (-2j * np.pi * self.k0)), ifft2(spectrum * (-2j * np.pi * self.k1))

    def shared_adjoint(self, q):
        r""":math:`\sum_j \mathrm{shift}_j^H q_j` for a per-position batch ``q`` (the adjoint for a window function
        shared by every position), from one batched FFT of ``q`` and one inverse FFT of the sum."""
        spec = fft2(q)
        ncp = get_array_module(spec)
        return ifft2(ncp.einsum("jab,jax,jxb->ab", spec, self.r0.conj(), self.r1.conj()))


class CalibrationLayout:
    r"""Packing of a model input ``[main; probe; positions; affine]`` where the last three are optional unknowns.

    ``main`` is the packed real vector of the model's own variables (length ``n_main``), ``probe`` a complex
    ``window`` array stored as interleaved (re, im) pairs, ``positions`` ``(J, 2)`` floats, ``affine`` the
    :data:`AFFINE_SIZE` parameters of :func:`affine_positions`, in that order and only when named in ``refine``
    (the order of :class:`~multimodal_ip.VariableSpace` packing of ``inputs + refine``). The model sees the
    *effective* positions (:meth:`split`): the positions variable (else ``nominal``) moved by the affine map;
    :meth:`join` takes the gradient with respect to them and returns it for each refined unknown.

    Parameters
    ----------
    n_main : :obj:`int`
        Length of the packed ``main`` part.
    window : :obj:`tuple` of :obj:`int`
        Shape of the probe window.
    n_positions : :obj:`int`
        Number of scan positions ``J`` (of this chunk or rank).
    refine : :obj:`tuple` of :obj:`str`, optional
        The refined unknowns, among :data:`REFINABLE`; any other is a :class:`~multimodal_ip.errors.ConfigError`.
    dtype : :obj:`str`, optional
        The real dtype of the packed vector.
    nominal : :obj:`numpy.ndarray`, optional
        ``(J, 2)``: the file's positions of this chunk or rank; needed for ``affine``.
    object_shape : :obj:`tuple` of :obj:`int`, optional
        Shape of the object; needed for ``affine``.
    """

    def __init__(self, n_main, window, n_positions, refine=(), dtype="float64", nominal=None, object_shape=None):
        refine = tuple(refine)
        unknown = [r for r in refine if r not in REFINABLE]
        if unknown:
            msg = f"can refine only {REFINABLE}; got {unknown}"
            raise ConfigError(msg)
        self.refine = tuple(r for r in REFINABLE if r in refine)
        self.window, self.n_positions = tuple(window), int(n_positions)
        self.dtype, self.cdtype = np.dtype(dtype), complex_dtype(dtype)
        #: the positions move (refined directly or through the affine map)
        self.moves = "positions" in self.refine or "affine" in self.refine
        self.nominal = self.unit = None
        if "affine" in self.refine:
            if nominal is None or object_shape is None:
                msg = "refining 'affine' needs the nominal positions and the object shape"
                raise ConfigError(msg)
            self.nominal = np.asarray(to_numpy(nominal), dtype=float)
            centre, half = affine_frame(object_shape, window)
            self.unit = (self.nominal - centre) / half  # (J, 2) in the frame's units
        sizes = {"probe": 2 * int(np.prod(window)), "positions": 2 * self.n_positions, "affine": AFFINE_SIZE}
        self.bounds, start = {"main": (0, int(n_main))}, int(n_main)
        for r in self.refine:
            self.bounds[r] = (start, start + sizes[r])
            start += sizes[r]
        self.size = start

    def split(self, v, tangent=False):
        """``(main, probe or None, positions or None)`` of ``v``: views, except the effective positions (the
        positions variable, else the nominal positions, moved by the affine map; ``None`` when neither is refined).
        ``tangent``: ``v`` is a direction, so the nominal positions do not enter (the map is affine)."""
        ncp = get_array_module(v)
        main = v[slice(*self.bounds["main"])]
        probe = positions = None
        if "probe" in self.bounds:
            part = ncp.ascontiguousarray(v[slice(*self.bounds["probe"])])  # (re, im) pairs in v's precision
            probe = part.view(complex_dtype(part.dtype)).reshape(self.window)
        if "positions" in self.bounds:
            positions = v[slice(*self.bounds["positions"])].reshape(self.n_positions, 2)
        if "affine" in self.bounds:
            a = v[slice(*self.bounds["affine"])]
            base = positions if positions is not None else 0.0 if tangent else ncp.asarray(self.nominal, v.dtype)
            unit = ncp.asarray(self.unit, dtype=v.dtype)
            positions = base + unit @ a[:4].reshape(2, 2).T + a[4:]
        return main, probe, positions

    def join(self, main, probe=None, positions=None):
        """The packed real vector of the adjoint parts (``probe`` complex, ``positions`` (J, 2): the gradient
        with respect to the effective positions, summed through the affine map for ``affine``)."""
        ncp = get_array_module(main)
        parts = [main.ravel()]
        rdt = main.real.dtype
        if "probe" in self.bounds:
            parts.append(ncp.ascontiguousarray(probe.astype(complex_dtype(rdt), copy=False)).view(rdt).ravel())
        if "positions" in self.bounds:
            parts.append(positions.ravel().astype(rdt, copy=False))
        if "affine" in self.bounds:
            g = positions.astype(rdt, copy=False)
            parts.append(ncp.concatenate([(g.T @ ncp.asarray(self.unit, dtype=rdt)).ravel(), g.sum(axis=0)]))
        return ncp.concatenate(parts)

    def probes(self, v, probe, corners, fractions, dtype):
        """``(main, probe, probes, shift)`` at the packed input ``v``: the current probe (the fixed ``probe``
        unless refined), and the probe shifted to every position (``probes``, ``(J, Np0, Np1)``, with its
        :class:`SubpixelShift`) or, when every position is a whole pixel and none is refined, the probe itself
        and ``shift=None``. Refined positions move by the shift from the given ``corners``: callers pass corners
        that follow the positions (:func:`split_positions` of the current positions), so the shift stays within
        half a pixel. (With corners fixed at the start, a position refined by two pixels shifted the probe by two
        pixels inside its window, wrapped around: the true positions were not a minimum. The corners now flip at
        half pixels, where the model jumps by the wrapped edge of a half-pixel shift, which is small.)"""
        main, current, positions = self.split(v)
        probe = probe if current is None else current
        if positions is not None:
            fractions = to_numpy(positions) - corners
        if positions is None and not np.any(fractions != 0):
            return main, probe, probe, None
        shift = SubpixelShift(fractions, self.window, xp=get_array_module(v), dtype=dtype)
        return main, probe, shift(probe), shift


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
    also across whole pixels."""
    f = fractions[..., None]
    if derivative:
        c = [(-1.5, 2.0, -0.5), (4.5, -5.0, 0.0), (-4.5, 4.0, 0.5), (1.5, -1.0, 0.0)]
        return sum((a * f**2 + b * f + e) * (t == np.arange(_TAPS)) for t, (a, b, e) in enumerate(c))
    c = [(-0.5, 1.0, -0.5, 0.0), (1.5, -2.5, 0.0, 1.0), (-1.5, 2.0, 0.5, 0.0), (0.5, -0.5, 0.0, 0.0)]
    return sum((a * f**3 + b * f**2 + e * f + d) * (t == np.arange(_TAPS)) for t, (a, b, e, d) in enumerate(c))


class CubicPatches:
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

    def pad(self, z):
        """The object extended by its edge values (the array every block samples from)."""
        ncp = get_array_module(z)
        return ncp.pad(z, self.PAD, mode="edge")

    @classmethod
    def unpad_adjoint(cls, acc):
        """Adjoint of :meth:`pad`: the border's sums folded into the edge pixels (in place), then cropped."""
        p = cls.PAD
        acc[p, :] += acc[:p, :].sum(axis=0)
        acc[-p - 1, :] += acc[-p:, :].sum(axis=0)
        acc[:, p] += acc[:, :p].sum(axis=1)
        acc[:, -p - 1] += acc[:, -p:].sum(axis=1)
        return acc[p:-p, p:-p]

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
        """``acc_padded += S^T g`` for the block (``acc_padded`` shaped like :meth:`pad`'s result)."""
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
