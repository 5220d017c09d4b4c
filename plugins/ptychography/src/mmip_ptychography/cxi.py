"""CXI ptychography files (``/entry_1/...``): import into our schema, and export (for round trips)."""

__all__ = ["import_cxi", "export_cxi", "scan_term", "Frame", "HC_J_M", "REFERENCES"]

import warnings
from dataclasses import dataclass

import h5py
import numpy as np

from multimodal_ip.errors import DataError
from multimodal_ip.io import TermData
from multimodal_ip.io.dataset import open_h5, read_path, resolve

HC_J_M = 1.98644586e-25  # h * c in J m
EV_J = 1.602176634e-19  # one electronvolt in J
#: object pixel sizes a far-field geometry can give (a picometre to a millimetre): outside, a unit is wrong
MIN_PIXEL_M, MAX_PIXEL_M = 1e-12, 1e-3

#: where the patterns are, first found wins (our exports and ptychodus products; ptychodus diffraction files)
DATA_PATHS = ("entry_1/data_1/data", "entry_1/instrument_1/detector_1/data")
DATA = DATA_PATHS[0]
ENERGY = "entry_1/instrument_1/source_1/energy"
DISTANCE = "entry_1/instrument_1/detector_1/distance"
PIX_X = "entry_1/instrument_1/detector_1/x_pixel_size"
PIX_Y = "entry_1/instrument_1/detector_1/y_pixel_size"
TRANSLATION = "entry_1/sample_1/geometry_1/translation"
MASK = "entry_1/instrument_1/detector_1/mask"
#: where the probe is, first found wins: the CXI layout (ptychodus reads and writes both), then the path of mmip
#: exports before the CXI layout was followed (whose translations were window corners)
PROBE_PATHS = ("entry_1/instrument_1/source_1/illumination", "entry_1/image_1/data")
LEGACY_PROBE = "entry_1/instrument_1/source_1/probe"
PROBE = PROBE_PATHS[0]
#: what a translation locates: the probe window's geometric centre (CXI, ptychodus; the default) or its top-left
#: pixel (``corner``)
REFERENCES = ("centre", "corner")
#: attribute of the translation dataset our exports write, naming its reference (read when present)
REFERENCE_ATTR = "position_reference"
#: a ptychodus product: CXI (``translation``, probe at ``image_1/data``) or ``.h5`` (these, probe centres in metres)
H5_X, H5_Y, H5_PROBE, H5_INDEXES = "probe_position_x_m", "probe_position_y_m", "probe", "probe_position_indexes"
CXI_INDEXES = "entry_1/ptychodus/probe_position_indexes"


@dataclass
class Frame:
    """Object-pixel coordinates: object pixel (r, c) sits at ``origin_m + (r, c) * pixel_size_m`` (y, x).

    Parameters
    ----------
    pixel_size_m : :obj:`float`
        Object pixel size in metres.
    origin_m : :obj:`tuple`
        ``(y, x)`` position in metres of object pixel (0, 0).
    object_shape : :obj:`tuple`
        Shape ``(n0, n1)`` of the object grid.
    """

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


def _first(f, path, keys, allow_external):
    """The first of ``keys`` present in ``f`` (``None`` when none is)."""
    return next((k for k in keys if resolve(path, f, k, allow_external) is not None), None)


def _reference(f, path, reference, legacy, allow_external, key=TRANSLATION):
    """The position reference: the option when given, else the one the file declares, else ``centre`` (the CXI
    convention); an mmip export of the old layout (probe at ``source_1/probe``, no declaration) is refused unless
    the option says which, as is an option that contradicts the file."""
    if reference is not None and reference not in REFERENCES:
        msg = f"--cxi-positions must be one of {', '.join(REFERENCES)}; got {reference!r}"
        raise DataError(msg)
    declared = None
    d = None if key is None else resolve(path, f, key, allow_external)
    if d is not None and REFERENCE_ATTR in d.attrs:
        raw = d.attrs.get_id(REFERENCE_ATTR)
        if raw.dtype.kind not in "SUO" or raw.shape not in ((), None):
            msg = f"{path}:/{TRANSLATION} attribute {REFERENCE_ATTR}: expected one of {REFERENCES}, got {raw.dtype}"
            raise DataError(msg)
        value = d.attrs[REFERENCE_ATTR]
        declared = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        if declared not in REFERENCES:
            msg = f"{path}:/{TRANSLATION} attribute {REFERENCE_ATTR}: expected one of {REFERENCES}, got {declared!r}"
            raise DataError(msg)
    if reference is not None and declared is not None and reference != declared:
        msg = (f"{path}:/{TRANSLATION}: the file declares {REFERENCE_ATTR} = {declared!r}, --cxi-positions says "
               f"{reference!r}; drop the option or fix the file")
        raise DataError(msg)
    if reference is None and declared is None and legacy:
        msg = (f"{path}:/{TRANSLATION}: probe at /{LEGACY_PROBE} (an mmip export before the CXI layout, whose "
               "translations were window corners) and no position reference declared; pass --cxi-positions corner "
               "(or centre) to say which")
        raise DataError(msg)
    return reference or declared or "centre"


