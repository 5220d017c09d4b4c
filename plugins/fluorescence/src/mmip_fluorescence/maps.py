"""XRF-Maps HDF5 (v10 ``/MAPS/XRF_Analyzed/{NNLS,Fitted}/Counts_Per_Sec``, v9 ``/MAPS/XRF_fits``): import onto a
ptychography frame, export as v10."""

__all__ = ["import_maps", "export_maps"]

import h5py
import numpy as np

from multimodal_ip.errors import DataError
from multimodal_ip.io import TermData
from multimodal_ip.io.dataset import open_h5, read_path, read_strings, resolve

#: (maps, channel names) of each layout, first found wins: v10 NNLS (XRF-Maps' default), v10 fitted, v9
LAYOUTS = (("MAPS/XRF_Analyzed/NNLS/Counts_Per_Sec", "MAPS/XRF_Analyzed/NNLS/Channel_Names"),
           ("MAPS/XRF_Analyzed/Fitted/Counts_Per_Sec", "MAPS/XRF_Analyzed/Fitted/Channel_Names"),
           ("MAPS/XRF_fits", "MAPS/channel_names"))
COUNTS, NAMES = LAYOUTS[1]  # what export_maps writes (v10)
CHANNELS = "MAPS/channel_names"  # v9 place of the channel names, read when the layout's own place has none
#: the beam positions (v10, then v9)
AXES = (("MAPS/Scan/x_axis", "MAPS/Scan/y_axis"), ("MAPS/x_axis", "MAPS/y_axis"))
X_AXIS, Y_AXIS = AXES[0]
#: attribute of the maps: ``"pixel"`` says each value is one object pixel (a 1 x 1 kernel: maps of the object,
#: which ``mmip export --format xrf-maps`` writes), else the values are beam counts (kernel |probe|^2)
KERNEL_ATTR = "kernel"


def _first(path, f, keys, allow_external):
    return next((k for k in keys if resolve(path, f, k, allow_external) is not None), None)


def _read_real(path, f, key, allow_external) -> np.ndarray:
    """The dataset at ``key``: finite real numbers, as floats."""
    if resolve(path, f, key, allow_external) is None:
        msg = (f"{path}:/{key}: missing (an XRF-Maps file needs it; axes at /{AXES[0][0]} or /{AXES[1][0]}: "
               "ptychodus's XRF writer writes none)")
        raise DataError(msg)
    a = np.asarray(read_path(path, f, key, allow_external=allow_external))
    if a.dtype.kind not in "fiu" or not np.all(np.isfinite(a)):
        msg = f"{path}:/{key}: expected finite real numbers, got {a.dtype}"
        raise DataError(msg)
    return a.astype(float)


def _pixel_maps(path, f, counts_key, allow_external) -> bool:
    """Whether the maps declare one object pixel per value (attribute ``kernel = "pixel"``); another value is
    refused by name."""
    value = resolve(path, f, counts_key, allow_external).attrs.get(KERNEL_ATTR)
    if value is None:
        return False
    text = value.decode() if isinstance(value, bytes) else str(value)
    if text not in ("pixel", "beam"):
        msg = f'{path}:/{counts_key}: attribute {KERNEL_ATTR}: expected "pixel" or "beam", got {text!r}'
        raise DataError(msg)
    return text == "pixel"


def _read_maps(path, f, allow_external) -> tuple:
    """``(counts_key, counts, axes, (x, y) in axis units, names_key, names)`` of the first layout found."""
    layout = next((pair for pair in LAYOUTS if resolve(path, f, pair[0], allow_external) is not None), None)
    if layout is None:
        msg = f"{path}: no XRF maps (looked for {', '.join('/' + c for c, _ in LAYOUTS)})"
        raise DataError(msg)
    counts_key = layout[0]
    axes = next((pair for pair in AXES if resolve(path, f, pair[0], allow_external) is not None), AXES[0])
    arrays = {key: _read_real(path, f, key, allow_external) for key in (counts_key, *axes)}
    counts = arrays[counts_key]
    names_key = _first(path, f, (layout[1], CHANNELS), allow_external) or CHANNELS
    names = read_strings(path, f, names_key, allow_external=allow_external,  # budgeted, at most one per map
                         max_count=counts.shape[0] if counts.ndim == 3 else None,
                         counted=("channel names", "maps"))
    return counts_key, counts, axes, tuple(arrays[k] for k in axes), names_key, names


