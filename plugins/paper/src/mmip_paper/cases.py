"""The simulated cases of the paper (docs/paper.md) as :class:`~multimodal_ip.io.Dataset` objects."""

__all__ = ["CASES", "simulate", "poisson_noise", "band_limited_spectra"]

import numpy as np

from multimodal_ip.errors import ConfigError
from multimodal_ip.variables import Variable

from .phantoms import natural_image, random_ellipses, scale_to_range, shepp_logan

#: case -> object size n, probe size Np, raster step, element count, balance c, object kind
CASES = {
    "phantom": {"n": 334, "probe_size": 64, "step": 30, "n_elements": 1, "balance_c": 0.01, "objects": "phantom"},
    "phantom-large": {"n": 650, "probe_size": 100, "step": 50, "n_elements": 1, "balance_c": 0.01,
                      "objects": "phantom"},
    "cameraman": {"n": 244, "probe_size": 64, "step": 20, "n_elements": 1, "balance_c": 0.05, "objects": "natural"},
    "multi-element": {"n": 334, "probe_size": 64, "step": 30, "n_elements": 3, "balance_c": 0.01,
                      "objects": "phantom"},
    "hessian": {"n": 62, "probe_size": 16, "step": 8, "n_elements": 1, "balance_c": 0.01, "objects": "phantom"},
}


def poisson_noise(model, level, rng):
    r"""``(noisy, photons_per_unit)``: counts :math:`\sim \mathrm{Poisson}(p\,I)`, returned as counts / p, with
    :math:`p = \sum I / (\text{level}^2 \sum I^2)` so that :math:`E\|I_{noisy}-I\|^2 = \text{level}^2\|I\|^2`.

    Parameters
    ----------
    model : :obj:`numpy.ndarray`
        Noise-free non-negative intensities :math:`I`.
    level : :obj:`float`
        Relative noise level (0.03 for 3 %); 0 or less: no noise.
    rng : :obj:`numpy.random.Generator`
        Random generator the counts are drawn from.

    Returns
    -------
    noisy : :obj:`numpy.ndarray`
        The noisy intensities (counts / p), same shape as ``model``; a copy of ``model`` when ``level <= 0``.
    photons_per_unit : :obj:`float`
        The photon scale :math:`p` (``inf`` when ``level <= 0``).
    """
    if level <= 0:
        return model.copy(), float("inf")
    p = float(model.sum() / (level**2 * (model**2).sum()))
    return rng.poisson(model * p) / p, p


def _objects(kind, n, ne):
    if kind == "natural":
        x = scale_to_range(natural_image("cameraman", n))
        w = [scale_to_range(natural_image("astronaut", n))]
        w += [scale_to_range(random_ellipses(n, seed=100 + e)) for e in range(1, ne)]
    else:
        x = scale_to_range(shepp_logan(n))
        w = [scale_to_range(random_ellipses(n, seed=100 + e)) for e in range(ne)]
    return x, np.stack(w)


def band_limited_spectra(z, probe, positions, margin=8):
    """Far-field spectra ``(J, Np0, Np1)`` of the probe times the object windows at fractional top-left positions,
    each window cut from a patch ``margin`` pixels larger on every side (the object extended by its edge values)
    shifted by a Fourier phase ramp: band-limited interpolation of the object, a different sub-pixel model from the
    reconstruction's cubic windows, so position refinement is not scored on data made by its own model.

    Parameters
    ----------
    z : :obj:`numpy.ndarray`
        Complex object, 2-D.
    probe : :obj:`numpy.ndarray`
        Complex probe ``(Np0, Np1)``.
    positions : :obj:`numpy.ndarray`
        Fractional top-left corners ``(J, 2)`` (row, column) of the windows, in pixels.
    margin : :obj:`int`, optional
        Extra pixels cut on every side of each window before the Fourier shift (limits wrap-around).

    Returns
    -------
    spectra : :obj:`numpy.ndarray`
        Complex far fields ``(J, Np0, Np1)`` (centred FFT of probe times shifted window).
    """
    from multimodal_ip.backend import fft2c

    w0, w1 = probe.shape
    zp = np.pad(z, margin, mode="edge")
    k0 = np.fft.fftfreq(w0 + 2 * margin)[:, None]
    k1 = np.fft.fftfreq(w1 + 2 * margin)[None, :]
    out = np.empty((len(positions), w0, w1), dtype=np.result_type(z.dtype, probe.dtype, np.complex64))
    for j, pos in enumerate(np.asarray(positions, dtype=float)):
        c = np.floor(pos).astype(int)
        f = pos - c
        patch = zp[c[0] : c[0] + w0 + 2 * margin, c[1] : c[1] + w1 + 2 * margin]
        shifted = np.fft.ifft2(np.fft.fft2(patch) * np.exp(2j * np.pi * (k0 * f[0] + k1 * f[1])))
        out[j] = fft2c(probe * shifted[margin : margin + w0, margin : margin + w1])
    return out


