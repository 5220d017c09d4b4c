"""``mmip export RESULT --format ptychodus|cxi``: a ptychography reconstruction as a ptychodus product (object
:math:`z = x + i \\sum_e a_e w_e`, probe, positions: refined where the run refined them), written by
:func:`~mmip_ptychography.product.export_product`."""

__all__ = ["ProductExporter"]

import numpy as np
from mmip_scanprobe import ObjectFrame

from multimodal_ip.errors import DataError

from .coupling import term_coefficients


def _term(context, where):
    """The run's ptychography term (its probe, positions, frame attributes)."""
    dataset = context.get("dataset")
    if dataset is None:
        msg = f"{where}: exporting a ptychodus product needs the run's data file (not found): give --data FILE"
        raise DataError(msg)
    term = next((td for td in dataset.terms.values() if td.modality == "ptychography"), None)
    if term is None:
        msg = f"{context.get('data')}: no ptychography term (the run's data): nothing to export as a product"
        raise DataError(msg)
    return term


def _frame(context) -> ObjectFrame:
    """``(pixel_size_m, origin_m)`` of the data file's object grid (root attributes that ``mmip import`` writes)."""
    frame = ObjectFrame.from_attrs(context["dataset"].attrs)
    if frame is None:
        msg = (f"{context.get('data')}: no object frame (root attributes pixel_size_m and origin_m, which `mmip "
               f"import` writes): a product needs positions in metres; "
               f"{ObjectFrame.why_not(context['dataset'].attrs)}")
        raise DataError(msg)
    return frame


def _object(result, term, where) -> np.ndarray:
    """:math:`z = x + i \\sum_e a_e w_e` with the run's coupling (its option, else the term's attribute)."""
    v = result["variables"]
    if "x" not in v:
        msg = f"{where}:/results/variables: no x (not a ptychography reconstruction)"
        raise DataError(msg)
    loosened = sorted(k for k in ("coupling", "matrix") if k in v)
    if loosened:
        msg = (f"{where}: the run refined {', '.join(loosened)} (the loosened phase tie); exporting it as a product "
               "is not supported")
        raise DataError(msg)
    x = np.asarray(v["x"], dtype=float)
    if "w" not in v:
        return x.astype(complex)
    w = np.asarray(v["w"], dtype=float)
    coef = term_coefficients(term.attrs, w.shape[0], result["config"].get("coupling"))
    return x + 1j * np.tensordot(coef, w, axes=1)


def _positions(result, term, shape) -> np.ndarray:
    """The positions the run ended with: the refined ``positions``, moved by a refined ``affine``; else the
    term's."""
    from mmip_scanprobe import affine_positions

    v = result["variables"]
    nominal = np.asarray(term.arrays["positions"], dtype=float)
    pos = np.asarray(v.get("positions", nominal), dtype=float)
    if "affine" in v:
        window = np.shape(term.arrays["probe"])
        pos = np.asarray(affine_positions(nominal, np.asarray(v["affine"]), shape, window, base=pos))
    return pos


class ProductExporter:
    """Writes the result of a ptychography run as a ptychodus product: ptychodus's ``.h5`` (``cxi=False``) or a
    CXI product; ``mmip import --ptycho DIFFRACTION --product FILE`` and ptychodus's product readers read it.

    Parameters
    ----------
    cxi : :obj:`bool`
        Write a CXI product (else ptychodus's ``.h5``).
    """

    #: copies of the result's variables the export holds at its peak (``mmip export`` plans with it; measured)
    copies = 6

    def __init__(self, cxi: bool):
        self.cxi = cxi
        what = "a CXI product (.cxi)" if cxi else "a ptychodus product (.h5, ptychodus's save_product layout)"
        self.help = f"{what}: object x + i sum a_e w_e, probe, positions (refined where refined)"

    def __call__(self, result, context, path):
        from .product import export_product

        where = context.get("result", "result")
        term = _term(context, where)
        pixel, origin = _frame(context)
        obj = _object(result, term, where)
        probe = np.asarray(result["variables"].get("probe", term.arrays["probe"]))
        positions = _positions(result, term, obj.shape)
        energy = float(term.attrs.get("photon_energy_eV", np.nan))
        distance = float(term.attrs.get("detector_distance_m", np.nan))
        export_product(path, obj, probe, positions, pixel, energy_kev=energy / 1e3, distance_m=distance,
                       origin_m=origin, name=str(result["config"].get("data", "mmip")), cxi=self.cxi)
