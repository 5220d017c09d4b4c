"""A ptychography reconstruction as a start point (``mmip reconstruct --start product.h5``): the object and probe of a
ptychodus product (``.h5``, or a CXI product) as the unknowns ``x``, ``w`` and ``probe`` of a problem, placed on the
data file's object grid. The importer ``cxi`` offers it to the core as ``read_start``."""

__all__ = ["read_product_start"]

import warnings

import h5py
import numpy as np
from mmip_scanprobe import ObjectFrame

from multimodal_ip.errors import DataError
from multimodal_ip.io.dataset import open_h5, read_path, resolve

from .coupling import term_coefficients
from .cxi import H5_PROBE, H5_X, PROBE_PATHS, TRANSLATION

#: a CXI product's object (ptychodus writes the probe at ``image_1``, the object at ``image_2``)
CXI_OBJECT = "entry_1/image_2/data"
#: a CXI product's object frame, as ptychodus writes it: ``(centre y, centre x, pixel height, pixel width)`` in metres
CXI_FRAME = tuple(f"entry_1/ptychodus/object_{k}_m" for k in ("center_y", "center_x", "pixel_height", "pixel_width"))
#: relative difference of the object pixel sizes, and offset in pixels, below which two grids are the same
PIXEL_RTOL, OFFSET_TOL = 1e-6, 1e-3


def _layout(f, path, allow_external) -> tuple | None:
    """``(object key, probe keys, cxi?)`` of a ptychodus product; ``None`` for any other file."""
    if resolve(path, f, H5_X, allow_external) is not None and isinstance(resolve(path, f, "object", allow_external),
                                                                         h5py.Dataset):
        return "object", (H5_PROBE,), False
    if resolve(path, f, TRANSLATION, allow_external) is not None and \
            isinstance(resolve(path, f, CXI_OBJECT, allow_external), h5py.Dataset):
        return CXI_OBJECT, ("entry_1/image_1/data", *PROBE_PATHS), True
    return None


def _scalar(f, path, key, allow_external) -> float | None:
    d = resolve(path, f, key, allow_external)
    if not isinstance(d, h5py.Dataset) or d.size != 1 or d.dtype.kind not in "fiu":
        return None
    value = float(np.asarray(d[()]).ravel()[0])
    return value if np.isfinite(value) else None


def _product_frame(f, path, key, cxi, allow_external) -> tuple | None:
    """``(centre (y, x), pixel (y, x))`` of the product's object in metres, ``None`` when the file gives none."""
    values: list = []
    if cxi:
        values = [_scalar(f, path, k, allow_external) for k in CXI_FRAME]
    else:
        attrs = resolve(path, f, key, allow_external).attrs
        values = [attrs.get(k) for k in ("center_y_m", "center_x_m", "pixel_height_m", "pixel_width_m")]
    if any(v is None or np.size(v) != 1 or np.asarray(v).dtype.kind not in "fiu" or not np.isfinite(np.ravel(v)[0])
           for v in values):
        return None
    v = [float(np.ravel(x)[0]) for x in values]
    return np.array(v[:2]), np.array(v[2:])


def _placed(z, where, shape, product_frame, data_frame) -> np.ndarray:
    """The product's object ``z`` on the data's object grid of ``shape``: cut out where both frames are known and
    their pixels coincide; else ``z`` itself when it has that shape."""
    if product_frame is None or data_frame is None:
        if z.shape != tuple(shape):
            msg = (f"{where}: expected an object of shape {tuple(shape)} (the problem's x; without the frames of "
                   f"both files, pixel_size_m and origin_m, it cannot be placed), got {z.shape}")
            raise DataError(msg)
        return z
    (centre, pix), (pixel, origin) = product_frame, data_frame
    origin = np.asarray(origin)
    if not np.allclose(pix, pixel, rtol=PIXEL_RTOL, atol=0):
        msg = f"{where}: object pixel {pix[0]:.6g} x {pix[1]:.6g} m, the data file's is {pixel:.6g} m"
        raise DataError(msg)
    offset = (centre - (np.array(z.shape) - 1) / 2 * pix - origin) / pixel  # the product's pixel (0, 0) on our grid
    whole = np.rint(offset)
    first = (-whole).astype(int)
    if np.any(np.abs(offset - whole) > OFFSET_TOL) or np.any(first < 0) or np.any(first + shape > z.shape):
        msg = (f"{where}: the object ({z.shape[0]} x {z.shape[1]} px, pixel (0, 0) at data pixel "
               f"({offset[0]:.3f}, {offset[1]:.3f})) does not cover the data's {shape[0]} x {shape[1]} grid on whole "
               "pixels")
        raise DataError(msg)
    return z[first[0]:first[0] + shape[0], first[1]:first[1] + shape[1]]