def simulate(case, seed=0, noise=0.0, n=None, probe_size=None, step=None, n_elements=None, xrf_grid="full",
             probe_error=0.0, position_jitter_px=0.0, coupling=None, elements=None):
    """Simulate one case of the paper; every parameter of its table (docs/paper.md) can be overridden.

    Parameters
    ----------
    case : :obj:`str`
        One of :data:`CASES`.
    seed : :obj:`int`
        Seed of the noise (the phantoms do not depend on it).
    noise : :obj:`float`
        Relative Poisson noise level (0.03 for 3 %).
    n : :obj:`int`, optional
        Object size (pixels per side); default: the case's.
    probe_size : :obj:`int`, optional
        Probe size (pixels per side); default: the case's.
    step : :obj:`int`, optional
        Raster step of the scan in pixels; default: the case's.
    n_elements : :obj:`int`, optional
        Number of element maps; default: the case's.
    xrf_grid : :obj:`str`
        ``"full"`` (XRF at every object pixel, the paper's setting) or ``"scan"`` (at the scan positions).
    probe_error : :obj:`float`
        Calibration error of the probe written to the file: its defocus is off by this fraction (0.2: 20 %)
        while the data are made with the true probe (kept in ``/truth/probe``).
    position_jitter_px : :obj:`float`
        The true scan positions are the nominal raster plus uniform jitter in [-j, j] px (kept in
        ``/truth/positions``); the file holds the nominal raster. The jitter is drawn from ``seed`` too.
    coupling : :obj:`str` or sequence, optional
        Im z = sum_e a_e w_e with these coefficients (see :func:`mmip_ptychography.parse_coupling`, e.g.
        ``"xraylib:8.8"``); written as the ptychography term's ``coupling`` attribute. Default: the paper's ones.
    elements : sequence of :obj:`str`, optional
        Element names of the maps (default ``E0, E1, ...``), e.g. ``["Fe", "Zn", "Cu"]`` for xraylib.

    Returns
    -------
    dataset : :obj:`multimodal_ip.io.Dataset`
        Variables ``x`` and ``w``, the ``ptychography`` and ``fluorescence`` terms with noisy data, the truth
        (``x``, ``w``, and ``probe``/``positions`` where they differ from the file's) and the case's attributes.

    Raises
    ------
    :obj:`multimodal_ip.errors.ConfigError`
        Unknown case, probe larger than the object, a noise level, ``probe_error`` or ``position_jitter_px`` out
        of range, a size over the memory budget, or an ``elements`` list whose length is not the number of maps.
    """
    from mmip_fluorescence import FluorescenceModel, full_grid_positions
    from mmip_ptychography import PtychographyModel, fresnel_zone_plate_probe, parse_coupling, raster_positions

    from multimodal_ip.io import Dataset, TermData

    p = _parameters(case, {"n": n, "probe_size": probe_size, "step": step, "n_elements": n_elements}, noise,
                    probe_error, position_jitter_px)
    n, npx, ne = int(p["n"]), int(p["probe_size"]), int(p["n_elements"])
    names = [f"E{e}" for e in range(ne)] if elements is None else [str(e) for e in elements]
    if len(names) != ne:
        msg = f"elements: need {ne} name(s), one per element map; got {names}"
        raise ConfigError(msg)
    coef = parse_coupling(coupling, ne, names)
    rng = np.random.default_rng(seed)
    x, w = _objects(p["objects"], n, ne)
    probe = fresnel_zone_plate_probe(npx)
    positions = raster_positions(n, npx, step_px=p["step"])
    true_pos = positions
    if position_jitter_px > 0:  # data from another sub-pixel model than the reconstruction's (no inverse crime)
        jitter = np.random.default_rng([seed, 1]).uniform(-position_jitter_px, position_jitter_px, positions.shape)
        true_pos = np.clip(positions + jitter, 0, n - npx)
        z = x + 1j * np.tensordot(np.ones(ne) if coef is None else np.asarray(coef, dtype=float), w, axes=1)
        intens = np.abs(band_limited_spectra(z, probe, true_pos)) ** 2
    else:
        model = PtychographyModel(probe, true_pos, (n, n), ne, coefficients=coef)
        intens = np.abs(model.forward(np.concatenate([x.ravel(), w.ravel()]))) ** 2
    kernel = np.abs(probe) ** 2
    xrf_pos = full_grid_positions((n, n), kernel.shape) if xrf_grid == "full" else true_pos
    xrf = FluorescenceModel(probe, xrf_pos, (n, n), ne).forward(w.ravel())
    intens_noisy, p_ptycho = poisson_noise(intens, noise, rng)
    xrf_noisy, p_xrf = poisson_noise(xrf, noise, rng)
    truth = {"x": x, "w": w}
    file_probe, file_kernel = probe, kernel
    if probe_error:
        file_probe = fresnel_zone_plate_probe(npx, defocus_m=(1 + probe_error) * npx * 1e-6)
        file_kernel = np.abs(file_probe) ** 2
        truth["probe"] = probe
    if position_jitter_px > 0:
        truth["positions"] = true_pos
        xrf_pos = xrf_pos if xrf_grid == "full" else positions
    terms = {
        "ptychography": TermData("ptychography", "ptychography",
                                 {"data": intens_noisy, "probe": file_probe, "positions": positions},
                                 {"photons_per_unit": p_ptycho,
                                  **({"coupling": coef, "elements": names} if coef is not None else {})}),
        "fluorescence": TermData("fluorescence", "fluorescence",
                                 {"data": xrf_noisy, "kernel": file_kernel, "positions": xrf_pos},
                                 {"photons_per_unit": p_xrf, "elements": names,
                                  "grid_shape": _grid_shape(xrf_grid, n, len(positions))}),
    }
    variables = [Variable("x", (n, n)), Variable("w", (ne, n, n))]
    attrs = {"case": case, "noise_level": float(noise), "seed": int(seed), "balance_c": float(p["balance_c"]),
             "reference_term": "ptychography", "step_px": int(p["step"])}
    attrs.update(probe_error=float(probe_error), position_jitter_px=float(position_jitter_px))
    return Dataset(variables, terms, truth, attrs)


