"""Simulated XRF + transmission tomography slices for ``mmip simulate tomo-phantom`` and ``tomo-absorbing``."""

__all__ = ["CASES", "TomoCase", "simulate", "element_maps"]

import numpy as np
from mmip_paper.cases import poisson_noise
from mmip_paper.phantoms import SHEPP_LOGAN, ellipse_phantom, random_ellipses

from multimodal_ip.errors import ConfigError
from multimodal_ip.variables import Variable

from .attenuation import attenuation_coefficients, line_coefficients

#: case -> defaults. ``absorption``: the largest attenuation exponent of the transmission sinogram (max over rays of
#: the line integral of mu); ``inclusion``: concentration added to element 0 in a small dense grain
CASES = {
    "tomo-phantom": {"n": 64, "n_angles": 60, "elements": ("Fe", "Zn"), "energy_kev": 12.0, "absorption": 0.3,
                     "inclusion": 0.0, "balance_c": 0.1},
    "tomo-absorbing": {"n": 64, "n_angles": 60, "elements": ("Fe", "Zn"), "energy_kev": 12.0, "absorption": 3.0,
                       "inclusion": 4.0, "balance_c": 0.1},
}


def element_maps(n, ne, inclusion=0.0):
    """``(ne, n, n)`` concentrations in [0, 1] inside the inscribed disk (zero outside): element 0 a Shepp-Logan slice,
    the others random ellipses; ``inclusion`` adds a dense grain (disk of radius 0.12) to element 0.

    Parameters
    ----------
    n : :obj:`int`
        Number of pixels along each axis.
    ne : :obj:`int`
        Number of elements (maps).
    inclusion : :obj:`float`, optional
        Concentration added to element 0 inside the grain (0: no grain).

    Returns
    -------
    maps : :obj:`numpy.ndarray`
        ``(ne, n, n)`` float concentrations, in [0, 1] plus ``inclusion`` inside the grain.
    """
    y, x = np.mgrid[1 : -1 : n * 1j, -1 : 1 : n * 1j]
    disk = x**2 + y**2 <= 0.85**2
    maps = [np.clip(ellipse_phantom(n, SHEPP_LOGAN), 0, None)]
    maps += [np.clip(random_ellipses(n, seed=200 + e, count=8), 0, None) for e in range(1, ne)]
    out = np.stack([np.where(disk, m / max(m.max(), 1e-12), 0.0) for m in maps])
    if inclusion:
        out[0] += inclusion * ((x - 0.3) ** 2 + (y + 0.35) ** 2 <= 0.12**2)
    return out


