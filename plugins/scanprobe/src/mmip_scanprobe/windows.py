__all__ = ["CalibrationLayout", "SubpixelShift", "as_positions", "split_positions", "REFINABLE"]

import numpy as np

from multimodal_ip.backend import complex_dtype, fft2, get_array_module, ifft2, real_dtype, to_numpy
from multimodal_ip.errors import ConfigError, ShapeError

#: calibration unknowns a window-based model may refine, in packing order
REFINABLE = ("probe", "positions")


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

    Returns ``(corners, fractions)``: ``corners`` (J, 2) int64 top-left pixels, clipped into the allowed
    range, and ``fractions = positions - corners`` (J, 2) float, usually in [-0.5, 0.5] (larger only where
    clipping moved a corner). A window at ``corner + fraction`` is modelled by shifting the window
    function (probe, beam footprint) by ``fraction`` with :class:`SubpixelShift`.

    Raises :class:`~multimodal_ip.errors.ShapeError` when ``positions_px`` is not (J, 2), holds NaN/Inf,
    or (``strict``) a rounded corner lies more than a pixel outside the allowed range (``allow_outside``:
    windows must touch the object; otherwise lie inside it). ``strict=False`` only clips (positions being
    refined may wander).
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

    def subset(self, rows):
        """The shift of positions ``rows`` only (a slice): the same ramps, no copies."""
        import copy

        out = copy.copy(self)
        out.r0, out.r1 = self.r0[rows], self.r1[rows]
        return out

    def _ramped(self, spectrum, conj=False):
        out = spectrum * (self.r0.conj() if conj else self.r0)
        out *= self.r1.conj() if conj else self.r1
        return out

    def __call__(self, a):
        """``(J, Np0, Np1)`` shifted copies of ``a`` (``(Np0, Np1)``, or one per position)."""
        return ifft2(self._ramped(fft2(a)))

    def adjoint(self, b):
        """Adjoint of :meth:`__call__` for a per-position batch ``b``; sum over positions for a shared ``a``."""
        return ifft2(self._ramped(fft2(b), conj=True))

    def derivatives(self, a):
        """``(d a_j / d delta_j0, d a_j / d delta_j1)``, each ``(J, Np0, Np1)``."""
        spectrum = self._ramped(fft2(a))
        return ifft2(spectrum * (-2j * np.pi * self.k0)), ifft2(spectrum * (-2j * np.pi * self.k1))

    # ---- in the Fourier domain: fewer batched FFTs for Jacobian products -----------------------------------
    def perturbation(self, a_hat, da=None, d_shift=None):
        r"""First-order change of the shifted copies, :math:`\mathrm{shift}_j(\delta a) + \sum_k \delta_{jk}
        \partial_{\delta_{jk}} a_j`, from ``a_hat = fft2(a)``, with one batched inverse FFT."""
        if d_shift is not None:
            spec = (-2j * np.pi) * (d_shift[:, 0, None, None] * self.k0 + d_shift[:, 1, None, None] * self.k1)
            spec = spec * a_hat
            if da is not None:
                spec += fft2(da)
        else:
            spec = fft2(da)[None]
        return ifft2(self._ramped(spec))

    def gradients(self, a_hat, q, shared=True, shifts=True):  # a_hat = fft2(a) is read only for ``shifts``
        r"""Adjoints for a per-position batch ``q``: :math:`\sum_j \mathrm{shift}_j^H q_j` (``shared``) and
        :math:`\Re\langle \partial_{\delta_{jk}} a_j, q_j\rangle` as ``(J, 2)`` (``shifts``), from one batched FFT of
        ``q`` (the FFT is unitary, so inner products are taken between spectra)."""
        spec = fft2(q)
        ncp = get_array_module(spec)
        out_a = ifft2(ncp.einsum("jab,jax,jxb->ab", spec, self.r0.conj(), self.r1.conj())) if shared else None
        out_d = None
        if shifts:  # Re <-2 pi i k a_hat ramp_j, spec_j> = -2 pi Im sum k conj(a_hat ramp_j) spec_j
            t = self._ramped(a_hat[None] if a_hat.ndim == 2 else a_hat)
            ncp.conjugate(t, out=t)
            t *= spec
            out_d = ncp.stack([-2 * np.pi * ncp.imag(ncp.einsum("jab,a->j", t, self.k0[0, :, 0])),
                               -2 * np.pi * ncp.imag(ncp.einsum("jab,b->j", t, self.k1[0, 0, :]))], axis=1)
        return out_a, out_d


class CalibrationLayout:
    r"""Packing of a model input ``[main; probe; positions]`` where the last two are optional unknowns.

    ``main`` is the packed real vector of the model's own variables (length ``n_main``), ``probe`` a complex
    ``window`` array stored as interleaved (re, im) pairs, ``positions`` ``(J, 2)`` floats, in that order and
    only when named in ``refine`` (the order of :class:`~multimodal_ip.VariableSpace` packing of
    ``inputs + refine``).
    """

    def __init__(self, n_main, window, n_positions, refine=(), dtype="float64"):
        refine = tuple(refine)
        unknown = [r for r in refine if r not in REFINABLE]
        if unknown:
            msg = f"can refine only {REFINABLE}; got {unknown}"
            raise ConfigError(msg)
        self.refine = tuple(r for r in REFINABLE if r in refine)
        self.window, self.n_positions = tuple(window), int(n_positions)
        self.dtype, self.cdtype = np.dtype(dtype), complex_dtype(dtype)
        sizes = {"probe": 2 * int(np.prod(window)), "positions": 2 * self.n_positions}
        self.bounds, start = {"main": (0, int(n_main))}, int(n_main)
        for r in self.refine:
            self.bounds[r] = (start, start + sizes[r])
            start += sizes[r]
        self.size = start

    def split(self, v):
        """``(main, probe or None, positions or None)`` views of ``v``."""
        ncp = get_array_module(v)
        main = v[slice(*self.bounds["main"])]
        probe = positions = None
        if "probe" in self.bounds:
            part = ncp.ascontiguousarray(v[slice(*self.bounds["probe"])])  # (re, im) pairs in v's precision
            probe = part.view(complex_dtype(part.dtype)).reshape(self.window)
        if "positions" in self.bounds:
            positions = v[slice(*self.bounds["positions"])].reshape(self.n_positions, 2)
        return main, probe, positions

    def join(self, main, probe=None, positions=None):
        """The packed real vector of the adjoint parts (``probe`` complex, ``positions`` (J, 2))."""
        ncp = get_array_module(main)
        parts = [main.ravel()]
        if "probe" in self.bounds:
            rdt = main.real.dtype
            parts.append(ncp.ascontiguousarray(probe.astype(complex_dtype(rdt), copy=False)).view(rdt).ravel())
        if "positions" in self.bounds:
            parts.append(positions.ravel().astype(main.real.dtype, copy=False))
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
