"""Band-limited object windows for :class:`~mmip_ptychography.PtychographyModel` (the term option
``windows = "band-limited"``): the sampler interface of :class:`~mmip_scanprobe.CubicPatches` (``pad``, ``sample``,
``scatter``, ``unpad_adjoint``) for fixed fractional positions, with the windows of
:class:`~mmip_scanprobe.BandLimitedWindows` (the paper simulator's)."""

__all__ = ["BandLimitedSampler", "WINDOWS"]

import numpy as np
from mmip_scanprobe import EdgePadding, as_positions, extract_patches
from mmip_scanprobe.scatter import scatter_patches_

from multimodal_ip.backend import fft2, get_array_module, ifft2

#: the object-window models of the ptychography term (option ``windows``; ``"auto"``: band-limited while the positions
#: are fixed, cubic when they move)
WINDOWS = ("auto", "cubic", "band-limited")


class BandLimitedSampler(EdgePadding):
    r"""Windows :math:`S_p z = C\,F^{-1}(F(z_c)\,e^{2\pi i (k_0 f_0 + k_1 f_1)})` of the edge-extended object at
    fixed fractional positions (:math:`z_c` the patch ``MARGIN`` pixels larger on every side at the corner
    :math:`c = \lfloor p\rfloor`, :math:`f = p - c`, :math:`C` the crop), equal to
    :class:`~mmip_scanprobe.BandLimitedWindows` with its default ``margin`` and ``reach``. The adjoint is
    :math:`S_p^T g = F^{-1}(F(C^T g)\,e^{-2\pi i (k_0 f_0 + k_1 f_1)})` added back at :math:`c`. The positions do not
    move (no derivatives in them).

    Parameters
    ----------
    positions : array, shape ``(J, 2)``
        Top-left (row, col) of each window, fractional; clipped to ``REACH`` pixels outside the object.
    window : :obj:`tuple`
        ``(Np0, Np1)``.
    object_shape : :obj:`tuple`
        ``(n0, n1)``.
    """

    MARGIN = 8
    REACH = 8
    PAD = MARGIN + REACH

    def __init__(self, positions, window, object_shape):
        pos = as_positions(positions)
        self.window, self.object_shape = tuple(int(s) for s in window), tuple(int(s) for s in object_shape)
        hi = np.array(self.object_shape) - np.array(self.window) + self.REACH - 1
        pos = np.clip(pos, -self.REACH, hi)
        self.corners = np.floor(pos).astype(np.int64)
        self.fractions = pos - self.corners
        m = self.MARGIN
        self.size = (self.window[0] + 2 * m, self.window[1] + 2 * m)
        self.crop = (slice(None), slice(m, m + self.window[0]), slice(m, m + self.window[1]))
        self.k0 = np.fft.fftfreq(self.size[0])[None, :, None]
        self.k1 = np.fft.fftfreq(self.size[1])[None, None, :]

    def _ramp(self, rows, like, conj=False):
        """The block's separable phase ramps ``(B, M0, 1)`` and ``(B, 1, M1)`` in ``like``'s precision."""
        ncp = get_array_module(like)
        f = self.fractions[rows]
        sign = -1.0 if conj else 1.0
        r0 = np.exp(sign * 2j * np.pi * f[:, 0, None, None] * self.k0)
        r1 = np.exp(sign * 2j * np.pi * f[:, 1, None, None] * self.k1)
        return ncp.asarray(r0, dtype=like.dtype), ncp.asarray(r1, dtype=like.dtype)

    def sample(self, zp, rows):
        """The block's windows ``(B, Np0, Np1)`` of the padded object ``zp``.

        Parameters
        ----------
        zp : array
            The padded object (``pad``).
        rows : slice or array
            The block's positions.

        Returns
        -------
        array
            The windows (a fresh array).
        """
        corners = get_array_module(zp).asarray(self.corners[rows] + self.REACH)
        spectrum = fft2(extract_patches(zp, corners, self.size))
        r0, r1 = self._ramp(rows, spectrum)
        spectrum *= r0
        spectrum *= r1
        return ifft2(spectrum)[self.crop].copy()

    def scatter(self, acc_padded, g, rows) -> None:
        """``acc_padded += S^T g`` for the block (``acc_padded`` shaped like ``pad``'s result).

        Parameters
        ----------
        acc_padded : array
            The padded accumulator, added to in place.
        g : array
            The block's window cotangents ``(B, Np0, Np1)``.
        rows : slice or array
            The block's positions.
        """
        ncp = get_array_module(g)
        big = ncp.zeros((g.shape[0], *self.size), dtype=acc_padded.dtype)
        big[self.crop] = g
        spectrum = fft2(big)
        r0, r1 = self._ramp(rows, spectrum, conj=True)
        spectrum *= r0
        spectrum *= r1
        c = self.corners[rows] + self.REACH
        scatter_patches_(acc_padded, ifft2(spectrum), None, np.ascontiguousarray(c[:, 0]),
                         np.ascontiguousarray(c[:, 1]))
