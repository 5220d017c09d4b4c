"""What ptychodus's readers return (a diffraction dataset, a probe-position sequence, a probe sequence), as the
ptychography term of :func:`mmip_ptychography.cxi.import_cxi`: patterns ordered like the positions, the probe's
first mode, window corners in object pixels, and the object frame."""

__all__ = ["ptychodus_term"]

import warnings

import numpy as np
from mmip_ptychography.cxi import EV_J, scan_term

from multimodal_ip.errors import DataError


def _geometry(meta, source) -> tuple:
    """``(energy_j, distance_m, detector pixel m)`` of ptychodus's ``DiffractionMetadata``."""
    energy, distance, pixel = meta.photon_energy_eV, meta.detector_distance_m, meta.detector_pixel_geometry
    missing = [k for k, v in (("photon_energy_eV", energy), ("detector_distance_m", distance),
                              ("detector_pixel_geometry", pixel)) if v is None]
    if missing:
        msg = (f"{source}: ptychodus's reader gives no {', '.join(missing)}; the object pixel size cannot be "
               "computed (convert the file with ptychodus, or use a reader that records the geometry)")
        raise DataError(msg)
    if not np.isclose(pixel.width_m, pixel.height_m, rtol=1e-9, atol=0):
        msg = f"{source}: non-square detector pixels ({pixel.width_m:g} x {pixel.height_m:g} m) are not supported"
        raise DataError(msg)
    return float(energy) * EV_J, float(distance), float(pixel.width_m)


def _patterns(diffraction, source) -> tuple:
    """``(indexes, patterns)`` of every array of the dataset: real, non-negative, square."""
    arrays = list(diffraction)
    if not arrays:
        msg = f"{source}: ptychodus's reader found no diffraction patterns"
        raise DataError(msg)
    indexes = np.concatenate([np.asarray(a.get_indexes(), dtype=np.int64).ravel() for a in arrays])
    patterns = np.concatenate([np.asarray(a.get_patterns()) for a in arrays])
    if patterns.ndim != 3 or patterns.shape[1] != patterns.shape[2] or len(indexes) != len(patterns):
        msg = (f"{source}: expected square patterns (J, Np, Np) with one index each, got patterns {patterns.shape} "
               f"and {len(indexes)} indexes")
        raise DataError(msg)
    if patterns.dtype.kind not in "fiu" or not np.all(np.isfinite(patterns)) or np.any(patterns < 0):
        msg = f"{source}: intensities must be real, finite and non-negative (got {patterns.dtype})"
        raise DataError(msg)
    bad = int(np.count_nonzero(diffraction.get_bad_pixels()))
    if bad:
        warnings.warn(f"{source}: {bad} bad detector pixel(s) marked; the model has no mask, they are fitted like "
                      "the others", stacklevel=3)
    return indexes, patterns


def _matched(indexes, patterns, positions, source, positions_source) -> tuple:
    """The patterns of the positions (matched by index) and the translations ``(x, y, 0)`` in metres."""
    where = {int(i): k for k, i in enumerate(indexes)}
    wanted = np.asarray(positions.get_indexes(), dtype=np.int64).ravel()
    missing = [int(i) for i in wanted if int(i) not in where]
    if len(wanted) == 0 or missing:
        msg = (f"{positions_source}: {len(missing)} of {len(wanted)} probe positions have no pattern in {source} "
               f"(first missing index: {missing[:1] or 'no positions'})")
        raise DataError(msg)
    x = np.asarray(positions.get_coordinates_x_m(), dtype=float)
    y = np.asarray(positions.get_coordinates_y_m(), dtype=float)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        msg = f"{positions_source}: probe positions must be finite"
        raise DataError(msg)
    trans = np.stack([x, y, np.zeros_like(x)], axis=1)
    return patterns[[where[int(i)] for i in wanted]], trans


def _probe(probes, shape, probe_source) -> np.ndarray:
    """The first mode of the first probe of ptychodus's ``ProbeSequence``, of the patterns' shape."""
    array = np.asarray(probes.get_array())
    if array.ndim < 2 or array.shape[-2:] != shape:
        msg = f"{probe_source}: probe of shape {array.shape}, the patterns are {shape}"
        raise DataError(msg)
    modes = array.reshape(-1, *shape)
    if len(modes) > 1:
        warnings.warn(f"{probe_source}: a probe of {len(modes)} modes; importing the first", stacklevel=3)
    if not np.all(np.isfinite(modes[0])) or not np.any(modes[0]):
        msg = f"{probe_source}: the probe is zero or not finite"
        raise DataError(msg)
    return modes[0].astype(complex)


def ptychodus_term(diffraction, positions, probes, source="ptychodus", positions_source=None, probe_source=None,
                   margin_px=0, max_object_px=2**15) -> tuple:
    """The ptychography term and object frame of what ptychodus's readers return.

    A probe position is the probe window's centre in metres (ptychodus's convention, the CXI one): the window's
    top-left object pixel is that minus ``(Np - 1)/2`` pixels; the object pixel is :math:`\\lambda z / (N_p
    \\Delta_{det})`; the origin is the first window's corner less ``margin_px``, as :func:`import_cxi` places it.

    Parameters
    ----------
    diffraction : ptychodus ``DiffractionDataset``
        Arrays with ``get_indexes()`` and ``get_patterns()``, ``get_metadata()`` (``photon_energy_eV``,
        ``detector_distance_m``, ``detector_pixel_geometry``) and ``get_bad_pixels()``.
    positions : ptychodus ``ProbePositionSequence``
        ``get_indexes()`` (the pattern of each position), ``get_coordinates_x_m()``, ``get_coordinates_y_m()``.
    probes : ptychodus ``ProbeSequence``
        ``get_array()``, ``(..., Np, Np)`` complex; the first mode is imported.
    source, positions_source, probe_source : :obj:`str`, optional
        The files, named in messages (the positions' and probe's default to ``source``).
    margin_px : :obj:`int`, optional
        Object pixels added around the scan.
    max_object_px : :obj:`int`, optional
        Refuse a scan spanning more object pixels (a unit error).

    Returns
    -------
    term : :obj:`multimodal_ip.io.TermData`
        The ``ptychography`` term: ``data`` (J, Np, Np), ``probe``, top-left ``positions`` (J, 2) in object pixels.
    frame : :obj:`mmip_ptychography.cxi.Frame`
        Where the object pixels sit in metres.
    """
    positions_source = positions_source or source
    probe_source = probe_source or positions_source
    energy_j, distance, pix = _geometry(diffraction.get_metadata(), source)
    indexes, patterns = _patterns(diffraction, source)
    data, trans = _matched(indexes, patterns, positions, source, positions_source)
    probe = _probe(probes, data.shape[1:], probe_source)
    return scan_term(source, positions_source, data, probe, trans, "centre", (energy_j, distance, pix), margin_px,
                     max_object_px)
