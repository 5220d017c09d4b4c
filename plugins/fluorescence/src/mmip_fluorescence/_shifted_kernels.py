"""The kernel of a :class:`~mmip_fluorescence.FluorescenceMap` shifted by sub-pixel fractions, from its half spectrum
(private helpers of the map)."""

__all__ = ["half_spectrum", "shifted_kernels"]

import numpy as np

from multimodal_ip.backend import complex_dtype, get_array_module, irfft2, rfft2, to_numpy


def half_spectrum(kernel):
    """``rfft2`` of a real kernel, in the complex dtype of its precision."""
    return rfft2(kernel, kernel.shape).astype(complex_dtype(kernel.dtype), copy=False)


def shifted_kernels(spec, shape, fractions, dtype):
    r"""``(B, Kh, Kw)``: ``Re(SubpixelShift(fractions)(kernel))``, the real kernel of half spectrum ``spec``
    (:func:`half_spectrum`) and ``shape`` Fourier-shifted by each of the ``(B, 2)`` fractions (one real inverse
    FFT: half the work of the complex one).

    The real part of :math:`F^{-1}(\hat K \rho)` is the inverse of the spectrum's Hermitian part. :math:`\hat K` is
    Hermitian (``kernel`` is real) and so is the ramp :math:`\rho` except at the Nyquist frequencies of even sizes,
    where :math:`\rho` is replaced by its real part: :math:`\cos(\pi\delta_0)` on the Nyquist row,
    :math:`\cos(\pi\delta_1)` on the Nyquist column and :math:`\cos(\pi(\delta_0 + \delta_1))` at their corner. The
    result is then Hermitian, and ``irfft2`` of its half equals the real part of the complex inverse exactly
    (to rounding; tested)."""
    ncp = get_array_module(spec)
    kh, kw = shape
    rdt = np.dtype(dtype)
    f = ncp.asarray(to_numpy(fractions), dtype=rdt)
    r0 = ncp.exp(-2j * np.pi * f[:, 0, None] * ncp.fft.fftfreq(kh).astype(rdt)).astype(complex_dtype(rdt))
    r1 = ncp.exp(-2j * np.pi * f[:, 1, None] * ncp.fft.rfftfreq(kw).astype(rdt)).astype(complex_dtype(rdt))
    if kh % 2 == 0:
        r0[:, kh // 2] = ncp.cos(np.pi * f[:, 0])
    if kw % 2 == 0:
        r1[:, -1] = ncp.cos(np.pi * f[:, 1])
    x = spec[None] * r0[:, :, None]
    x *= r1[:, None, :]
    if kh % 2 == 0 and kw % 2 == 0:
        x[:, kh // 2, -1] = spec[kh // 2, -1] * ncp.cos(np.pi * (f[:, 0] + f[:, 1]))
    return irfft2(x, (kh, kw)).astype(rdt, copy=False)
