__all__ = ["AFFINE_SIZE", "BandLimitedWindows", "CalibrationLayout", "CubicPatches", "EdgePadding", "SubpixelShift",
           "affine_frame",
           "affine_positions", "as_positions", "cubic_weights", "extract_patches", "split_positions", "REFINABLE"]

import numpy as np

from multimodal_ip.backend import complex_dtype, fft2, get_array_module, ifft2, real_dtype, to_numpy
from multimodal_ip.errors import ConfigError

from ._band_limited import BandLimitedWindows
from ._cubic_patches import CubicPatches, EdgePadding, cubic_weights
from ._positions import (
    AFFINE_SIZE,
    REFINABLE,
    affine_frame,
    affine_positions,
    as_positions,
    extract_patches,
    split_positions,
)


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
        return parts[0] if len(parts) == 1 else ncp.concatenate(parts)  # nothing refined: no copy of the object's

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
