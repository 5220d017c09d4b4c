"""Attenuation per unit concentration from element names (xraylib), for the modality and the simulations alike."""

__all__ = ["attenuation_coefficients"]

import numpy as np

from multimodal_ip.errors import ConfigError


def attenuation_coefficients(elements, energy_kev, scale=1.0):
    r""":math:`\mu_e` = xraylib's total mass attenuation ``CS_Total`` (cm^2/g) of each element at ``energy_kev``,
    times ``scale`` (g/cm^3 of unit concentration x pixel size in cm: the attenuation per pixel of path).

    Parameters
    ----------
    elements : sequence of :obj:`str`
        Element symbols (``"Fe"``) or atomic numbers.
    energy_kev : :obj:`float`
        Incident energy in keV.
    scale : :obj:`float`, optional
        Factor applied to every coefficient.

    Returns
    -------
    mu : :obj:`numpy.ndarray`
        One float coefficient per element, in the order of ``elements``.

    Raises
    ------
    :obj:`multimodal_ip.errors.ConfigError`
        xraylib is not installed, or xraylib rejects an element or the energy.
    """
    try:
        import xraylib
    except ImportError:
        msg = ("attenuation from element names needs the extra 'xraylib' of mmip-tomography: pip install "
               "'mmip-tomography[xraylib]' (or give the coefficients: the dataset 'mu', simulate(mu=...))")
        raise ConfigError(msg) from None
    out = []
    for el in elements:
        try:
            z = int(el) if str(el).isdigit() else xraylib.SymbolToAtomicNumber(str(el).strip())
            out.append(xraylib.CS_Total(z, float(energy_kev)) * float(scale))
        except ValueError as exc:
            msg = f"element {el!r} at {energy_kev} keV: {exc} (give symbols such as Fe, Zn, or atomic numbers)"
            raise ConfigError(msg) from None
    return np.asarray(out, dtype=float)


def line_coefficients(elements, lines, scale=1.0):
    r""":math:`b_{ek}` = ``CS_Total`` of element ``k`` at the energy of element ``e``'s line ``lines[e]`` (an xraylib
    line name such as ``KA`` or ``LA``, xraylib's ``LineEnergy``), times ``scale``: shape ``(Ne, Ne)``."""
    try:
        import xraylib
    except ImportError:
        msg = ("the emitted lines' attenuation from element names needs xraylib: "
               "pip install 'mmip-tomography[xraylib]' (or give the dataset 'mu_line')")
        raise ConfigError(msg) from None
    names = [str(e).strip() for e in elements]
    lines = [str(x).strip().upper() for x in np.atleast_1d(lines)]
    if len(lines) == 1:
        lines = lines * len(names)
    if len(lines) != len(names):
        msg = f"lines: need one xraylib line name per element {names} (or one for all); got {lines}"
        raise ConfigError(msg)
    out = np.zeros((len(names), len(names)))
    for e, (el, line) in enumerate(zip(names, lines)):
        try:
            z = int(el) if el.isdigit() else xraylib.SymbolToAtomicNumber(el)
            energy = xraylib.LineEnergy(z, getattr(xraylib, f"{line}_LINE"))
            out[e] = [attenuation_coefficients([k], energy, scale)[0] for k in names]
        except (ValueError, AttributeError) as exc:
            msg = f"line {line!r} of element {el!r}: {exc} (give xraylib line names such as KA, KB, LA)"
            raise ConfigError(msg) from None
    return out
