"""``mmip export RESULT --format xrf-maps``: the reconstructed element maps ``w`` as an XRF-Maps v10 file, one map
per element on the object grid (:func:`~mmip_fluorescence.maps.export_maps`)."""

__all__ = ["MapsExporter"]

import numpy as np
from mmip_scanprobe import ObjectFrame

from multimodal_ip.errors import DataError


def _frame(context, where) -> ObjectFrame:
    """Where object pixel (r, c) sits: the data file's root attributes ``pixel_size_m`` and ``origin_m``."""
    attrs = getattr(context.get("dataset"), "attrs", None)
    frame = ObjectFrame.from_attrs(attrs)
    if frame is None:
        found = context.get("data") or "the run's data file (not found: give --data FILE)"
        msg = (f"{where}: XRF-Maps axes need the object frame, root attributes pixel_size_m and origin_m of "
               f"{found} (`mmip import` writes them): {ObjectFrame.why_not(attrs)}")
        raise DataError(msg)
    return frame


def _elements(context, ne) -> list:
    """The element names of the run's terms (the fluorescence term's, else any term's ``elements``)."""
    terms = getattr(context.get("dataset"), "terms", None) or {}
    ordered = sorted(terms.values(), key=lambda td: td.modality != "fluorescence")
    for td in ordered:
        names = td.attrs.get("elements")
        if names is not None and np.size(names) == ne:
            return [str(e) for e in np.atleast_1d(names)]
    return [f"E{e}" for e in range(ne)]


class MapsExporter:
    """Writes ``w`` (Ne, n0, n1) of a result as XRF-Maps v10 (``/MAPS/XRF_Analyzed/Fitted/Counts_Per_Sec``, its
    ``Channel_Names``, ``/MAPS/Scan/{x,y}_axis`` at the object pixels' centres in micrometres), which
    ``mmip import --xrf`` and ptychodus's XRF-Maps reader read. The values are the reconstruction's (the unit of
    ``w``), not counts per second."""

    help = "the element maps w as XRF-Maps v10 (maps, channel names, x/y axes in um on the object grid)"
    #: copies of the result's variables the export holds at its peak (``mmip export`` plans with it; measured)
    copies = 12

    def __call__(self, result, context, path):
        from multimodal_ip.io import TermData

        from .maps import export_maps

        where = context.get("result", "result")
        w = result["variables"].get("w")
        if w is None or np.ndim(w) != 3:
            msg = f"{where}:/results/variables: no element maps w (Ne, n0, n1) to export"
            raise DataError(msg)
        w = np.asarray(w, dtype=float)
        ne, n0, n1 = w.shape
        frame = _frame(context, where)
        corners = np.stack(np.meshgrid(np.arange(n0), np.arange(n1), indexing="ij"), axis=-1).reshape(-1, 2)
        term = TermData("maps", "fluorescence", {"data": w.reshape(ne, -1), "kernel": np.ones((1, 1)),
                                                 "positions": corners.astype(float)},
                        {"grid_shape": np.array([n0, n1]), "elements": _elements(context, ne)})
        export_maps(path, term, frame)
