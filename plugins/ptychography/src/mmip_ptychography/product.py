"""A reconstruction as a ptychodus product (``.h5``, ptychodus's ``save_product`` layout, or a CXI product):
object, probe and (refined) positions, which ptychodus's readers and :func:`~mmip_ptychography.cxi.import_cxi`
(``product=``) read."""

__all__ = ["export_product"]

import h5py
import numpy as np

from .cxi import DISTANCE, ENERGY, EV_J, H5_INDEXES, H5_PROBE, H5_X, H5_Y, REFERENCE_ATTR, TRANSLATION


def export_product(path, obj, probe, positions_px, pixel_size_m, energy_kev=8.8, distance_m=2.0,
                   origin_m=(0.0, 0.0), name="mmip", cxi=None):
    """Write ``obj`` (n0, n1) complex (e.g. ``x + 1j * w.sum(0)``, the paper's coupling), ``probe`` (Np, Np) and
    ``positions_px`` (J, 2) top-left (row, col) as a ptychodus product: CXI when ``path`` ends in ``.cxi``, else
    ptychodus's ``.h5``. Object pixel (r, c) sits at ``origin_m + (r, c) * pixel_size_m`` (y, x); a position is
    written as the probe window's centre, pixel ``(Np - 1)/2``, and the object's centre is its pixel
    ``(n - 1)/2``: ptychodus's conventions.

    Parameters
    ----------
    path : :obj:`str` or :obj:`pathlib.Path`
        The file to write (overwritten); CXI when it ends in ``.cxi``, else ptychodus's ``.h5``.
    obj : :obj:`numpy.ndarray`
        Complex object ``(n0, n1)``.
    probe : :obj:`numpy.ndarray`
        Complex probe ``(Np, Np)``.
    positions_px : :obj:`numpy.ndarray`
        ``(J, 2)`` top-left (row, col) window positions in object pixels.
    pixel_size_m : :obj:`float`
        Object (and probe) pixel size in metres.
    energy_kev : :obj:`float`, optional
        Beam energy in keV.
    distance_m : :obj:`float`, optional
        Sample-detector distance in metres.
    origin_m : :obj:`tuple`, optional
        ``(y, x)`` position in metres of object pixel (0, 0).
    name : :obj:`str`, optional
        Product name (``entry_1/title`` of a CXI file, the ``name`` attribute of an ``.h5``).
    cxi : :obj:`bool`, optional
        Write a CXI product (else ptychodus's ``.h5``); default: whether ``path`` ends in ``.cxi``.
    """
    obj = np.asarray(obj, dtype=complex)
    probe = np.asarray(probe, dtype=complex)
    npx = probe.shape[-1]
    origin = np.asarray(origin_m, dtype=float)
    yx = origin + (np.asarray(positions_px, dtype=float) + (npx - 1) / 2) * pixel_size_m
    centre = origin + (np.asarray(obj.shape, dtype=float) - 1) / 2 * pixel_size_m
    energy_ev = energy_kev * 1e3
    indexes = np.arange(len(yx), dtype=np.int64)
    with h5py.File(path, "w") as f:
        if str(path).endswith(".cxi") if cxi is None else cxi:
            f["cxi_version"] = 160
            f["entry_1/title"] = name
            f[TRANSLATION] = np.stack([yx[:, 1], yx[:, 0], np.zeros(len(yx))], axis=1)
            f[TRANSLATION].attrs[REFERENCE_ATTR] = "centre"
            f["entry_1/data_1/translation"] = h5py.SoftLink("/" + TRANSLATION)
            f[ENERGY] = energy_ev * EV_J
            f[DISTANCE] = distance_m
            f["entry_1/image_1/data"] = probe[None, None]
            f["entry_1/image_1/data"].attrs["axes"] = "coherent:incoherent:y:x"
            f["entry_1/image_1/image_size"] = [pixel_size_m * npx, pixel_size_m * probe.shape[-2], 0.0]
            f["entry_1/instrument_1/source_1/illumination"] = h5py.SoftLink("/entry_1/image_1/data")
            f["entry_1/image_2/data"] = obj[None]
            f["entry_1/image_2/data"].attrs["axes"] = "layer:y:x"
            f["entry_1/image_2/image_size"] = [pixel_size_m * obj.shape[1], pixel_size_m * obj.shape[0], 0.0]
            pt = "entry_1/ptychodus/"
            f[pt + "probe_position_indexes"] = indexes
            for k in ("probe_pixel_width_m", "probe_pixel_height_m", "object_pixel_width_m", "object_pixel_height_m"):
                f[pt + k] = pixel_size_m
            f[pt + "object_center_x_m"], f[pt + "object_center_y_m"] = centre[1], centre[0]
            return
        f.attrs.update({"name": name, "comments": "written by mmip", "detector_object_distance_m": distance_m,
                        "photon_energy_eV": energy_ev, "far_field": True})
        f[H5_INDEXES] = indexes
        f[H5_X], f[H5_Y] = yx[:, 1], yx[:, 0]
        f[H5_PROBE] = probe[None, None]
        f[H5_PROBE].attrs.update({"pixel_width_m": pixel_size_m, "pixel_height_m": pixel_size_m})
        f["object"] = obj[None]
        f["object"].attrs.update({"center_x_m": centre[1], "center_y_m": centre[0], "pixel_width_m": pixel_size_m,
                                  "pixel_height_m": pixel_size_m})
        f["object_layer_spacing_m"] = np.zeros(0)
        f["loss_epochs"], f["loss_values"] = np.zeros(0, dtype=np.int64), np.zeros(0)