def _probe(f, path, shape, allow_external, keys=(*PROBE_PATHS, LEGACY_PROBE)):
    """The probe (``None`` when the file has none) and whether it came from the old mmip path; a multi-mode probe
    (M, Np, Np) gives its first mode, with a one-line warning."""
    key = _first(f, path, keys, allow_external)
    if key is None:
        return None, False
    d = resolve(path, f, key, allow_external)
    if key == PROBE_PATHS[1] and (not isinstance(d, h5py.Dataset) or tuple(d.shape[-2:]) != tuple(shape)):
        return None, False  # image_1 of another layout (a reconstructed object): not a probe
    probe = _get(f, path, key, allow_external=allow_external)
    if probe.ndim < 2 or probe.shape[-2:] != tuple(shape) or any(s != 1 for s in probe.shape[:-3]):
        msg = f"{path}:/{key}: expected a probe of shape {tuple(shape)} or (modes, *{tuple(shape)}), got {probe.shape}"
        raise DataError(msg)
    probe = probe.reshape(-1, *shape)
    if probe.shape[0] > 1:
        warnings.warn(f"{path}:/{key}: a probe of {probe.shape[0]} modes; using the first (the model is coherent, "
                      "one mode)", stacklevel=3)
    return probe[0], key == LEGACY_PROBE


def _geometry(f, path, shape, reference, allow_external):
    """Translations (J, 3), probe (or ``None``), position reference and pattern indexes (or ``None``) of a CXI file
    or of a ptychodus ``.h5`` product (``probe_position_x_m``, ``probe_position_y_m``: probe centres)."""
    if resolve(path, f, H5_X, allow_external) is not None:
        x, y = (_get(f, path, k, ndim=1, allow_external=allow_external) for k in (H5_X, H5_Y))
        if x.shape != y.shape:
            msg = f"{path}: /{H5_X} and /{H5_Y} differ in shape: {x.shape} vs {y.shape}"
            raise DataError(msg)
        trans = np.stack([x, y, np.zeros_like(x)], axis=1).astype(float)
        found, _ = _probe(f, path, shape, allow_external, keys=(H5_PROBE,))
        reference, idx_key = _reference(f, path, reference, False, allow_external, key=None), H5_INDEXES
    else:
        if resolve(path, f, TRANSLATION, allow_external) is None:
            msg = (f"{path}:/{TRANSLATION}: missing (a CXI ptychography file needs it; a diffraction file without "
                   "positions: give its product, .cxi or .h5, with --product)")
            raise DataError(msg)
        trans = _get(f, path, TRANSLATION, ndim=2, allow_external=allow_external)
        found, legacy = _probe(f, path, shape, allow_external)
        reference, idx_key = _reference(f, path, reference, legacy, allow_external), CXI_INDEXES
    indexes = None
    if resolve(path, f, idx_key, allow_external) is not None:
        raw = _get(f, path, idx_key, ndim=1, allow_external=allow_external)
        if raw.dtype.kind not in "iu":
            msg = f"{path}:/{idx_key}: expected integer pattern numbers, got {raw.dtype}"
            raise DataError(msg)
        indexes = raw.astype(np.int64)
    return trans, found, reference, indexes