def _grid_shape(xrf_grid, n, n_positions):
    """The XRF term's ``grid_shape`` attribute: the object's ``(n, n)`` for the full grid, else the scan's."""
    return np.array([n, n]) if xrf_grid == "full" else np.array([int(np.sqrt(n_positions))] * 2)


def _parameters(case, overrides, noise, probe_error, position_jitter_px):
    """The parameters of ``case`` (:data:`CASES`) with the given ``overrides`` (``None``: the table's), checked:
    a known case, a probe no larger than the object, noise, calibration errors in range, and a size that fits the
    memory budget. :class:`~multimodal_ip.errors.ConfigError` otherwise."""
    if case not in CASES:
        msg = f"unknown case {case!r}; choose one of: {', '.join(CASES)}"
        raise ConfigError(msg)
    p = dict(CASES[case])
    p.update({k: v for k, v in overrides.items() if v is not None})
    n, npx, ne = int(p["n"]), int(p["probe_size"]), int(p["n_elements"])
    if npx > n:
        msg = f"probe size {npx} exceeds object size {n}"
        raise ConfigError(msg)
    if not 0 <= float(noise) < 1:
        msg = f"noise level must be in [0, 1); got {noise}"
        raise ConfigError(msg)
    if not (-1 < probe_error <= 10) or not (0 <= position_jitter_px <= npx / 2):
        msg = (f"probe_error must be in (-1, 10] and position_jitter_px in [0, probe size / 2 = {npx / 2:g}]; "
               f"got {probe_error}, {position_jitter_px}")
        raise ConfigError(msg)
    j = ((n - npx) // max(int(p["step"]), 1) + 1) ** 2
    need = 8.0 * (n * n * (6 + 3 * ne) + 4 * j * npx * npx)  # maps, truth, patterns and their FFT temporaries
    from multimodal_ip.safety import memory_budget_bytes

    if need > memory_budget_bytes():
        msg = (f"n={n}, probe {npx}, {j} positions needs about {need / 2**30:.3g} GiB, more than the memory budget "
               f"({memory_budget_bytes() / 2**30:.3g} GiB; MMIP_MAX_MEMORY)")
        raise ConfigError(msg)
    return p
