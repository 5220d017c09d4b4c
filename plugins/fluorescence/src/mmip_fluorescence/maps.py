"""MAPS-style XRF HDF5 (``/MAPS/XRF_Analyzed/Fitted/Counts_Per_Sec``): import onto a ptychography frame, export."""

__all__ = ["import_maps", "export_maps"]

import h5py
import numpy as np

from multimodal_ip.errors import DataError
from multimodal_ip.io import TermData
from multimodal_ip.io.dataset import open_h5, read_path, resolve

COUNTS = "MAPS/XRF_Analyzed/Fitted/Counts_Per_Sec"
CHANNELS = "MAPS/channel_names"
X_AXIS = "MAPS/x_axis"
Y_AXIS = "MAPS/y_axis"


def import_maps(path, frame, kernel, axis_unit_m=1e-6, allow_external=False):
    """Read fitted XRF maps (Ne, rows, cols) with their x/y axes and place every XRF pixel on ``frame``.

    The beam at axis position (y, x) is centred on object pixel ``frame.to_pixels((y, x))``; the kernel
    window's top-left is that minus ``kernel.shape // 2``. Axes are in ``axis_unit_m`` metres (MAPS: um).
    Raises :class:`DataError` if a beam position falls outside the object or off the pixel grid.
    """
    if not (np.isfinite(axis_unit_m) and axis_unit_m > 0):
        msg = f"axis unit {axis_unit_m!r} m must be a finite length > 0"
        raise DataError(msg)
    with open_h5(path) as f:
        arrays = {}
        for key in (COUNTS, X_AXIS, Y_AXIS):
            if resolve(path, f, key, allow_external) is None:
                msg = f"{path}:/{key}: missing (a MAPS XRF file needs it)"
                raise DataError(msg)
            a = np.asarray(read_path(path, f, key, allow_external=allow_external))
            if a.dtype.kind not in "fiu" or not np.all(np.isfinite(a)):
                msg = f"{path}:/{key}: expected finite real numbers, got {a.dtype}"
                raise DataError(msg)
            arrays[key] = a.astype(float)
        counts = arrays[COUNTS]
        x, y = (arrays[k] * axis_unit_m for k in (X_AXIS, Y_AXIS))
        names = []
        if resolve(path, f, CHANNELS, allow_external) is not None:
            raw = resolve(path, f, CHANNELS, allow_external)[()]
            names = [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in np.atleast_1d(raw)]
    for key, axis in ((X_AXIS, x), (Y_AXIS, y)):
        steps = np.diff(axis) if axis.ndim == 1 else np.zeros(0)
        if axis.ndim != 1 or axis.size == 0 or not (np.all(steps > 0) or np.all(steps < 0)):
            msg = f"{path}:/{key}: expected a strictly monotonic 1-D axis, got shape {axis.shape}"
            raise DataError(msg)
    if names and counts.ndim == 3 and len(names) != counts.shape[0]:
        msg = f"{path}:/{CHANNELS}: {len(names)} channel names for {counts.shape[0]} maps"
        raise DataError(msg)
    if counts.ndim != 3 or counts.shape[1:] != (y.size, x.size):
        msg = f"{path}:/{COUNTS}: expected shape (Ne, {y.size}, {x.size}) to match the y/x axes, got {counts.shape}"
        raise DataError(msg)
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        msg = f"{path}:/{COUNTS}: counts must be finite and non-negative"
        raise DataError(msg)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    centres = frame.to_pixels(np.stack([yy.ravel(), xx.ravel()], axis=1))
    rounded = np.rint(centres)
    if np.any(np.abs(centres - rounded) > 0.05):
        msg = (f"{path}: XRF axes do not fall on object pixels of {frame.pixel_size_m:.4g} m; check the axis unit "
               f"(assumed {axis_unit_m:g} m)")
        raise DataError(msg)
    n0, n1 = frame.object_shape
    if rounded.min() < 0 or rounded[:, 0].max() >= n0 or rounded[:, 1].max() >= n1:
        msg = f"{path}: XRF scan extends outside the {n0}x{n1} object of the ptychography scan"
        raise DataError(msg)
    kh, kw = kernel.shape
    positions = rounded - np.array([kh // 2, kw // 2])
    data = counts.reshape(counts.shape[0], -1)
    attrs = {"photons_per_unit": 1.0, "grid_shape": np.array([y.size, x.size]),
             "object_shape": np.array(frame.object_shape)}
    if names:
        attrs["elements"] = names
    return TermData("fluorescence", "fluorescence", {"data": data, "kernel": np.asarray(kernel, float),
                                                     "positions": positions}, attrs, str(path))


def export_maps(path, term: TermData, frame, axis_unit_m=1e-6):
    """Write a fluorescence term on a raster (``grid_shape`` attr) as a MAPS-style file."""
    rows, cols = (int(v) for v in term.attrs["grid_shape"])
    kh, kw = np.asarray(term.arrays["kernel"]).shape
    centres = np.asarray(term.arrays["positions"], float) + [kh // 2, kw // 2]
    yx = np.asarray(frame.origin_m) + centres * frame.pixel_size_m
    data = np.asarray(term.arrays["data"])
    with h5py.File(path, "w") as f:
        f[COUNTS] = data.reshape(data.shape[0], rows, cols)
        f[Y_AXIS] = yx[:, 0].reshape(rows, cols)[:, 0] / axis_unit_m
        f[X_AXIS] = yx[:, 1].reshape(rows, cols)[0, :] / axis_unit_m
        f[CHANNELS] = np.array([str(e) for e in term.attrs.get("elements", ["E0"])], dtype="S")