def _patterns(f, path, allow_external) -> np.ndarray:
    """The diffraction patterns (J, Np, Np): real, non-negative, square; a detector mask is warned about (the model
    has none)."""
    key = _first(f, path, DATA_PATHS, allow_external)
    if key is None:
        msg = (f"{path}: no diffraction patterns (/{DATA_PATHS[0]} or /{DATA_PATHS[1]}); a product file? give "
               "the diffraction file with --ptycho and the product with --product")
        raise DataError(msg)
    data = _get(f, path, key, ndim=3, allow_external=allow_external)
    if data.dtype.kind == "c" or np.any(data < 0):
        msg = f"{path}:/{key}: intensities must be real and non-negative"
        raise DataError(msg)
    if data.shape[2] != data.shape[1]:  # the far-field pixel size and the probe window are those of square ones
        msg = f"{path}:/{key}: patterns must be square (J, Np, Np), got shape {data.shape}"
        raise DataError(msg)
    if resolve(path, f, MASK, allow_external) is not None:  # CXI: nonzero = a bad pixel (ptychodus writes one)
        bad = int(np.count_nonzero(_get(f, path, MASK, allow_external=allow_external)))
        if bad:
            warnings.warn(f"{path}:/{MASK}: {bad} bad detector pixel(s) marked; the model has no mask, they are "
                          "fitted like the others", stacklevel=3)  # at import_cxi's caller
    return data


def _detector(f, path, allow_external) -> tuple:
    """``(energy_j, distance_m, pixel_m)`` of the source and the (square-pixelled) detector."""
    energy_j = _scalar(f, path, ENERGY, allow_external)
    distance = _scalar(f, path, DISTANCE, allow_external)
    pix = _scalar(f, path, PIX_X, allow_external)
    if abs(_scalar(f, path, PIX_Y, allow_external) - pix) > 1e-9 * pix:
        msg = f"{path}: non-square detector pixels are not supported"
        raise DataError(msg)
    return energy_j, distance, pix


def _scan_patterns(source, data, trans, indexes) -> np.ndarray:
    """The patterns of the scan's positions (``indexes``: a product's pattern numbers), one per translation."""
    if indexes is not None:  # the product's positions belong to these patterns (ptychodus's probe_position_indexes)
        if indexes.shape != (len(trans),) or indexes.min(initial=0) < 0 or indexes.max(initial=0) >= len(data):
            msg = (f"{source}: probe position indexes must be {len(trans)} pattern numbers in [0, {len(data)}), got "
                   f"shape {indexes.shape}")
            raise DataError(msg)
        data = data[indexes]
    if trans.shape != (data.shape[0], 3):
        msg = f"{source}:/{TRANSLATION}: expected shape ({data.shape[0]}, 3) (one per pattern), got {trans.shape}"
        raise DataError(msg)
    return data


def _object_pixel(path, energy_j, distance, pix, npx) -> float:
    """The far-field object pixel :math:`\\lambda z / (N_p \\Delta_{det})` in metres, of a plausible size."""
    with np.errstate(all="ignore"):
        wavelength = HC_J_M / energy_j
        pixel_m = wavelength * distance / (npx * pix)
    if not (np.isfinite(pixel_m) and pixel_m > 0):
        msg = (f"{path}: energy {energy_j:g} J, distance {distance:g} m and detector pixel {pix:g} m give no finite "
               "object pixel size")
        raise DataError(msg)
    if not MIN_PIXEL_M <= pixel_m <= MAX_PIXEL_M:
        msg = (f"{path}: energy {energy_j:g} J, distance {distance:g} m and detector pixel {pix:g} m give an object "
               f"pixel of {pixel_m:.3g} m, outside [{MIN_PIXEL_M:g}, {MAX_PIXEL_M:g}] m; check the units (J, m)")
        raise DataError(msg)
    return pixel_m


def _window_positions(path, source, trans, reference, npx, pixel_m, margin_px, max_object_px) -> tuple:
    """``(origin_m, positions, n)``: the windows' top-left object pixels of the translations and the side ``n`` of
    the object spanning them plus ``margin_px``."""
    yx = trans[:, [1, 0]]  # CXI translation is (x, y, z)
    if reference == "centre":  # the window's top-left pixel centre lies (Np - 1)/2 pixels before its centre
        yx = yx - (npx - 1) / 2 * pixel_m
    origin = yx.min(axis=0) - margin_px * pixel_m
    pos = (yx - origin) / pixel_m
    span_m, span_px = np.ptp(yx, axis=0).max(), np.ptp(pos, axis=0).max()
    if len(trans) > 1 and span_m > 0 and span_px < 0.5:
        msg = (f"{source}:/{TRANSLATION}: the scan spans {span_m:.3g} m, less than half an object pixel of "
               f"{pixel_m:.3g} m: every position collapses onto one; check the detector pixel size and distance")
        raise DataError(msg)
    whole = np.rint(pos)
    pos = np.where(np.abs(pos - whole) < 1e-6, whole, pos)  # sub-pixel positions are kept (Fourier-shifted probe)
    extent = float(np.ceil(pos.max()) + npx + margin_px)
    if not extent <= max_object_px:
        msg = (f"{path}:/{TRANSLATION}: the scan spans {extent:.4g} object pixels of {pixel_m:.3g} m (more than "
               f"{max_object_px}); check the translation unit (metres) and the geometry")
        raise DataError(msg)
    return origin, pos, int(extent)


