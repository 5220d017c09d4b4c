"""CXI ptychography files (``/entry_1/...``): import into our schema, and export (for round trips)."""

__all__ = ["import_cxi", "export_cxi", "Frame", "HC_J_M"]

from dataclasses import dataclass

import h5py
import numpy as np

from multimodal_ip.errors import DataError
from multimodal_ip.io import TermData
from multimodal_ip.io.dataset import open_h5, read_path, resolve

HC_J_M = 1.98644586e-25  # h * c in J m

DATA = "entry_1/data_1/data"
ENERGY = "entry_1/instrument_1/source_1/energy"
DISTANCE = "entry_1/instrument_1/detector_1/distance"
PIX_X = "entry_1/instrument_1/detector_1/x_pixel_size"
PIX_Y = "entry_1/instrument_1/detector_1/y_pixel_size"
TRANSLATION = "entry_1/sample_1/geometry_1/translation"
PROBE = "entry_1/instrument_1/source_1/probe"


@dataclass
class Frame:
    """Object-pixel coordinates: object pixel (r, c) sits at ``origin_m + (r, c) * pixel_size_m`` (y, x)."""

    pixel_size_m: float
    origin_m: tuple
    object_shape: tuple

    def to_pixels(self, yx_m):
        return (np.asarray(yx_m, dtype=float) - np.asarray(self.origin_m)) / self.pixel_size_m


def _get(f, path, key, ndim=None, positive=False, allow_external=False):
    if resolve(path, f, key, allow_external) is None:
        msg = f"{path}:/{key}: missing (a CXI ptychography file needs it)"
        raise DataError(msg)
    a = np.asarray(read_path(path, f, key, allow_external=allow_external))
    if ndim is not None and a.ndim != ndim:
        msg = f"{path}:/{key}: expected {ndim}-D, got shape {a.shape}"
        raise DataError(msg)
    if a.dtype.kind not in "fciu" or not np.all(np.isfinite(a)):
        msg = f"{path}:/{key}: expected finite numbers, got dtype {a.dtype}"
        raise DataError(msg)
    if positive and np.any(a <= 0):
        msg = f"{path}:/{key}: must be positive"
        raise DataError(msg)
    return a


def _scalar(f, path, key, allow_external):
    a = _get(f, path, key, positive=True, allow_external=allow_external)
    if a.size != 1 or a.dtype.kind == "c":
        msg = f"{path}:/{key}: expected one real number, got shape {a.shape} {a.dtype}"
        raise DataError(msg)
    return float(a.ravel()[0])


def import_cxi(path, probe=None, margin_px=0, allow_external=False, max_object_px=2**15):
    """Read a CXI file; returns ``(TermData, Frame)``.

    Object pixel size is :math:`\\lambda z / (N_p \\Delta_{det})` (far field); translations (J, 3) in metres
    become top-left positions in object pixels, the object spanning all windows plus ``margin_px``.
    The probe comes from ``/entry_1/instrument_1/source_1/probe`` or the ``probe`` argument.
    """
    with open_h5(path) as f:
        data = _get(f, path, DATA, ndim=3, allow_external=allow_external)
        if data.dtype.kind == "c" or np.any(data < 0):
            msg = f"{path}:/{DATA}: intensities must be real and non-negative"
            raise DataError(msg)
        energy_j = _scalar(f, path, ENERGY, allow_external)
        distance = _scalar(f, path, DISTANCE, allow_external)
        pix = _scalar(f, path, PIX_X, allow_external)
        if abs(_scalar(f, path, PIX_Y, allow_external) - pix) > 1e-9 * pix:
            msg = f"{path}: non-square detector pixels are not supported"
            raise DataError(msg)
        trans = _get(f, path, TRANSLATION, ndim=2, allow_external=allow_external)
        if probe is None and resolve(path, f, PROBE, allow_external) is not None:
            probe = _get(f, path, PROBE, ndim=2, allow_external=allow_external)
    if probe is None:
        msg = f"{path}: no probe in the file ({PROBE}); pass one"
        raise DataError(msg)
    j, npx = data.shape[0], data.shape[1]
    if trans.shape != (j, 3):
        msg = f"{path}:/{TRANSLATION}: expected shape ({j}, 3) (one per pattern), got {trans.shape}"
        raise DataError(msg)
    if probe.shape != data.shape[1:]:
        msg = f"{path}: probe shape {probe.shape} differs from the pattern shape {data.shape[1:]}"
        raise DataError(msg)
    with np.errstate(all="ignore"):
        wavelength = HC_J_M / energy_j
        pixel_m = wavelength * distance / (npx * pix)
    if not (np.isfinite(pixel_m) and pixel_m > 0):
        msg = (f"{path}: energy {energy_j:g} J, distance {distance:g} m and detector pixel {pix:g} m give no finite "
               "object pixel size")
        raise DataError(msg)
    yx = trans[:, [1, 0]]  # CXI translation is (x, y, z)
    origin = yx.min(axis=0) - margin_px * pixel_m
    pos = (yx - origin) / pixel_m
    whole = np.rint(pos)
    pos = np.where(np.abs(pos - whole) < 1e-6, whole, pos)  # sub-pixel positions are kept (Fourier-shifted probe)
    extent = float(np.ceil(pos.max()) + npx + margin_px)
    if not extent <= max_object_px:
        msg = (f"{path}:/{TRANSLATION}: the scan spans {extent:.4g} object pixels of {pixel_m:.3g} m (more than "
               f"{max_object_px}); check the translation unit (metres) and the geometry")
        raise DataError(msg)
    n = int(extent)
    frame = Frame(pixel_m, tuple(origin), (n, n))
    term = TermData("ptychography", "ptychography", {"data": data.astype(float), "probe": probe.astype(complex),
                                                     "positions": pos},
                    {"photons_per_unit": 1.0, "object_shape": np.array([n, n])}, str(path))
    return term, frame


def export_cxi(path, term: TermData, pixel_size_m, energy_kev=8.8, distance_m=2.0):
    """Write a ptychography term as a CXI file (detector pixel chosen so that the object pixel is ``pixel_size_m``)."""
    data = np.asarray(term.arrays["data"])
    npx = data.shape[1]
    energy_j = energy_kev * 1.602176634e-16
    det_pix = HC_J_M / energy_j * distance_m / (npx * pixel_size_m)
    pos = np.asarray(term.arrays["positions"], dtype=float)
    trans = np.stack([pos[:, 1] * pixel_size_m, pos[:, 0] * pixel_size_m, np.zeros(len(pos))], axis=1)
    with h5py.File(path, "w") as f:
        f.attrs["cxi_version"] = 150
        f[DATA] = data
        f[ENERGY] = energy_j
        f[DISTANCE] = distance_m
        f[PIX_X] = det_pix
        f[PIX_Y] = det_pix
        f[TRANSLATION] = trans
        f[PROBE] = np.asarray(term.arrays["probe"])
