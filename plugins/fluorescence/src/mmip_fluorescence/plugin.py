"""Registers the ``fluorescence`` modality."""

import numpy as np

from multimodal_ip import DataTerm, hookimpl
from multimodal_ip.errors import ConfigError, DataError, ShapeError
from multimodal_ip.losses import LeastSquares, Poisson
from multimodal_ip.operators import Linear

from .fluorescence_map import FluorescenceMap, full_grid_positions


class Fluorescence:
    """The ``fluorescence`` modality: ``/terms/<name>`` holds data (Ne, J), kernel (Kh, Kw), positions (J, 2)."""

    inputs = ("w",)
    #: per-position axis of each dataset (MPI ranks read only their share)
    position_axes = {"data": 1, "positions": 0}

    def build_term(self, td, space, loss="least-squares", xp=None, dtype=None, method="auto", **options):
        if options:
            msg = f"{td.where()}: unknown fluorescence option(s) {sorted(options)}; known: loss, dtype, method"
            raise ConfigError(msg)
        if "w" not in space:
            msg = f"{td.where()}: fluorescence needs variable 'w'; the file declares {space.names}"
            raise DataError(msg)
        ne, n0, n1 = space["w"].shape
        data = td.array("data", ndim=2, dtype_kind="f", shape=(ne, None))
        kernel = td.array("kernel", ndim=2, dtype_kind="f")
        positions = td.array("positions", shape=(data.shape[1], 2), dtype_kind="fiu")
        if np.any(data < 0) or np.any(kernel < 0):
            msg = f"{td.where()}: fluorescence data and kernel must be non-negative"
            raise DataError(msg)
        dtype = np.dtype(dtype or space.dtype)
        xp = xp or np
        try:
            op = FluorescenceMap(xp.asarray(kernel), positions, (n0, n1), ne, dtype=dtype, method=method)
        except ShapeError as exc:
            msg = f"{td.where('positions')}: {exc}"
            raise DataError(msg) from None
        if loss == "least-squares":
            lossfn = LeastSquares()
        elif loss == "poisson":
            lossfn = Poisson(photons_per_unit=td.attr("photons_per_unit", 1.0), intensity=True)
        else:
            msg = f"fluorescence loss must be 'least-squares' or 'poisson'; got {loss!r}"
            raise ConfigError(msg)
        return DataTerm(Linear(op, name="FluorescenceMap"), xp.asarray(data.astype(dtype)), lossfn, 1.0,
                        self.inputs, td.name)

    def conformance_cases(self, rng):
        for n, k, ne, method in ((7, 3, 1, "gather"), (9, 4, 2, "fft"), (6, 5, 3, "auto")):
            kernel = rng.random((k, k))
            pos = full_grid_positions((n, n), (k, k))
            op = Linear(FluorescenceMap(kernel, pos, (n, n), ne, method=method), name=f"FluorescenceMap[{method}]")
            yield f"n{n}-K{k}-Ne{ne}-{method}", op, rng.random((ne, n, n))


@hookimpl
def mmip_register_modalities(register):
    register("fluorescence", Fluorescence())


def _maps_importer(path, context):
    """``mmip import --xrf``: MAPS fitted maps placed on the ptychography frame, kernel = |probe|^2."""
    from .maps import import_maps

    if "frame" not in context:
        msg = "importing XRF needs the ptychography scan first (its frame and probe): give --ptycho too"
        raise ConfigError(msg)
    return import_maps(path, context["frame"], np.abs(context["probe"]) ** 2,
                       axis_unit_m=context.get("xrf_axis_unit_m", 1e-6))


@hookimpl
def mmip_register_importers(register):
    register("maps", _maps_importer)
