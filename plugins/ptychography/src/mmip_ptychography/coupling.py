"""Physical coupling of element maps to the object's imaginary part (absorption), optionally via xraylib."""

__all__ = ["absorption_coupling", "parse_coupling", "term_coefficients", "global_phase", "PHASE_STEP", "MODEL_UNKNOWNS",
           "DEFAULT_MATRIX_SMOOTHING_PX"]

from typing import TYPE_CHECKING

import numpy as np

from multimodal_ip.backend import get_array_module
from multimodal_ip.errors import ConfigError

if TYPE_CHECKING:
    from multimodal_ip import Invariance

#: the first trust region (rad) of the phase alignment (``align``; the solvers grow it while moves reach it): small
#: enough not to turn a still-flat object towards another local minimum (measured, docs/validation.md)
PHASE_STEP = 0.1
#: the ptychography term's unknowns of the phase model, in packing order (after ``x`` and ``w``); here, not in
#: ``phase_matrix`` (which re-exports them): the plugin's entry module reads them without importing pylops
MODEL_UNKNOWNS = ("coupling", "matrix")
#: default width (px) of the matrix's Gaussian smoothing (measured on the study's cases, docs/real_samples.md)
DEFAULT_MATRIX_SMOOTHING_PX = 4.0


def global_phase(coefficients=None, ne=1, max_step=PHASE_STEP) -> "Invariance | None":
    r"""The ptychography's invariance: intensities do not change when the object takes a global phase,
    :math:`z \to e^{it} z` with :math:`z = x + i s`, :math:`s = \sum_e a_e w_e`. In the unknowns:
    :math:`x' = x \cos t - s \sin t`, and the change of :math:`s` goes to the maps in proportion to :math:`a_e`
    (the least change of :math:`w` that gives it): :math:`w_e' = w_e + a_e (s' - s) / \sum_e a_e^2`. ``None`` when
    every :math:`a_e` is zero: the maps then do not reach :math:`\Im z`, and no change of the unknowns turns it.

    Parameters
    ----------
    coefficients : array-like, optional
        The coupling coefficients :math:`a_e`, one per element map; default: all ones (``ne`` of them).
    ne : :obj:`int`, optional
        Number of element maps, used when ``coefficients`` is ``None``.
    max_step : :obj:`float`, optional
        First trust region (rad) of the phase alignment, passed to :class:`~multimodal_ip.problem.term.Invariance`.

    Returns
    -------
    invariance : :obj:`multimodal_ip.problem.term.Invariance` or :obj:`None`
        The global-phase group acting on the variables ``x`` and ``w``; ``None`` when every :math:`a_e` is zero.
    """
    a = np.ones(int(ne)) if coefficients is None else np.asarray(coefficients, dtype=float).ravel()
    scale = float(np.abs(a).max())
    if scale == 0:
        return None
    share = (a / scale) / float((a / scale) @ (a / scale)) / scale  # a / sum(a^2), without overflowing a^2

    def apply(arrays, t):
        x, w = arrays["x"], arrays["w"]
        ncp = get_array_module(x)
        s = ncp.tensordot(ncp.asarray(a, dtype=w.dtype), w, axes=1)
        c, sn = float(np.cos(t)), float(np.sin(t))
        ds = sn * x + (c - 1.0) * s
        return {"x": (c * x - sn * s).astype(x.dtype, copy=False),
                "w": (w + ncp.asarray(share, dtype=w.dtype)[:, None, None] * ds[None]).astype(w.dtype, copy=False)}

    from multimodal_ip import Invariance  # the problem package imports pylops: not at the plugin's import

    return Invariance(apply, max_step, "global phase")