def scan_term(path, source, data, probe, trans, reference, detector, margin_px, max_object_px) -> tuple:
    """The ``ptychography`` term and :class:`Frame` of a far-field scan (:func:`import_cxi`'s, and ptychodus's
    readers' in ``mmip_ptychodus``): the geometry's object pixel, the windows' top-left object pixels.

    Parameters
    ----------
    path, source : :obj:`str` or :obj:`pathlib.Path`
        The file of the patterns and geometry; that of the translations (both named in messages).
    data, probe, trans : :obj:`numpy.ndarray`
        Patterns ``(J, Np, Np)``, probe ``(Np, Np)``, translations ``(J, 3)`` ``(x, y, z)`` in metres.
    reference, detector, margin_px, max_object_px
        One of :data:`REFERENCES`; ``(energy_j, distance_m, pixel_m)``; object pixels added around the windows;
        the largest object side accepted.

    Returns
    -------
    term, frame : :obj:`multimodal_ip.io.TermData`, :obj:`Frame`
        ``data``, ``probe``, ``positions`` (J, 2) and attributes; where the object pixels sit in metres.
    """
    energy_j, distance, pix = detector
    npx = data.shape[1]
    pixel_m = _object_pixel(path, energy_j, distance, pix, npx)
    origin, pos, n = _window_positions(path, source, trans, reference, npx, pixel_m, margin_px, max_object_px)
    attrs = {"photons_per_unit": 1.0, "object_shape": np.array([n, n]), "photon_energy_eV": energy_j / EV_J,
             "detector_distance_m": distance}
    term = TermData("ptychography", "ptychography", {"data": data.astype(float), "probe": probe.astype(complex),
                                                     "positions": pos}, attrs, str(path))
    return term, Frame(pixel_m, tuple(origin), (n, n))