def _check_maps(path, counts_key, counts, axes, xy, names_key, names) -> None:
    """Strictly monotonic 1-D axes, one channel name per map, finite non-negative maps on the axes' grid."""
    for key, axis in zip(axes, xy):
        steps = np.diff(axis) if axis.ndim == 1 else np.zeros(0)
        if axis.ndim != 1 or axis.size == 0 or not (np.all(steps > 0) or np.all(steps < 0)):
            msg = f"{path}:/{key}: expected a strictly monotonic 1-D axis, got shape {axis.shape}"
            raise DataError(msg)
    if names and counts.ndim == 3 and len(names) != counts.shape[0]:
        msg = f"{path}:/{names_key}: {len(names)} channel names for {counts.shape[0]} maps"
        raise DataError(msg)
    x, y = xy
    if counts.ndim != 3 or counts.shape[1:] != (y.size, x.size):
        msg = (f"{path}:/{counts_key}: expected shape (Ne, {y.size}, {x.size}) to match the y/x axes, got "
               f"{counts.shape}")
        raise DataError(msg)
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        msg = f"{path}:/{counts_key}: counts must be finite and non-negative"
        raise DataError(msg)


def _kernel_corners(path, frame, kernel, y, x, axis_unit_m, axes=AXES[0]) -> np.ndarray:
    """The kernel windows' top-left object pixels of the beam positions on the grid ``y`` x ``x`` (metres): inside
    the object and on its pixels (else a message naming what to check)."""
    yy, xx = np.meshgrid(y, x, indexing="ij")
    centres = frame.to_pixels(np.stack([yy.ravel(), xx.ravel()], axis=1))
    n0, n1 = frame.object_shape
    inside = np.rint(centres)
    if inside.min() < 0 or inside[:, 0].max() >= n0 or inside[:, 1].max() >= n1:
        msg = f"{path}: XRF scan extends outside the {n0}x{n1} object of the ptychography scan"
        raise DataError(msg)
    corners = centres - (np.asarray(kernel.shape, dtype=float) - 1) / 2
    rounded = np.rint(corners)
    off = np.abs(corners - rounded)
    half = np.abs(off - 0.5) < 0.05  # an even window read with the other reference: (Np - 1)/2 is a half-integer
    if np.any(np.all(half, axis=0)) and np.all(half | (off < 0.05)):
        keys = ", ".join(f"/{k}" for k, h in zip(axes[::-1], np.all(half, axis=0)) if h)  # (y, x) order
        msg = (f"{path}:{keys}: the XRF beam positions fall half a pixel off the object pixels the CXI translations "
               f"give: the {kernel.shape[0]}x{kernel.shape[1]} beam window's top-left (y, x), expected whole "
               f"pixels, got ({corners[0, 0]:g}, {corners[0, 1]:g}) at the first beam: the files locate the probe "
               "differently (window centre vs top-left corner), check --cxi-positions; or the file holds maps of "
               f'object pixels, not beam counts, and lacks their attribute {KERNEL_ATTR} = "pixel"')
        raise DataError(msg)
    if np.any(off > 0.05):
        msg = (f"{path}: XRF axes do not fall on object pixels of {frame.pixel_size_m:.4g} m; check the axis unit "
               f"(assumed {axis_unit_m:g} m)")
        raise DataError(msg)
    return rounded