def simulate(case, seed=0, noise=0.0, n=None, n_angles=None, elements=None, energy_kev=None, absorption=None,
             inclusion=None, mu=None, mu_line=None, line_attenuation="on", oversample=2, maps=None,
             terms=("xrf", "transmission")):
    """One slice of ``case`` (:data:`CASES`; every default can be overridden), Poisson noise at relative ``noise``.

    The attenuation per unit concentration is xraylib's ``CS_Total`` of each element at ``energy_kev`` scaled by one
    factor so that the thickest ray's attenuation exponent is ``absorption`` (``mu``: the coefficients themselves, no
    xraylib needed). Angles cover a full turn (self-absorption makes opposite views differ). The emitted K-alpha
    lines are attenuated on their way to a detector at 90 degrees (``line_attenuation="on"``): ``CS_Total`` of each
    element at each line's energy, the same scale (``mu_line``: the coefficients themselves; with ``mu`` given and no
    ``mu_line``, the lines are not attenuated).

    No inverse crime: with ``oversample`` = o >= 2 the data come from a finer model than the reconstruction's: the
    maps drawn on an o-times finer grid (the truth is their o x o block mean), rays every 1/(2o) pixel, and each
    detector bin the mean of o sub-bins across its width. ``oversample=1``: the reconstruction's own model.
    ``maps``: ``(Ne, n o, n o)`` concentrations on that finer grid instead of the case's phantom (``n``, the element
    count and the file's shapes follow from it).

    Parameters
    ----------
    case : :obj:`str`
        One of :data:`CASES`.
    seed : :obj:`int`, optional
        Seed of the noise.
    noise : :obj:`float`, optional
        Relative Poisson noise level (0.03 for 3 %; 0: none).
    n : :obj:`int`, optional
        Slice size (pixels); default: the case's.
    n_angles : :obj:`int`, optional
        Number of angles over a full turn; default: the case's.
    elements : sequence of :obj:`str`, optional
        Element names (xraylib symbols); default: the case's.
    energy_kev : :obj:`float`, optional
        Incident energy in keV; default: the case's.
    absorption : :obj:`float`, optional
        Attenuation exponent of the thickest ray; default: the case's (ignored with ``mu``).
    inclusion : :obj:`float`, optional
        Concentration of a dense grain added to element 0 (0: none); default: the case's.
    mu : array-like, optional
        Attenuation per unit concentration and pixel of path, one per element (no xraylib needed).
    mu_line : array-like, optional
        ``(Ne, Ne)`` attenuation of each element's emitted line by each element.
    line_attenuation : :obj:`str`, optional
        ``"on"`` or ``"off"``: attenuate the emitted lines on their way to the detector.
    oversample : :obj:`int`, optional
        Factor o >= 1 of the finer model the data come from.
    maps : :obj:`numpy.ndarray`, optional
        ``(Ne, n o, n o)`` concentrations on the finer grid, instead of the case's phantom.
    terms : sequence of :obj:`str`, optional
        The terms to simulate, ``"xrf"`` and/or ``"transmission"`` (both by default; the noise of the transmission
        is drawn after the fluorescence's, so a transmission-only file has other noise than the pair).

    Returns
    -------
    dataset : :obj:`multimodal_ip.io.Dataset`
        The variable ``w`` (Ne, n, n), the ``xrf`` and ``transmission`` terms with noisy sinograms, the truth ``w``
        and the case's attributes.

    Raises
    ------
    :obj:`multimodal_ip.errors.ConfigError`
        Unknown case, ``oversample`` < 1, ``line_attenuation`` not ``"on"``/``"off"``, no or an unknown term, a
        slice over the memory budget, ``maps`` or ``mu`` of the wrong shape, or xraylib missing or rejecting an element.
    """
    from multimodal_ip.io import Dataset, TermData

    from .geometry import Geometry

    p, names, o = _parameters(case, oversample, line_attenuation, terms, n=n, n_angles=n_angles, elements=elements,
                              energy_kev=energy_kev, absorption=absorption, inclusion=inclusion)
    ne, size = len(names), int(p["n"]) if maps is None else int(np.shape(maps)[-1]) // o
    _check_memory(p, size, o, line_attenuation)
    fine = _fine_maps(maps, ne, names, size, o, float(p["inclusion"]))
    w = fine.reshape(ne, size, o, size, o).mean(axis=(2, 4))
    geom = Geometry.make((size, size), np.linspace(0, 2 * np.pi, int(p["n_angles"]), endpoint=False))
    ratios, scale = _coefficients(mu, names, p, geom, w)
    lines = None
    if line_attenuation == "on" and (mu is None or mu_line is not None):
        lines = np.asarray(mu_line, dtype=float) if mu_line is not None else \
            line_coefficients(names, "KA") * scale
    clean = _finer_model(geom, o, fine, ratios, lines, terms)
    rng = np.random.default_rng(seed)
    noisy = {t: poisson_noise(clean[t], noise, rng) for t in ("xrf", "transmission") if t in terms}
    common = {"object_shape": np.array([size, size]), "elements": names, "energy_kev": float(p["energy_kev"])}
    angles = np.asarray(geom.angles)
    xrf_arrays = {"angles": angles, "mu": ratios}
    if lines is not None:
        xrf_arrays["mu_line"] = lines
    data = {}
    if "xrf" in noisy:
        xrf_arrays["data"], p_xrf = noisy["xrf"]
        data["xrf"] = TermData("xrf", "xrf-tomography", xrf_arrays,
                               dict(common, photons_per_unit=p_xrf, detector_angles=np.array([np.pi / 2])))
    if "transmission" in noisy:
        trans, p_trans = noisy["transmission"]
        data["transmission"] = TermData("transmission", "transmission-tomography",
                                        {"data": trans, "angles": angles, "mu": ratios},
                                        dict(common, photons_per_unit=p_trans))
    attrs = {"case": case, "noise_level": float(noise), "seed": int(seed), "balance_c": float(p["balance_c"]),
             "absorption": float(p["absorption"]), "inclusion": float(p["inclusion"]), "oversample": o,
             "line_attenuation": line_attenuation} | ({"reference_term": "xrf"} if "xrf" in data else {})
    return Dataset([Variable("w", w.shape)], data, {"w": w}, attrs)


def _finer_model(geom, o, fine, mu, mu_line, terms):
    """Noise-free ``{"xrf": ..., "transmission": ...}`` sinograms (those of ``terms``) on ``geom`` from the maps
    ``fine`` (``o`` x finer): rays every 1/(2o) pixel, o sub-bins per bin (intensities averaged over the bin's width).
    Per fine pixel of path the coefficients are 1/o of the coarse ones, and the fluorescence (an integral over the
    path) is divided by o."""
    from .geometry import Geometry
    from .models import TransmissionModel, XRFTomographyModel

    out = {}
    if o == 1:
        if "xrf" in terms:
            out["xrf"] = XRFTomographyModel(geom, mu, mu_line=mu_line).forward(fine)
        if "transmission" in terms:
            out["transmission"] = TransmissionModel(geom, mu).forward(fine)
        return out
    k, bins = geom.sinogram_shape
    sub = Geometry.make(fine.shape[1:], geom.angles, bins=bins * o, step=0.5)
    if "xrf" in terms:
        xrf = XRFTomographyModel(sub, mu / o, mu_line=None if mu_line is None else mu_line / o).forward(fine)
        out["xrf"] = xrf.reshape(len(mu), k, bins, o).mean(-1) / o
    if "transmission" in terms:
        out["transmission"] = TransmissionModel(sub, mu / o).forward(fine).reshape(k, bins, o).mean(-1)
    return out


