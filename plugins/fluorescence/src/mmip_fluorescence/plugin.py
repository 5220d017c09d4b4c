"""Registers the ``fluorescence`` modality."""

import warnings

import numpy as np
from mmip_scanprobe import REFINABLE

from multimodal_ip import hookimpl
from multimodal_ip.errors import ConfigError, DataError, ShapeError


class Fluorescence:
    """The ``fluorescence`` modality: ``/terms/<name>`` holds data (Ne, J), kernel (Kh, Kw), positions (J, 2).

    Options of :meth:`build_term`: ``loss`` (``"least-squares"``, the paper's, or ``"poisson"``), ``method``
    (:class:`FluorescenceMap`), ``refine`` (``"probe"``: the footprint becomes :math:`c|P|^2` of the shared
    probe unknown, :math:`c` = sum(kernel) / sum(|P_0|^2); ``"positions"``: shared with the scan when the XRF
    was measured at the same positions), ``calibration`` (start values offered by other terms),
    ``photon_weighted`` (Poisson likelihood in counts from ``photons_per_unit``), ``dtype``.
    """

    inputs = ("w",)
    refinable = REFINABLE
    #: keyword options of :meth:`build_term`
    options = ("loss", "dtype", "method", "refine", "calibration", "photon_weighted", "implementation")
    #: per-position axis of each dataset (MPI ranks and chunks take contiguous shares)
    #: the datasets of a term group this modality reads (the loader reads no others)
    datasets = ("data", "kernel", "positions")
    #: read in the run's precision (a float64 file in a float32 run holds no float64 copy); integer counts accepted
    measurements = ("data",)
    #: calibration unknowns with one entry per scan position (split with the data)
    split_unknowns = ("positions",)
    split_axes = {"data": 1, "positions": 0}
    #: weighted against the reference term (ptychography) by the paper's balancing
    balance_role = "weighted"

    def temporaries(self, td):
        """Nothing grows with the positions: a sparse scan is gathered a block of positions at a time (the
        block sized by the memory target per block, ``--chunk-memory``), a dense one correlated by FFT over the
        object."""
        return 0.0

    def working_memory(self, td, space, dtype, chunk_bytes=None):
        """Bytes one objective + gradient allocates besides its data and the problem's vectors (the run's memory
        budget, :mod:`multimodal_ip.run_budget`): the maps' accumulator and gradient and one block of windows
        (``chunk_bytes``, else 16 MB); a full grid is correlated by FFT over the padded object (four complex
        spectra per element)."""
        if "w" not in space:
            return 0
        ne, shape = space["w"].shape[0], space["w"].shape[1:]
        n2, item = int(np.prod(shape)), np.dtype(dtype).itemsize
        kh, kw = (np.shape(td.arrays["kernel"]) + (0, 0))[:2] if "kernel" in td.arrays else (0, 0)
        # called before the term's checks (the budget is fitted before the data are read): the shapes are unchecked
        npos = np.shape(td.arrays["positions"])[:1] if "positions" in td.arrays else ()
        if npos and npos[0] >= n2 // 2:  # the full grid
            return int(4 * ne * (shape[0] + kh) * (shape[1] + kw) * 2 * item + 2 * ne * n2 * item)
        return int(2 * ne * n2 * item + (chunk_bytes or 16 << 20))

    def calibration(self, td):
        """What this term offers the others: its element names (the coupling of a ptychography term reads them)."""
        return {"elements": np.array([str(e) for e in np.atleast_1d(td.attrs["elements"])])} \
            if "elements" in td.attrs else {}

    def variables(self, td):
        """``w`` (Ne, n0, n1): Ne from the data's rows; the map shape from the attribute ``object_shape``, else
        from ``grid_shape`` when the positions are the full grid (a map value at every object pixel), else from
        the scan's extent (last corner + kernel, the rule ptychography infers ``x`` by) when every window lies
        inside the object (no negative corner: XRF measured at the scan positions)."""
        from multimodal_ip import Variable

        from .fluorescence_map import full_grid_positions

        if "data" not in td.arrays or len(np.shape(td.arrays["data"])) != 2:
            return []
        ne = int(np.shape(td.arrays["data"])[0])
        if "object_shape" in td.attrs:
            return [Variable("w", (ne, *(int(s) for s in np.atleast_1d(td.attrs["object_shape"]))))]
        if "kernel" not in td.arrays or "positions" not in td.arrays or len(np.shape(td.arrays["kernel"])) != 2:
            return []
        kernel = np.shape(td.arrays["kernel"])
        pos = td.array("positions", ndim=2, dtype_kind="fiu")
        if "grid_shape" in td.attrs:
            grid = tuple(int(s) for s in np.atleast_1d(td.attrs["grid_shape"]))
            full = full_grid_positions(grid, kernel)
            if pos.shape == full.shape and np.array_equal(pos, full):
                return [Variable("w", (ne, *grid))]
        if pos.shape[0] == 0 or pos.shape[1] != 2 or pos.min() < 0:  # windows over the edge: the extent says nothing
            return []
        return [Variable("w", (ne, *(int(np.ceil(pos[:, i].max())) + int(kernel[i]) for i in range(2))))]

    def example_term(self, rng):
        """Two elements on a 9 x 9 full grid, a 3 x 3 kernel, noise-free counts."""
        from multimodal_ip import Variable
        from multimodal_ip.io import TermData

        from .fluorescence_map import FluorescenceMap, full_grid_positions

        n, k, ne = 9, 3, 2
        kernel = rng.random((k, k))
        pos = full_grid_positions((n, n), (k, k))
        data = FluorescenceMap(kernel, pos, (n, n), ne).matvec(rng.random(ne * n * n)).reshape(ne, -1)
        td = TermData("fluorescence", "fluorescence", {"data": data, "kernel": kernel, "positions": pos},
                      {"grid_shape": np.array([n, n])})
        return td, [Variable("w", (ne, n, n))]

    def build_term(self, td, space, loss="least-squares", xp=None, dtype=None, method="auto", refine=(),
                   calibration=None, photon_weighted=False, implementation="hand-written", **options):
        from multimodal_ip import DataTerm
        from multimodal_ip.losses import LeastSquares, Poisson

        from .fluorescence_model import FluorescenceModel

        if options:
            msg = (f"{td.where()}: unknown fluorescence option(s) {sorted(options)}; known: loss, dtype, method, "
                   "refine, calibration, photon_weighted, implementation")
            raise ConfigError(msg)
        if implementation not in ("hand-written", "jax") or (implementation == "jax" and refine):
            msg = (f"{td.where()}: fluorescence implementation must be 'hand-written' or 'jax' (a fixed footprint, "
                   f"nothing refined); got {implementation!r} with refine {list(refine)}")
            raise ConfigError(msg)
        if "w" not in space:
            msg = f"{td.where()}: fluorescence needs variable 'w'; the file declares {space.names}"
            raise DataError(msg)
        ne, n0, n1 = space["w"].shape
        data = td.array("data", ndim=2, dtype_kind="fiu", shape=(ne, None))  # maps, or integer counts (cast below)
        kernel = td.array("kernel", ndim=2, dtype_kind="f")
        positions = td.array("positions", shape=(data.shape[1], 2), dtype_kind="fiu").astype(float)
        if td.minimum("data") < 0 or np.any(kernel < 0):  # the data block by block: no data-sized boolean array
            msg = f"{td.where()}: fluorescence data and kernel must be non-negative"
            raise DataError(msg)
        dtype = np.dtype(dtype or space.dtype)
        xp = xp or np
        refine = _shared_refinement(td, refine, calibration or {}, positions)
        try:
            if refine:
                probe = np.asarray(calibration["probe"])
                if probe.shape != kernel.shape:
                    msg = f"{td.where('kernel')}: shape {kernel.shape} differs from the probe's {probe.shape}"
                    raise DataError(msg)
                scale = float(kernel.sum() / max(float(np.sum(np.abs(probe) ** 2)), 1e-300))
                op = FluorescenceModel(xp.asarray(probe), positions, (n0, n1), ne, kernel_scale=scale, refine=refine,
                                       dtype=dtype, method=method)
            else:
                op = _fixed_map(xp.asarray(kernel), positions, (n0, n1), ne, dtype, method).as_operator() \
                    if implementation == "hand-written" else _jax_map(td, kernel, positions, (n0, n1), ne, dtype)
        except ShapeError as exc:
            msg = f"{td.where('positions')}: {exc}"
            raise DataError(msg) from None
        photons = td.attr("photons_per_unit") if photon_weighted else td.attr("photons_per_unit", 1.0)
        if (photon_weighted or loss == "poisson") and not (np.isfinite(photons) and photons > 0):
            msg = (f"{td.where()}: attribute photons_per_unit = {photons!r} must be finite and > 0 for a photon-count "
                   "likelihood (a noise-free simulation has no photon scale)")
            raise DataError(msg)
        if photon_weighted or loss == "poisson":
            lossfn = Poisson(photons_per_unit=photons, intensity=True)
        elif loss == "least-squares":
            lossfn = LeastSquares()
        else:
            msg = f"fluorescence loss must be 'least-squares' or 'poisson'; got {loss!r}"
            raise ConfigError(msg)
        return DataTerm(op, xp.asarray(data.astype(dtype, copy=False)), lossfn, 1.0, (*self.inputs, *refine), td.name)

    def autodiff_cases(self, rng):
        """The hand-written model beside its JAX form (:mod:`.jax_model`): the conformance kit compares them."""
        from .jax_model import autodiff_cases

        return autodiff_cases(rng)

    def conformance_cases(self, rng):
        from mmip_scanprobe import AFFINE_SIZE

        from multimodal_ip.operators import Linear

        from .fluorescence_map import FluorescenceMap, full_grid_positions
        from .fluorescence_model import FluorescenceModel

        for n, k, ne, method in ((7, 3, 1, "gather"), (9, 4, 2, "fft"), (6, 5, 3, "auto")):
            kernel = rng.random((k, k))
            pos = full_grid_positions((n, n), (k, k))
            op = Linear(FluorescenceMap(kernel, pos, (n, n), ne, method=method), name=f"FluorescenceMap[{method}]")
            yield f"n{n}-K{k}-Ne{ne}-{method}", op, rng.random((ne, n, n))
        n, k = 10, 4
        probe = rng.standard_normal((k, k)) + 1j * rng.standard_normal((k, k))
        scan = np.clip(full_grid_positions((n, n), (k, k))[::7] + rng.uniform(-0.2, 0.2, (15, 2)), -2.7, n - 1.3)
        for refine, pos in (((), scan), (("probe",), full_grid_positions((n, n), (k, k))), (("positions",), scan),
                            (("probe", "positions"), scan), (("positions", "affine"), scan)):
            op = FluorescenceModel(probe, pos, (n, n), 2, kernel_scale=0.5, refine=refine)
            v = [rng.random(2 * n * n)] + [probe.view(float).ravel()] * ("probe" in refine) \
                + [pos.ravel()] * ("positions" in refine) + [rng.uniform(-0.1, 0.1, AFFINE_SIZE)] * ("affine" in refine)
            yield "probe-footprint-" + "-".join(refine or ("none",)), op, np.concatenate(v)


