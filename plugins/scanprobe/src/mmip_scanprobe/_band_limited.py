"""Windows of a known object at fractional positions by band-limited (Fourier) interpolation
(:class:`BandLimitedWindows`), with their derivatives in the positions. Re-exported by :mod:`mmip_scanprobe.windows`
and :mod:`mmip_scanprobe`."""

__all__ = ["BandLimitedWindows"]

import numpy as np

from multimodal_ip.backend import get_array_module

from ._positions import as_positions, extract_patches


class BandLimitedWindows:
    r"""Windows of a fixed object ``z`` at fractional top-left positions, interpolated band-limitedly: each window is
    cut from a patch ``margin`` pixels larger on every side (the object extended by its edge values), shifted by a
    Fourier phase ramp, and cropped.

    .. math:: S_p z = C\,F^{-1}\big(F(z_{\lfloor p\rfloor}) \, e^{2\pi i (k_0 f_0 + k_1 f_1)}\big),\quad
              f = p - \lfloor p \rfloor

    (:math:`z_c` the enlarged patch at corner :math:`c`, :math:`C` the crop). This is how a band-limited object is
    sampled between its pixels, and how the paper's simulator makes jittered data (``mmip_paper``'s
    ``band_limited_spectra``, same ``margin``): the cubic windows of the reconstruction model
    (:class:`CubicPatches`) differ from it by 0.6-1.1 % at the true positions, which biases a position estimate
    made with them. The derivatives are exact (:math:`2\pi i k` times the ramp); the patch changes where
    :math:`\lfloor p\rfloor` does, so the windows are continuous there only up to the wrap-around the margin limits.

    Parameters
    ----------
    z : array
        The complex object ``(n0, n1)`` (numpy or cupy).
    window : :obj:`tuple` of :obj:`int`
        ``(Np0, Np1)``.
    margin : :obj:`int`, optional
        Extra pixels on every side of each patch.
    reach : :obj:`int`, optional
        How far (pixels) a window may leave the object (positions beyond are clipped).
    """

    def __init__(self, z, window, margin=8, reach=8):
        ncp = get_array_module(z)
        self.window, self.margin, self.reach = tuple(int(s) for s in window), int(margin), int(reach)
        self.object_shape = tuple(int(s) for s in z.shape)
        self.zp = ncp.pad(z, self.margin + self.reach, mode="edge")
        m0, m1 = self.window[0] + 2 * self.margin, self.window[1] + 2 * self.margin
        rdtype = z.real.dtype
        self.k0 = ncp.asarray(np.fft.fftfreq(m0), dtype=rdtype)[None, :, None]
        self.k1 = ncp.asarray(np.fft.fftfreq(m1), dtype=rdtype)[None, None, :]

    def __call__(self, positions, derivatives=False):
        """The windows ``(J, Np0, Np1)`` at ``positions`` ``(J, 2)``; with ``derivatives``, also
        ``(d S / d p0, d S / d p1)``.

        Parameters
        ----------
        positions : :obj:`numpy.ndarray`
            ``(J, 2)`` fractional top-left positions (pixels); clipped to ``reach`` pixels outside the object.
        derivatives : :obj:`bool`, optional
            Also return the two derivative windows.

        Returns
        -------
        array or :obj:`tuple`
            The windows, or ``(windows, d0, d1)``.
        """
        ncp = get_array_module(self.zp)
        pos = as_positions(positions)
        hi = np.array(self.object_shape) - np.array(self.window) + self.reach - 1
        pos = np.clip(pos, -self.reach, hi)
        corners = np.floor(pos).astype(np.int64)
        f = ncp.asarray(pos - corners, dtype=self.k0.dtype)
        m = self.margin
        size = (self.window[0] + 2 * m, self.window[1] + 2 * m)
        spectrum = ncp.fft.fft2(extract_patches(self.zp, corners + self.reach, size))
        spectrum *= ncp.exp(2j * np.pi * f[:, 0, None, None] * self.k0)
        spectrum *= ncp.exp(2j * np.pi * f[:, 1, None, None] * self.k1)
        crop = (slice(None), slice(m, m + self.window[0]), slice(m, m + self.window[1]))
        out = ncp.fft.ifft2(spectrum)[crop]
        if not derivatives:
            return out
        d0 = ncp.fft.ifft2(spectrum * (2j * np.pi * self.k0))[crop]
        d1 = ncp.fft.ifft2(spectrum * (2j * np.pi * self.k1))[crop]
        return out, d0, d1