def import_maps(path, frame, kernel, axis_unit_m=1e-6, allow_external=False):
    """Read fitted XRF maps (Ne, rows, cols) with their x/y axes and place every XRF pixel on ``frame``.

    Layouts: v10 ``/MAPS/XRF_Analyzed/NNLS/`` then ``Fitted/`` (``Counts_Per_Sec``, ``Channel_Names``), v9
    ``/MAPS/XRF_fits``; channel names at the layout's place or ``/MAPS/channel_names``; axes at
    ``/MAPS/Scan/{x,y}_axis`` (v10) or ``/MAPS/{x,y}_axis`` (v9), in ``axis_unit_m`` metres (MAPS: um).
    The beam at axis position (y, x) is centred on object coordinates ``frame.to_pixels((y, x))``: the kernel
    window's geometric centre (pixel ``(k - 1)/2``, the CXI convention of the ptychography importer), so its
    top-left is that minus ``(kernel.shape - 1) / 2``. Maps whose attribute ``kernel`` is ``"pixel"`` (what
    :func:`export_maps` writes for maps of the object) hold one object pixel per value: the kernel is then 1 x 1,
    whatever ``kernel`` is given.

    Parameters
    ----------
    path : :obj:`str` or :obj:`pathlib.Path`
        The XRF-Maps HDF5 file.
    frame : :obj:`mmip_ptychography.cxi.Frame`
        The object-pixel frame of the ptychography scan (from :func:`~mmip_ptychography.cxi.import_cxi`).
    kernel : :obj:`numpy.ndarray`
        The beam's intensity kernel (window) on object pixels (beam counts; a file's ``"pixel"`` maps override it).
    axis_unit_m : :obj:`float`, optional
        Length of one axis unit in metres (MAPS: micrometres, 1e-6).
    allow_external : :obj:`bool`, optional
        Accept external links, virtual datasets and external raw storage in the file.

    Returns
    -------
    term : :obj:`multimodal_ip.io.TermData`
        The ``fluorescence`` term: ``data`` (Ne, rows * cols), ``kernel`` and top-left ``positions`` in object
        pixels, with the ``grid_shape``, ``object_shape`` and (when the file names them) ``elements`` attributes.

    Raises
    ------
    :obj:`multimodal_ip.errors.DataError`
        A beam position falls outside the object or off the pixel grid; or the maps or axes are missing, not
        finite, negative (maps), not monotonic (axes), of mismatched shapes, or ``axis_unit_m`` is not a
        positive length.
    """
    if not (np.isfinite(axis_unit_m) and axis_unit_m > 0):
        msg = f"axis unit {axis_unit_m!r} m must be a finite length > 0"
        raise DataError(msg)
    with open_h5(path) as f:
        counts_key, counts, axes, xy, names_key, names = _read_maps(path, f, allow_external)
        if _pixel_maps(path, f, counts_key, allow_external):
            kernel = np.ones((1, 1))  # maps of the object: one object pixel per value, centred on it
    x, y = (a * axis_unit_m for a in xy)
    _check_maps(path, counts_key, counts, axes, (x, y), names_key, names)
    rounded = _kernel_corners(path, frame, kernel, y, x, axis_unit_m, axes)
    data = counts.reshape(counts.shape[0], -1)
    attrs = {"photons_per_unit": 1.0, "grid_shape": np.array([y.size, x.size]),
             "object_shape": np.array(frame.object_shape)}
    if names:
        attrs["elements"] = names
    return TermData("fluorescence", "fluorescence", {"data": data, "kernel": np.asarray(kernel, float),
                                                     "positions": rounded}, attrs, str(path))


def export_maps(path, term: TermData, frame, axis_unit_m=1e-6):
    """Write a fluorescence term on a raster (``grid_shape`` attr) as an XRF-Maps v10 file: maps at
    ``/MAPS/XRF_Analyzed/Fitted/Counts_Per_Sec``, names at ``.../Fitted/Channel_Names``, beam positions (the
    kernel windows' geometric centres) at ``/MAPS/Scan/{x,y}_axis`` in ``axis_unit_m`` metres. The maps' attribute
    ``kernel`` says what a value is: ``"pixel"`` for a 1 x 1 kernel (maps of the object, one pixel per value),
    else ``"beam"`` (counts of the term's kernel); :func:`import_maps` reads it.

    Parameters
    ----------
    path : :obj:`str` or :obj:`pathlib.Path`
        The file to write (overwritten).
    term : :obj:`multimodal_ip.io.TermData`
        A fluorescence term with arrays ``data`` (Ne, rows * cols), ``kernel`` and ``positions`` (top-left, object
        pixels) and the ``grid_shape`` attribute ``(rows, cols)``; names from its ``elements`` attribute (default
        ``E0, E1, ...``).
    frame : :obj:`mmip_ptychography.cxi.Frame`
        Where the object pixels sit in metres.
    axis_unit_m : :obj:`float`, optional
        Length of one axis unit in metres (MAPS: micrometres, 1e-6).
    """
    rows, cols = (int(v) for v in term.attrs["grid_shape"])
    kernel_shape = np.asarray(np.shape(term.arrays["kernel"]), dtype=float)
    centres = np.asarray(term.arrays["positions"], float) + (kernel_shape - 1) / 2
    yx = np.asarray(frame.origin_m) + centres * frame.pixel_size_m
    data = np.asarray(term.arrays["data"])
    with h5py.File(path, "w") as f:
        f["MAPS/version"] = 10.0
        f[COUNTS] = data.reshape(data.shape[0], rows, cols)
        f[COUNTS].attrs[KERNEL_ATTR] = "pixel" if kernel_shape.tolist() == [1.0, 1.0] else "beam"
        names = term.attrs.get("elements", [f"E{e}" for e in range(data.shape[0])])
        f[NAMES] = np.array([str(e) for e in names], dtype="S256")
        f[Y_AXIS] = yx[:, 0].reshape(rows, cols)[:, 0] / axis_unit_m
        f[X_AXIS] = yx[:, 1].reshape(rows, cols)[0, :] / axis_unit_m