def absorption_coupling(elements, energy_kev, normalize=True):
    r"""Per-element coefficients :math:`a_e` of :math:`\Im z = \sum_e a_e w_e` from X-ray attenuation.

    With :math:`w_e` the areal mass density of element :math:`e`, the amplitude attenuation exponent is
    :math:`\sum_e \tfrac12 (\mu/\rho)_e(E)\, w_e`; :math:`(\mu/\rho)_e` is xraylib's total cross section
    ``CS_Total`` (cm^2/g) at the beam energy.

    Parameters
    ----------
    elements : sequence of :obj:`str`
        Element symbols (``"Fe"``) or atomic numbers.
    energy_kev : :obj:`float`
        Beam energy in keV (the paper: 8.8).
    normalize : :obj:`bool`, optional
        Divide by the first element's coefficient (``a_0 = 1``: the first map keeps the paper's units and
        the others are scaled by their attenuation relative to it). ``False``: :math:`\tfrac12(\mu/\rho)_e` in cm^2/g.

    Returns
    -------
    coefficients : :obj:`numpy.ndarray`
        One float coefficient per element, in the order of ``elements``.

    Raises
    ------
    :obj:`multimodal_ip.errors.ConfigError`
        xraylib is not installed, the energy is not in (0, 1000) keV, or an element is unknown.
    """
    try:
        import xraylib
    except ImportError:
        msg = "physical coupling needs xraylib: pip install xraylib (or mmip-ptychography[xraylib])"
        raise ConfigError(msg) from None
    energy = float(energy_kev)
    if not 0 < energy < 1000:
        msg = f"beam energy must be in keV, in (0, 1000); got {energy_kev}"
        raise ConfigError(msg)
    coef = []
    for el in elements:
        try:
            z = int(el) if str(el).isdigit() else xraylib.SymbolToAtomicNumber(str(el).strip())
            coef.append(0.5 * xraylib.CS_Total(z, energy))
        except ValueError as exc:
            msg = f"element {el!r}: {exc} (give symbols such as Fe, Zn, or atomic numbers)"
            raise ConfigError(msg) from None
    coef = np.asarray(coef, dtype=float)
    return coef / coef[0] if normalize else coef


def parse_coupling(spec, n_elements, elements=None):
    """Coefficients from a coupling spec.

    Parameters
    ----------
    spec : :obj:`str`, sequence of :obj:`float` or ``None``
        ``None``/``"ones"`` (the paper), a sequence or ``"a0,a1,..."`` of numbers, or
        ``"xraylib:<keV>[:El0,El1,...]"`` (absorption coefficients from xraylib).
    n_elements : :obj:`int`
        The number of element maps, one coefficient each.
    elements : :obj:`list` of :obj:`str`, optional
        Element names for ``xraylib:<keV>`` when the spec names none.

    Returns
    -------
    :obj:`numpy.ndarray` or ``None``
        ``(n_elements,)`` finite coefficients; ``None`` for all ones. A bad spec is a
        :class:`~multimodal_ip.errors.ConfigError`.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "ones"):
        return None
    if isinstance(spec, str) and spec.strip().lower().startswith("xraylib:"):
        parts = spec.strip().split(":")
        names = [e.strip() for e in parts[2].split(",")] if len(parts) > 2 and parts[2] else list(elements or [])
        if len(names) != n_elements:
            msg = (f"coupling {spec!r}: need {n_elements} element name(s) for w (give xraylib:<keV>:El0,El1,...); "
                   f"got {names}")
            raise ConfigError(msg)
        try:
            energy = float(parts[1])
        except ValueError:
            msg = f"coupling {spec!r}: the energy after 'xraylib:' must be a number in keV"
            raise ConfigError(msg) from None
        return absorption_coupling(names, energy)
    values = spec.split(",") if isinstance(spec, str) else spec
    try:
        coef = np.asarray([float(v) for v in np.atleast_1d(values)], dtype=float)
    except (TypeError, ValueError):
        msg = f"coupling must be 'ones', numbers 'a0,a1,...' or 'xraylib:<keV>'; got {spec!r}"
        raise ConfigError(msg) from None
    if coef.shape != (n_elements,) or not np.all(np.isfinite(coef)):
        msg = f"coupling needs {n_elements} finite coefficient(s) (one per element map); got {list(coef)}"
        raise ConfigError(msg)
    return coef


def term_coefficients(attrs, n_elements, spec=None) -> np.ndarray:
    """The coupling coefficients :math:`a_e` of a ptychography term's object :math:`z = x + i \\sum_e a_e w_e`.

    Parameters
    ----------
    attrs : :obj:`dict`
        The term's attributes (``coupling``, ``elements``).
    n_elements : :obj:`int`
        The number of element maps.
    spec : optional
        A run's coupling (``--coupling``; :func:`parse_coupling`), used instead of the term's ``coupling``.

    Returns
    -------
    :obj:`numpy.ndarray`
        ``(n_elements,)`` floats; ones where neither the run nor the term gives a coupling.
    """
    elements = attrs.get("elements")
    coef = parse_coupling(spec if spec is not None else attrs.get("coupling"), n_elements,
                          None if elements is None else [str(e) for e in np.atleast_1d(elements)])
    return np.ones(n_elements) if coef is None else np.asarray(coef, dtype=float)