def _shared_refinement(td, refine, calibration, positions):
    """The calibration unknowns this term can read: the probe, and the positions and their affine map only when
    the XRF was measured at the scan positions (a separate XRF grid keeps its own, fixed positions)."""
    refine = tuple(refine)
    if refine and "probe" not in calibration:
        msg = f"{td.where()}: refining {list(refine)} needs a probe offered by another term (e.g. ptychography)"
        raise ConfigError(msg)
    moving = [r for r in refine if r in ("positions", "affine")]
    if moving:
        scan = np.asarray(calibration.get("positions", np.empty((0, 2))))
        if scan.shape != positions.shape or not np.allclose(scan, positions):
            warnings.warn(f"{td.where('positions')}: the XRF positions are not the scan positions; they stay fixed "
                          f"(only the probe is shared, not {' or '.join(moving)})", stacklevel=3)
            refine = tuple(r for r in refine if r not in moving)
    return refine


def _jax_map(td, kernel, positions, object_shape, ne, dtype):
    """The JAX form of the fixed map (:mod:`.jax_model`), its limits named with the term's file."""
    from .jax_model import fluorescence_autodiff

    try:
        return fluorescence_autodiff(kernel, positions, object_shape, ne, dtype)
    except ConfigError as exc:
        msg = f"{td.where('positions')}: {exc}"
        raise ConfigError(msg) from None