def _coefficients(context, ne) -> np.ndarray:
    """The coupling :math:`a_e` of the run (its option, else the ptychography term's attribute; ones by default)."""
    dataset = context.get("dataset")
    attrs: dict = next((td.attrs for td in (getattr(dataset, "terms", None) or {}).values()
                  if td.modality == "ptychography"), {})
    return term_coefficients(attrs, ne, context.get("coupling"))


def _object(f, path, key, variables, context, cxi) -> dict:
    """``x`` and ``w`` from the product's object :math:`z = x + i \\sum_e a_e w_e`: :math:`x = \\Re z`, and the
    element maps of least norm that give :math:`\\Im z`, :math:`w_e = a_e \\Im z / \\sum_e a_e^2`."""
    allow = context.get("allow_external", False)
    d = resolve(path, f, key, allow)
    where = f"{path}:/{key}"
    if d.ndim not in (2, 3) or (d.ndim == 3 and d.shape[0] != 1):
        msg = f"{where}: expected one object layer (1, n0, n1) or (n0, n1), got shape {d.shape}"
        raise DataError(msg)
    z = np.asarray(read_path(path, f, key, budget=context.get("budget"), allow_external=allow))
    z = z.reshape(z.shape[-2:])
    shape = variables["x"][0] if "x" in variables else variables["w"][0][1:]
    data_frame = ObjectFrame.from_attrs(getattr(context.get("dataset"), "attrs", None))
    z = _placed(z, where, tuple(shape), _product_frame(f, path, key, cxi, allow), data_frame)
    out = {}
    if "x" in variables:
        out["x"] = z.real.copy()
    if "w" in variables and variables["w"][0][1:] == tuple(shape):
        coef = _coefficients(context, variables["w"][0][0])
        if not np.any(coef):
            return out
        out["w"] = coef[:, None, None] * z.imag[None] / float(coef @ coef)
    return out


def _probe(f, path, keys, shape, context) -> dict:
    """The product's probe (the first mode of several) when the problem refines one of this shape."""
    allow = context.get("allow_external", False)
    key = next((k for k in keys if isinstance(resolve(path, f, k, allow), h5py.Dataset)
                and tuple(resolve(path, f, k, allow).shape[-2:]) == tuple(shape)), None)
    if key is None:
        return {}
    probe = np.asarray(read_path(path, f, key, budget=context.get("budget"), allow_external=allow))
    probe = probe.reshape(-1, *probe.shape[-2:])
    if probe.shape[0] > 1:
        warnings.warn(f"{path}:/{key}: a probe of {probe.shape[0]} modes; starting from the first", stacklevel=3)
    return {"probe": probe[0]}


def read_product_start(path, context) -> dict | None:
    """Start values from a ptychodus product (``.h5`` or CXI): ``x`` and ``w`` from its object, ``probe`` from its
    probe, for the variables of ``context`` the problem has.

    The object is placed on the data file's object grid when both files give their frames (the product's object
    centre and pixel size; the data file's ``origin_m`` and ``pixel_size_m``, written by ``mmip import``) and the
    pixels coincide; else it must have the problem's shape. ``z = x + i sum_e a_e w_e`` (the paper's coupling, with
    the run's coefficients) gives ``x = Re z`` and the least-norm ``w``. Positions are not read: import the product
    with the diffraction file (``mmip import --product``) for those.

    Parameters
    ----------
    path : :obj:`str` or :obj:`pathlib.Path`
        The file.
    context : :obj:`dict`
        ``variables`` (``{name: (shape, dtype)}`` of the problem), ``dataset`` (the run's data: attributes and
        terms), ``coupling`` (the run's option), ``allow_external`` and ``budget`` (the memory budget of the read).

    Returns
    -------
    values : :obj:`dict` or :obj:`None`
        ``{variable: array}``; ``None`` when ``path`` is no ptychodus product.
    """
    variables = context["variables"]
    with open_h5(path) as f:
        layout = _layout(f, path, context.get("allow_external", False))
        if layout is None:
            return None
        key, probe_keys, cxi = layout
        out = _object(f, path, key, variables, context, cxi) if "x" in variables or "w" in variables else {}
        if "probe" in variables:
            out.update(_probe(f, path, probe_keys, variables["probe"][0], context))
    return out
