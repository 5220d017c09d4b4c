__all__ = ["fresnel_zone_plate_probe", "wavelength_m"]

import numpy as np

HC_KEV_M = 1.2398419843320026e-9  # h*c in keV*m


def wavelength_m(energy_kev: float) -> float:
    r"""X-ray wavelength in metres for a photon energy in keV.

    Parameters
    ----------
    energy_kev : :obj:`float`
        Photon energy (keV).

    Returns
    -------
    :obj:`float`
        :math:`\lambda = hc / E` (m).
    """
    return HC_KEV_M / float(energy_kev)


def fresnel_zone_plate_probe(
    n_pixels: int,
    energy_kev: float = 8.8,
    outer_radius_m: float = 90e-6,
    outer_zone_width_m: float = 50e-9,
    central_stop_diameter_m: float = 60e-6,
    defocus_m: float | None = None,
    pixel_size_m: float = 10e-9,
    dtype="complex128",
):
    r"""Probe of a Fresnel zone plate with a central stop, at a defocused sample plane (the paper's probe).

    The pupil is the annulus of spatial frequencies between the stop's edge and the
    lens's edge (:math:`k = r / (\lambda f)`, :math:`f = 2 r\,\Delta r / \lambda`), times the
    defocus phase :math:`\exp(-i\pi\lambda\,dz\,k^2)`; the probe is its centred inverse FFT.

    Parameters
    ----------
    n_pixels : :obj:`int`
        Probe window size ``Np`` (pixels).
    energy_kev : :obj:`float`, optional
        Photon energy (8.8 keV in the paper).
    outer_radius_m, outer_zone_width_m, central_stop_diameter_m : :obj:`float`, optional
        Zone plate radius (90 um), outermost zone width (50 nm), central stop diameter (60 um).
    defocus_m : :obj:`float`, optional
        Sample distance from the focus; default ``n_pixels * 1 um``.
    pixel_size_m : :obj:`float`, optional
        Sample-plane pixel size (10 nm).

    Returns
    -------
    probe : :obj:`numpy.ndarray`, shape ``(n_pixels, n_pixels)``
    """
    n = int(n_pixels)
    lam = wavelength_m(energy_kev)
    focal_m = 2 * outer_radius_m * outer_zone_width_m / lam
    dz = n * 1e-6 if defocus_m is None else float(defocus_m)
    k = np.fft.fftshift(np.fft.fftfreq(n, d=pixel_size_m))
    kk = np.hypot(k[:, None], k[None, :])
    k_lens = outer_radius_m / (lam * focal_m)
    k_stop = 0.5 * central_stop_diameter_m / (lam * focal_m)
    pupil = ((kk <= k_lens) & (kk >= k_stop)).astype(float)
    if not pupil.any():
        msg = (
            f"the zone-plate pupil (spatial frequencies {k_stop:.3g}..{k_lens:.3g} 1/m) holds no frequency sampled "
            f"by a {n}x{n} window of {pixel_size_m:g} m pixels (spacing {1 / (n * pixel_size_m):.3g} 1/m); "
            "use a larger window"
        )
        raise ValueError(msg)
    field = pupil * np.exp(-1j * np.pi * lam * dz * kk**2)
    probe = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(field), norm="ortho"))
    return probe.astype(dtype)