def _fixed_map(kernel, positions, object_shape, ne, dtype, method):
    """:class:`FluorescenceMap` at whole-pixel corners; fractional positions get a Fourier-shifted footprint each
    (made a block of positions at a time: no (J, Kh, Kw) stack)."""
    from mmip_scanprobe import split_positions

    from .fluorescence_map import FluorescenceMap

    corners, fractions = split_positions(positions, object_shape, kernel.shape, allow_outside=True)
    if np.any(fractions != 0):
        return FluorescenceMap(kernel, corners, object_shape, ne, dtype=dtype, method="gather", fractions=fractions)
    return FluorescenceMap(kernel, corners, object_shape, ne, dtype=dtype, method=method)


@hookimpl
def mmip_register_modalities(register):
    register("fluorescence", Fluorescence())


class MapsImporter:
    """``mmip import --xrf maps.h5``: MAPS fitted maps placed on the ptychography frame, kernel = |probe|^2."""

    flag = "xrf"
    help = "MAPS-style HDF5 (/MAPS/XRF_Analyzed/Fitted/Counts_Per_Sec, x_axis, y_axis); needs --ptycho"
    order = 10
    #: options of this importer (flags of ``mmip import``)
    options = {"xrf_axis_unit": {"type": float, "default": 1e-6, "help": "metres per unit of the MAPS axes (um)"}}

    def read_bytes(self, path, context) -> int:
        """Bytes the import holds at its peak, from the file's structure (nothing read): the maps and channel names
        as stored, the maps' float64 copy and the beam positions' grids (``maps._kernel_corners``: 9 float64 pairs
        per map pixel; ``mmip import`` plans the command with it; docs/plugins.md).

        Parameters
        ----------
        path : :obj:`str`
            The XRF-Maps file.
        context : :obj:`dict`
            The import's context (``allow_external``).

        Returns
        -------
        nbytes : :obj:`int`
            The bytes; 0 when the file has no maps (the import refuses it by name).
        """
        import h5py

        from multimodal_ip.io.dataset import open_h5, resolve

        from .maps import CHANNELS, LAYOUTS

        ext = context.get("allow_external", False)
        with open_h5(path) as f:
            layout = next(((d, n) for k, n in LAYOUTS if (d := resolve(path, f, k, ext)) is not None), (None, None))
            d = layout[0]
            if not isinstance(d, h5py.Dataset) or len(d.shape) != 3:
                return 0
            names = [resolve(path, f, k, ext) for k in (layout[1], CHANNELS)]  # their strings, as stored
            text = sum(int(np.prod(n.shape, dtype=np.float64)) * n.dtype.itemsize for n in names
                       if isinstance(n, h5py.Dataset))
            values = int(np.prod(d.shape, dtype=np.float64))  # as stored and their float64 copy (maps._read_real)
            return values * (d.dtype.itemsize + 8) + 144 * d.shape[1] * d.shape[2] + text

    def __call__(self, path, context):
        from .maps import import_maps

        if "frame" not in context:
            msg = "importing XRF needs the ptychography scan first (its frame and probe): give --ptycho too"
            raise ConfigError(msg)
        return import_maps(path, context["frame"], np.abs(context["probe"]) ** 2,
                           axis_unit_m=context.get("xrf_axis_unit", 1e-6),
                           allow_external=context.get("allow_external", False))


@hookimpl
def mmip_register_importers(register):
    register("maps", MapsImporter())


@hookimpl
def mmip_register_exporters(register):
    from .maps_export import MapsExporter

    register("xrf-maps", MapsExporter())