def import_cxi(path, probe=None, margin_px=0, allow_external=False, max_object_px=2**15, reference=None,
               product=None):
    """Read a CXI file; returns ``(TermData, Frame)``.

    Patterns from ``/entry_1/data_1/data`` or ``/entry_1/instrument_1/detector_1/data``; the probe from
    ``source_1/illumination`` or ``image_1/data`` (first mode of several), else the ``probe`` argument. Object
    pixel size is :math:`\\lambda z / (N_p \\Delta_{det})` (far field). Translations (J, 3) in metres locate the
    probe window's geometric centre (``reference="centre"``, the CXI convention: probe pixel
    :math:`(N_p - 1)/2`, between two pixels for an even :math:`N_p`) or its top-left pixel (``"corner"``); default:
    the ``position_reference`` attribute of the translations, else ``centre``. They become top-left positions in
    object pixels, the object spanning all windows plus ``margin_px``; object pixel (r, c) sits at
    ``frame.origin_m + (r, c) * pixel``. With ``product`` (a ptychodus product, CXI or ``.h5``), the translations,
    probe and pattern indexes come from it and only the patterns and the geometry from ``path``.

    Parameters
    ----------
    path : :obj:`str` or :obj:`pathlib.Path`
        The CXI file (patterns, energy, detector distance and pixel size; translations and probe unless
        ``product`` is given).
    probe : :obj:`numpy.ndarray`, optional
        Complex probe ``(Np, Np)`` used when the file has none.
    margin_px : :obj:`int`, optional
        Object pixels added around the windows on every side.
    allow_external : :obj:`bool`, optional
        Accept external links, virtual datasets and external raw storage in the file.
    max_object_px : :obj:`int`, optional
        Largest object side (pixels) accepted: a larger span means a wrong unit or geometry.
    reference : :obj:`str`, optional
        What a translation locates, one of :data:`REFERENCES`; default: the file's declaration, else ``"centre"``.
    product : :obj:`str` or :obj:`pathlib.Path`, optional
        A ptychodus product (CXI or ``.h5``) to take the translations, probe and pattern indexes from.

    Returns
    -------
    term : :obj:`multimodal_ip.io.TermData`
        The ``ptychography`` term: ``data`` (J, Np, Np), ``probe`` and top-left ``positions`` in object pixels,
        with the ``object_shape`` attribute.
    frame : :obj:`Frame`
        Where the object pixels sit in metres.

    Raises
    ------
    :obj:`multimodal_ip.errors.DataError`
        A dataset is missing, of the wrong shape or not finite, there is no probe, the position reference is
        unknown or contradicts the file, or the scan span gives an implausible object size.
    """
    with open_h5(path) as f:
        data = _patterns(f, path, allow_external)
        energy_j, distance, pix = _detector(f, path, allow_external)
        if product is None:
            trans, found, reference, indexes = _geometry(f, path, data.shape[1:], reference, allow_external)
    if product is not None:  # a ptychodus product (CXI or .h5): positions and probe; the patterns stay in path
        with open_h5(product) as g:
            trans, found, reference, indexes = _geometry(g, product, data.shape[1:], reference, allow_external)
    source = path if product is None else product
    probe = found if probe is None else probe
    if probe is None:
        msg = f"{source}: no probe in the file ({', '.join('/' + p for p in PROBE_PATHS)}); pass one"
        raise DataError(msg)
    data = _scan_patterns(source, data, trans, indexes)
    if probe.shape != data.shape[1:]:
        msg = f"{path}: probe shape {probe.shape} differs from the pattern shape {data.shape[1:]}"
        raise DataError(msg)
    return scan_term(path, source, data, probe, trans, reference, (energy_j, distance, pix), margin_px, max_object_px)


def export_cxi(path, term: TermData, pixel_size_m, energy_kev=8.8, distance_m=2.0, origin_m=(0.0, 0.0)):
    """Write a ptychography term as a CXI file that :func:`import_cxi` and ptychodus read: patterns at
    ``data_1/data``, the probe at ``source_1/illumination``, translations (x, y, z) of the probe window's centre
    (``position_reference = "centre"``), object pixel (r, c) at ``origin_m + (r, c) * pixel_size_m``; the detector
    pixel is chosen so that the object pixel is ``pixel_size_m``.

    Parameters
    ----------
    path : :obj:`str` or :obj:`pathlib.Path`
        The file to write (overwritten).
    term : :obj:`multimodal_ip.io.TermData`
        A ptychography term with arrays ``data`` (J, Np, Np), ``probe`` (Np, Np) and top-left ``positions``
        (J, 2) in object pixels.
    pixel_size_m : :obj:`float`
        Object pixel size in metres.
    energy_kev : :obj:`float`, optional
        Beam energy in keV.
    distance_m : :obj:`float`, optional
        Sample-detector distance in metres.
    origin_m : :obj:`tuple`, optional
        ``(y, x)`` position in metres of object pixel (0, 0).
    """
    data = np.asarray(term.arrays["data"])
    npx = data.shape[1]
    energy_j = energy_kev * 1.602176634e-16
    det_pix = HC_J_M / energy_j * distance_m / (npx * pixel_size_m)
    centres = np.asarray(term.arrays["positions"], dtype=float) + (npx - 1) / 2
    yx = np.asarray(origin_m, dtype=float) + centres * pixel_size_m
    trans = np.stack([yx[:, 1], yx[:, 0], np.zeros(len(yx))], axis=1)
    with h5py.File(path, "w") as f:
        f.attrs["cxi_version"] = 150
        f[DATA] = data
        f[ENERGY] = energy_j
        f[DISTANCE] = distance_m
        f[PIX_X] = det_pix
        f[PIX_Y] = det_pix
        f[TRANSLATION] = trans
        f[TRANSLATION].attrs[REFERENCE_ATTR] = "centre"
        f[PROBE] = np.asarray(term.arrays["probe"])[None]  # (modes, Np, Np), as ptychodus writes it
        f["entry_1/data_1/translation"] = h5py.SoftLink("/" + TRANSLATION)
