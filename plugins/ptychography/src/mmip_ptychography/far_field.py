__all__ = ["FarField", "extract_patches", "validate_positions"]

import numpy as np
from mmip_scanprobe import as_positions, extract_patches
from pylops import LinearOperator

from multimodal_ip.backend import (
    complex_dtype,
    fft2,
    fft2c,
    get_array_module,
    ifft2,
    ifft2c,
    interleaved_index,
    scatter_add,
)
from multimodal_ip.errors import ShapeError


def validate_positions(positions_px, object_shape, window_shape, allow_outside=False, what="positions"):
    """Integer (J, 2) top-left corners; by default every window must lie inside the object.

    Parameters
    ----------
    positions_px : :obj:`numpy.ndarray`
        ``(J, 2)`` top-left (row, col) window positions in object pixels; must be whole pixels (to 1e-6).
    object_shape : :obj:`tuple` of :obj:`int`
        Shape of the object.
    window_shape : :obj:`tuple` of :obj:`int`
        Shape of the window (the probe).
    allow_outside : :obj:`bool`, optional
        Windows need only overlap the object by one pixel; otherwise they lie inside it.
    what : :obj:`str`, optional
        The positions' name in error messages.

    Returns
    -------
    positions : :obj:`numpy.ndarray`
        The ``(J, 2)`` int64 corners.

    Raises
    ------
    :obj:`multimodal_ip.errors.ShapeError`
        ``positions_px`` is not (J, 2), holds NaN/Inf or fractional values, or puts a window outside the
        allowed range.
    """
    pos = as_positions(positions_px, what)
    ipos = np.rint(pos).astype(np.int64)
    if np.any(np.abs(pos - ipos) > 1e-6):
        msg = f"{what} must be whole pixels for FarField (sub-pixel positions: PtychographyModel)"
        raise ShapeError(msg)
    lo = np.array([-(window_shape[0] - 1), -(window_shape[1] - 1)]) if allow_outside else np.zeros(2, int)
    hi = np.array(object_shape) - (1 if allow_outside else np.array(window_shape))
    bad = np.any((ipos < lo) | (ipos > hi), axis=1)
    if np.any(bad):
        j = int(np.flatnonzero(bad)[0])
        msg = (
            f"{what}[{j}] = {tuple(int(v) for v in ipos[j])} puts the {window_shape} window outside the "
            f"{tuple(object_shape)} object "
            f"(allowed top-left rows {lo[0]}..{hi[0]}, cols {lo[1]}..{hi[1]})"
        )
        raise ShapeError(msg)
    return ipos


class FarField(LinearOperator):
    r"""Far-field ptychography with a known probe: :math:`\Psi_j = F(P \odot S_j z)`.

    Maps the complex object ``z`` of shape ``object_shape`` to the exit-wave spectra
    ``(J, Np, Np)``, all positions at once (one batched FFT; patches gathered with one
    strided view and scatter-added with ``bincount`` in the adjoint).

    Parameters
    ----------
    probe : array, shape ``(Np, Np)``
        Complex probe :math:`P`.
    positions_px : array, shape ``(J, 2)``
        Top-left (row, col) of each patch, whole pixels, windows inside the object.
    object_shape : :obj:`tuple`
        ``(n_rows, n_cols)`` of the object.
    dtype : :obj:`str`, optional
        ``complex64`` or ``complex128``.

    Notes
    -----
    :math:`F(a) = \mathrm{fftshift}(\mathrm{fft2}(a, \text{norm="ortho"}))`; the adjoint is
    :math:`S_j^T(\bar P \odot F^{-1}\Psi_j)` summed over :math:`j`. C-linear.
    """

    def __init__(self, probe, positions_px, object_shape, dtype="complex128", name="FarField"):
        dtype = complex_dtype(dtype)
        ncp = get_array_module(probe)
        self.probe = ncp.asarray(probe, dtype=dtype)
        self.window = tuple(self.probe.shape)
        self.object_shape = tuple(int(s) for s in object_shape)
        pos = validate_positions(_host(positions_px), self.object_shape, self.window)
        self.positions = ncp.asarray(pos)
        rows = self.positions[:, 0, None, None] + ncp.arange(self.window[0])[None, :, None]
        cols = self.positions[:, 1, None, None] + ncp.arange(self.window[1])[None, None, :]
        # flat object index of every patch pixel: int32 when it fits (half the memory of int64)
        flat_index = rows * self.object_shape[1] + cols
        # numpy: one bincount over interleaved (re, im) pairs; cupy: cupyx.scatter_add on the plain index
        self.scatter_index = interleaved_index(flat_index) if ncp is np else flat_index
        self.probe_fft, self.even = _fold_shift(self.probe)
        super().__init__(dtype=dtype, dims=self.object_shape, dimsd=(len(pos), *self.window), name=name)

    def _matvec(self, z):
        z = z.reshape(self.object_shape)
        exit_waves = self.probe_fft * extract_patches(z, self.positions, self.window)
        return (fft2(exit_waves, overwrite_x=True) if self.even else fft2c(exit_waves)).ravel()

    def _rmatvec(self, psi):
        psi = psi.reshape(self.dimsd)
        back = ifft2(psi) if self.even else ifft2c(psi)
        back *= self.probe_fft.conj()
        return scatter_add(self.scatter_index, back, int(np.prod(self.object_shape)))


def _fold_shift(probe):
    """``(probe to multiply before a plain FFT, even)``: for even windows fftshift(fft2(a)) = fft2(a (-1)^(r+c))
    and ifft2(ifftshift(b)) = (-1)^(r+c) ifft2(b), so the checkerboard is folded into the probe and both shifts
    (two full copies of the batch) are skipped."""
    ncp = get_array_module(probe)
    even = probe.shape[0] % 2 == 0 and probe.shape[1] % 2 == 0
    if not even:
        return probe, False
    checker = (-1.0) ** (ncp.arange(probe.shape[0])[:, None] + ncp.arange(probe.shape[1])[None, :])
    return (probe * checker).astype(probe.dtype), True


def _host(a):
    from multimodal_ip.backend import to_numpy

    return to_numpy(a)
