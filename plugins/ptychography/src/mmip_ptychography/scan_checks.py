"""The ptychography term's input checks: the scan read from a term (checked), its loss, and the overlap of
neighbouring probe windows (refining positions on a scan that hardly overlaps warns)."""

import warnings

import numpy as np

from multimodal_ip.errors import ConfigError, DataError
from multimodal_ip.losses import Amplitude, Poisson

__all__ = ["LOW_OVERLAP", "scan_overlap"]


def _read_scan(td):
    """``(data, probe, positions)`` of the term, checked: non-negative intensities (or a detector's integer counts),
    a probe of the patterns' shape that is not zero everywhere, one position per pattern."""
    data = td.array("data", ndim=3, dtype_kind="fiu")  # intensities, or a detector's integer counts
    low = td.minimum("data")  # block by block: no data-sized boolean array
    if low < 0:
        msg = f"{td.where('data')}: intensities must be non-negative (min {low:.3g})"
        raise DataError(msg)
    npx = data.shape[1:]
    probe = td.array("probe", shape=npx, dtype_kind="cf")
    if not np.any(probe):
        msg = f"{td.where('probe')}: the probe is zero everywhere (no beam, no data to explain)"
        raise DataError(msg)
    return data, probe, td.array("positions", shape=(data.shape[0], 2), dtype_kind="fiu")


def _loss(td, loss, photon_weighted, j):
    """The term's loss: ``"amplitude"`` (averaged over all ``j`` positions, also on one MPI rank, or in photon
    counts when ``photon_weighted``) or ``"poisson"`` (both photon scales from ``photons_per_unit``)."""
    photons = td.attr("photons_per_unit") if photon_weighted else td.attr("photons_per_unit", 1.0)
    if (photon_weighted or loss == "poisson") and not (np.isfinite(photons) and photons > 0):
        msg = (f"{td.where()}: attribute photons_per_unit = {photons!r} must be finite and > 0 for a photon-count "
               "likelihood (a noise-free simulation has no photon scale)")
        raise DataError(msg)
    if loss == "amplitude":
        return Amplitude(scale=4.0 * photons if photon_weighted else 1.0 / j)
    if loss == "poisson":
        return Poisson(photons_per_unit=photons)
    msg = f"ptychography loss must be 'amplitude' or 'poisson'; got {loss!r}"
    raise ConfigError(msg)


#: below this overlap of the probe's 90 % disc between neighbouring positions, refining positions warns
LOW_OVERLAP = 0.5


def scan_overlap(probe, positions):
    """The linear overlap ``1 - step / (2 radius)`` of the disc holding 90 % of the probe's intensity between
    neighbouring positions.

    Parameters
    ----------
    probe : :obj:`numpy.ndarray`
        The probe (complex, ``(Np, Np)``).
    positions : :obj:`numpy.ndarray`
        Scan positions, ``(J, 2)`` px.

    Returns
    -------
    overlap : :obj:`float`
        ``1 - step / (2 radius)``; ``nan`` for a single position.
    radius : :obj:`float`
        Radius of the 90 % disc about the probe's intensity centroid, px.
    step : :obj:`float`
        Median distance from a position to its nearest other position, px.
    """
    from scipy.spatial import cKDTree

    intensity = np.abs(np.asarray(probe)) ** 2
    grid = np.indices(intensity.shape).reshape(2, -1).T.astype(float)
    weights = intensity.ravel() / intensity.sum()
    distance = np.linalg.norm(grid - weights @ grid, axis=1)
    order = np.argsort(distance)
    radius = float(distance[order][np.searchsorted(np.cumsum(weights[order]), 0.9)])
    pos = np.asarray(positions, dtype=float)
    if len(pos) < 2:
        return float("nan"), radius, float("nan")
    step = float(np.median(cKDTree(pos).query(pos, k=2)[0][:, 1]))
    return 1.0 - step / (2.0 * max(radius, 0.5)), radius, step


def _warn_low_overlap(td, probe, positions) -> None:
    """One warning line when positions are refined on a scan whose windows hardly overlap (measured: the object then
    takes up the position errors; docs/refinement.md, "Overlap and iteration count")."""
    overlap, radius, step = scan_overlap(probe, positions)
    if overlap < LOW_OVERLAP:
        warnings.warn(f"{td.where('positions')}: refining positions on a scan whose neighbours share {overlap:.2f} of "
                      f"the probe's 90 % disc (radius {radius:.1f} px, step {step:.1f} px); below {LOW_OVERLAP} the "
                      "object takes up most position errors (docs/refinement.md)", stacklevel=4)