class TomoCase:
    """One tomography case for ``mmip simulate``; ``parameters`` become the command's flags.

    Parameters
    ----------
    case : :obj:`str`
        One of :data:`CASES`; calling the object runs :func:`simulate` for it.
    """

    parameters = {
        "n": {"type": int, "help": "slice size (pixels)"},
        "n_angles": {"type": int, "flag": "angles", "help": "number of angles over a full turn"},
        "elements": {"type": list, "help": "element names (xraylib symbols), e.g. Fe,Zn"},
        "energy_kev": {"type": float, "flag": "energy", "help": "incident energy (keV)"},
        "absorption": {"type": float, "help": "attenuation exponent of the thickest ray (self-absorption strength)"},
        "inclusion": {"type": float, "help": "concentration of a dense grain added to element 0 (0: none)"},
        "line_attenuation": {"type": str, "choices": ("on", "off"),
                             "help": "attenuate the emitted K-alpha lines on the way to a detector at 90 degrees"},
        "oversample": {"type": int, "help": "data from a model this many times finer (maps; rays 2x that): default "
                                            "2; 1 = the reconstruction's own model (inverse crime)"},
    }

    def __init__(self, case):
        self.case = case

    @property
    def help(self) -> str:
        """One line for ``mmip simulate --help``."""
        p: dict = CASES[self.case]
        return (f"slice {p['n']} x {p['n']} px, {p['n_angles']} angles, {','.join(p['elements'])} at "
                f"{p['energy_kev']:g} keV, absorption {p['absorption']:g}, inclusion {p['inclusion']:g}")

    def __call__(self, seed=0, noise=0.0, **overrides):
        return simulate(self.case, seed=seed, noise=noise, **overrides)


def _parameters(case, oversample, line_attenuation, terms, **overrides):
    """``(parameters, element names, oversampling)`` of ``case`` with the given overrides, checked."""
    if case not in CASES:
        msg = f"unknown tomography case {case!r}; choose one of {', '.join(CASES)}"
        raise ConfigError(msg)
    p = dict(CASES[case])
    p.update({k: v for k, v in overrides.items() if v is not None})
    o = int(oversample)
    if o < 1 or line_attenuation not in ("on", "off"):
        msg = f"oversample must be >= 1 and line_attenuation 'on' or 'off'; got {oversample!r}, {line_attenuation!r}"
        raise ConfigError(msg)
    if isinstance(terms, str) or not terms or not set(terms) <= {"xrf", "transmission"}:
        msg = f"terms: need one or both of 'xrf', 'transmission'; got {terms!r}"
        raise ConfigError(msg)
    return p, [str(e) for e in p["elements"]], o


def _check_memory(p, size, o, line_attenuation) -> None:
    """Refuse, before any allocation, a slice whose simulation exceeds the memory budget."""
    from multimodal_ip.safety import memory_budget_bytes

    # measured peak: about 290 bytes per ray sample (angles x bins x samples; the two models' sampling matrices); the
    # finer model has (2 o^2) times the samples, and the paths to the detector a grid of about 3x that
    need = 300.0 * int(p["n_angles"]) * size * (np.ceil(np.hypot(size, size)) + 1) * (1 if o == 1 else 2 * o * o) * \
        (4 if line_attenuation == "on" else 1)
    if need > memory_budget_bytes():
        msg = (f"n={size} with {int(p['n_angles'])} angles needs about {need / 2**30:.3g} GiB, more than the memory "
               f"budget ({memory_budget_bytes() / 2**30:.3g} GiB; MMIP_MAX_MEMORY)")
        raise ConfigError(msg)


def _fine_maps(maps, ne, names, size, o, inclusion):
    """The concentrations on the o-times finer grid: ``maps`` checked, else the case's phantom."""
    if maps is None:
        return element_maps(size * o, ne, inclusion)
    fine = np.asarray(maps, dtype=float)
    if fine.ndim != 3 or fine.shape[0] != ne or fine.shape[1] != fine.shape[2] or fine.shape[1] % o:
        msg = f"maps: need ({ne}, n*{o}, n*{o}) for elements {names}; got shape {fine.shape}"
        raise ConfigError(msg)
    return fine


def _coefficients(mu, names, p, geom, w):
    """``(attenuation per unit concentration, scale)``: ``mu`` as given, else xraylib's scaled so that the thickest
    ray attenuates by exp(-absorption)."""
    from .geometry import ray_sampling

    ratios = np.asarray(mu, dtype=float) if mu is not None else attenuation_coefficients(names, p["energy_kev"])
    if ratios.shape != (len(names),):
        msg = f"mu: need {len(names)} coefficient(s), one per element {names}; got {list(ratios)}"
        raise ConfigError(msg)
    if mu is not None:
        return ratios, 1.0
    thickest = float(ray_sampling(geom, summed=True).forward(np.tensordot(ratios, w, 1)).max())
    scale = float(p["absorption"]) / thickest
    return ratios * scale, scale
