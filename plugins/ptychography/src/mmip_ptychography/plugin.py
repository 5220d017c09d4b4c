"""Registers the ``ptychography`` modality."""

import numpy as np
from mmip_scanprobe import AFFINE_SIZE, REFINABLE

from multimodal_ip import hookimpl
from multimodal_ip.errors import ConfigError, DataError, ShapeError

from .coupling import DEFAULT_MATRIX_SMOOTHING_PX, MODEL_UNKNOWNS, global_phase, parse_coupling
from .curvature import PtychographyCurvature
from .probe import fresnel_zone_plate_probe
from .scan import raster_positions
from .scan_checks import LOW_OVERLAP, _loss, _read_scan, _warn_low_overlap, scan_overlap  # noqa: F401 (re-exported)


def ptychography_operator(probe, positions_px, object_shape, n_elements, dtype="float64", coefficients=None,
                          block=None):
    r"""The paper's ptychography model on the packed real ``[x; w]``: :math:`\Psi = F(P S_j (x + i\sum_e w_e))`,
    streamed over blocks of ``block`` positions: a :class:`~mmip_ptychography.PtychographyModel` with nothing refined
    (whole-pixel positions take its plain-window path).

    Parameters
    ----------
    probe : :obj:`numpy.ndarray`
        Complex probe ``(Np0, Np1)``.
    positions_px : :obj:`numpy.ndarray`
        ``(J, 2)`` top-left (row, col) window positions in object pixels.
    object_shape : :obj:`tuple`
        ``(n_rows, n_cols)`` of the object.
    n_elements : :obj:`int`
        Number of element maps :math:`w_e`.
    dtype : :obj:`str`, optional
        Real input dtype (``float32`` or ``float64``).
    coefficients : array-like, optional
        Coupling :math:`a_e` (default ones).
    block : :obj:`int`, optional
        Positions per block (default: about 4 MB of spectra).

    Returns
    -------
    model : :obj:`mmip_ptychography.PtychographyModel`
        The operator from ``[x; w]`` to the exit-wave spectra ``(J, Np0, Np1)``.
    """
    from .ptychography_model import PtychographyModel

    return PtychographyModel(probe, positions_px, object_shape, n_elements, coefficients=coefficients, dtype=dtype,
                             block=block)


class Ptychography:
    """The ``ptychography`` modality: builds the term from ``/terms/<name>`` (data, probe, positions).

    Options of :meth:`build_term`: ``loss`` (``"amplitude"``, the paper's, or ``"poisson"``), ``refine``
    (``"probe"``, ``"positions"``, ``"affine"``: calibration unknowns read besides ``x`` and ``w``), ``coupling`` (see
    :func:`~mmip_ptychography.coupling.parse_coupling`; default the term's ``coupling`` attribute, else ones),
    ``photon_weighted`` (the loss in photon counts, from ``photons_per_unit``: amplitude gets weight
    :math:`4p`, the variance-stabilised Poisson likelihood; Poisson is the exact one), ``matrix_smoothing_px``
    (the Gaussian smoothing of a refined ``matrix``, :mod:`~mmip_ptychography.phase_matrix`), ``dtype``. ``refine``
    also takes ``"coupling"`` and ``"matrix"``: the phase the element maps do not explain (docs/real_samples.md).
    ``windows``: how fractional windows are sampled, ``"cubic"`` or ``"band-limited"`` (Fourier-shifted, as the
    paper's simulator makes jittered data; fixed positions, or refined ``positions`` that only the term's estimator
    moves, ``--solver-option calibration=estimator``); ``"auto"`` (default): band-limited while the positions are
    fixed, cubic when they are refined (whole-pixel fixed positions take plain windows either way).
    """

    inputs = ("x", "w")
    refinable = (*REFINABLE, *MODEL_UNKNOWNS)
    #: model alternatives ``mmip tune`` tries after its grid (docs/real_samples.md: the 2 px matrix for a rough one)
    models = ("matrix", "coupling", "matrix+coupling", "matrix+coupling@matrix_smoothing_px=2")
    #: keyword options of :meth:`build_term`
    options = ("loss", "dtype", "refine", "calibration", "coupling", "photon_weighted", "matrix_smoothing_px",
               "implementation", "windows")
    #: per-position axis of each dataset (MPI ranks and chunks take contiguous shares)
    #: the datasets of a term group this modality reads (the loader reads no others)
    datasets = ("data", "probe", "positions")
    #: read compactly: a detector's integer counts stay integers, float64 intensities are read in a float32 run's
    #: precision without a float64 copy
    measurements = ("data",)
    #: calibration unknowns with one entry per scan position (split with the data)
    split_unknowns = ("positions",)
    split_axes = {"data": 0, "positions": 0}
    #: the paper's balancing keeps ptychography at weight 1 and weights the other terms against it
    balance_role = "reference"

    def variables(self, td):
        """``x`` from the attribute ``object_shape``, else from the scan's extent (last corner + window); ``w``
        only when the term names its elements (``elements``); otherwise another term or ``/variables`` says."""
        from multimodal_ip import Variable

        npx = np.shape(td.arrays["probe"]) if "probe" in td.arrays else None
        if "object_shape" in td.attrs:
            shape = tuple(int(s) for s in np.atleast_1d(td.attrs["object_shape"]))
        elif npx is not None and "positions" in td.arrays:
            pos = td.array("positions", ndim=2, dtype_kind="fiu")
            shape = tuple(int(np.ceil(pos[:, i].max())) + int(npx[i]) for i in range(2))
        else:
            return []
        out = [Variable("x", shape)]
        if "elements" in td.attrs:
            out.append(Variable("w", (len(np.atleast_1d(td.attrs["elements"])), *shape)))
        return out

    def example_term(self, rng):
        """A 12 x 12 object, 4 x 4 probe, 16 positions with sub-pixel offsets, noise-free intensities."""
        from multimodal_ip import Variable
        from multimodal_ip.io import TermData

        from .ptychography_model import PtychographyModel

        n, npx = 12, 4
        probe = rng.standard_normal((npx, npx)) + 1j * rng.standard_normal((npx, npx))
        pos = raster_positions(n, npx, step_px=2)[:16] + rng.uniform(0, 0.4, (16, 2))
        op = PtychographyModel(probe, pos, (n, n), 1)
        psi = op.forward(1 + 0.1 * rng.random(2 * n * n))
        data = np.abs(np.asarray(psi)) ** 2
        td = TermData("ptychography", "ptychography", {"data": data, "probe": probe, "positions": pos})
        return td, [Variable("x", (n, n)), Variable("w", (1, n, n))]

    def temporaries(self, td):
        """The model is streamed (one block of positions at a time): no temporaries grow with the scan."""
        return 0.0

    def working_memory(self, td, space, dtype, chunk_bytes=None):
        """Bytes one objective + gradient allocates besides its data and the problem's vectors (the run's memory
        budget, :mod:`multimodal_ip.run_budget`): the complex object and its gradient accumulator, the real gradient
        of ``x`` and ``w``, and one block's temporaries (``chunk_bytes``, else the default block's)."""
        from multimodal_ip.operators.streamed import BLOCK_TEMPORARIES, STREAM_BLOCK_BYTES

        n2 = int(np.prod(space["x"].shape)) if "x" in space else 0
        ne = space["w"].shape[0] if "w" in space else 0
        return int((2 * 2 + 1 + ne) * n2 * np.dtype(dtype).itemsize + (chunk_bytes or BLOCK_TEMPORARIES *
                                                                         STREAM_BLOCK_BYTES))

    def calibration(self, td):
        """Start values this term offers for refinement: its probe, its scan positions, the identity of the
        positions' global affine map (``affine``: :func:`~mmip_scanprobe.affine_positions`, zeros), the change of
        the coupling factors (``coupling``: zeros, one per element when the term names its elements or
        coefficients, else one global phase scale; :class:`~mmip_ptychography.PhaseCoupling`) and the
        non-fluorescing matrix (``matrix``: zeros of the object's shape)."""
        offers = {"probe": td.array("probe", ndim=2, dtype_kind="cf"),
                  "positions": td.array("positions", ndim=2, dtype_kind="fiu").astype(float),
                  "affine": np.zeros(AFFINE_SIZE)}
        named = td.attrs.get("elements", td.attrs.get("coupling"))
        offers["coupling"] = np.zeros(1 if named is None or isinstance(named, str) else np.size(named))
        declared = self.variables(td)
        shape = declared[0].shape if declared else None
        if shape is not None:
            offers["matrix"] = np.zeros(shape)
        return offers

    def build_term(self, td, space, loss="amplitude", xp=None, dtype=None, refine=(), calibration=None,
                   coupling=None, photon_weighted=False, matrix_smoothing_px=DEFAULT_MATRIX_SMOOTHING_PX,
                   implementation="hand-written", windows="auto", **options):
        from multimodal_ip import DataTerm
        from multimodal_ip.io.dataset import compact_dtype

        from .jax_model import ptychography_autodiff
        from .ptychography_model import PtychographyModel

        if options:
            msg = (f"{td.where()}: unknown ptychography option(s) {sorted(options)}; known: loss, dtype, refine, "
                   "coupling, photon_weighted, matrix_smoothing_px, implementation, windows")
            raise ConfigError(msg)
        _check_implementation(td, implementation, refine, windows)
        model = tuple(r for r in MODEL_UNKNOWNS if r in refine)
        refine = tuple(r for r in refine if r not in MODEL_UNKNOWNS)
        n_shape, ne = self._object_shape(td, space, refine)
        data, probe, positions = _read_scan(td)
        dtype = np.dtype(dtype or space.dtype)
        xp = xp or np
        elements = td.attrs.get("elements", (calibration or {}).get("elements"))  # else the XRF term's names
        elements = None if elements is None else [str(e) for e in np.atleast_1d(elements)]
        coef = parse_coupling(coupling if coupling is not None else td.attrs.get("coupling"), ne, elements)
        try:  # one model: plain windows for fixed whole-pixel positions, cubic-sampled ones otherwise
            if implementation == "jax":  # the second implementation, by automatic differentiation (numpy only)
                op = ptychography_autodiff(probe, positions, n_shape, ne, coef, dtype, refine)
            else:
                op = PtychographyModel(xp.asarray(probe), positions, n_shape, ne, refine=refine, coefficients=coef,
                                       dtype=dtype, windows=windows)
        except ShapeError as exc:
            msg = f"{td.where('positions')}: {exc}"
            raise DataError(msg) from None
        except ConfigError as exc:  # the jax implementation's limits (sub-pixel positions)
            msg = f"{td.where('positions')}: {exc}"
            raise ConfigError(msg) from None
        lossfn = _loss(td, loss, photon_weighted, int(td.attrs.get("split_total", data.shape[0])))
        if "positions" in refine:
            _warn_low_overlap(td, probe, positions)
        inputs = (*self.inputs, *op.refine)
        if data.dtype.kind == "f" or compact_dtype(data.dtype) is not None:  # counts of <= 32 bits stay integers
            data = data.astype(dtype, copy=False)
        if model:  # the loosened tie: a one-map model after the phase map (docs/real_samples.md)
            return self._loosened(td, space, (op, xp.asarray(data), lossfn), model, coef, matrix_smoothing_px)
        data = xp.asarray(data)
        return DataTerm(op, data, lossfn, 1.0, inputs, td.name, invariance=global_phase(coef, ne),
                        curvature=None if implementation == "jax" else PtychographyCurvature(op, lossfn, data),
                        estimator=_position_offer(op, data, td) if "positions" in op.refine else None,
                        photons_per_unit=_photon_scale(td))

    def _loosened(self, td, space, built, model, coef, smoothing):
        """The term of :meth:`build_term` with ``coupling``/``matrix`` refined: :class:`PhaseCoupling` in front of
        a one-map :class:`PtychographyModel` (``built``: the tied model, its data and loss)."""
        from multimodal_ip import DataTerm
        from multimodal_ip.operators import compose

        from .phase_matrix import PhaseCoupling, phase_invariance
        from .ptychography_model import PtychographyModel

        op, data, lossfn = built
        ne = space["w"].shape[0]
        nk = space["coupling"].shape[0] if "coupling" in model else None
        if "matrix" in model and space["matrix"].shape != space["x"].shape:
            msg = (f"{td.where()}: the matrix must have the object's shape {space['x'].shape}; the term offers "
                   f"{space['matrix'].shape} (declare the attribute object_shape)")
            raise DataError(msg)
        single = PtychographyModel(op.probe, op.positions, op.object_shape, 1, refine=op.refine, dtype=op.dtype,
                                   block=op.block, windows=op.windows)
        rest = single.layout.size - single.layout.bounds["main"][1]
        phase = PhaseCoupling(op.object_shape, ne, coef, model, nk, smoothing, rest, op.dtype)
        return DataTerm(compose(single, phase), data, lossfn, 1.0, (*self.inputs, *model, *op.refine),
                        td.name, invariance=phase_invariance(phase), photons_per_unit=_photon_scale(td))

    def _object_shape(self, td, space, refine):
        """``(n_shape, ne)``: the object's shape and element count of ``space``, checked to hold this term's
        variables with ``w`` shaped ``(Ne, *x.shape)``."""
        for v in (*self.inputs, *refine):
            if v not in space:
                msg = f"{td.where()}: ptychography needs variables {self.inputs}; the file declares {space.names}"
                raise DataError(msg)
        n_shape = space["x"].shape
        if space["w"].shape[1:] != n_shape:
            msg = (f"{td.source}:/variables/w: expected shape (Ne, {n_shape[0]}, {n_shape[1]}) like x, got "
                   f"{space['w'].shape} (declared, or inferred from another term's extent: when the terms cover "
                   "different extents, declare /variables/x and /variables/w or the attribute object_shape)")
            raise DataError(msg)
        return n_shape, space["w"].shape[0]

    def autodiff_cases(self, rng):
        """The hand-written model beside its JAX form (:mod:`.jax_model`): the conformance kit compares them."""
        from .jax_model import autodiff_cases

        return autodiff_cases(rng)

    def conformance_cases(self, rng):
        from multimodal_ip.operators import Modulus, compose

        from .phase_matrix import PhaseCoupling
        from .ptychography_model import PtychographyModel

        for n, npx, step, ne in ((12, 4, 3, 1), (16, 8, 4, 2), (9, 5, 2, 3)):
            probe = rng.standard_normal((npx, npx)) + 1j * rng.standard_normal((npx, npx))
            pos = raster_positions(n, npx, step_px=step)
            op = ptychography_operator(probe, pos, (n, n), ne)
            yield f"n{n}-Np{npx}-Ne{ne}", op, 1 + rng.random(n * n * (1 + ne))
        probe = rng.standard_normal((4, 4)) + 1j * rng.standard_normal((4, 4))
        op = ptychography_operator(probe, raster_positions(10, 4, step_px=2), (10, 10), 2)
        yield "amplitude", compose(Modulus(op.dimsd, dtype="complex128"), op), 1 + rng.random(300)
        for refine in ((), ("probe",), ("positions",), ("probe", "positions"), ("affine",), ("positions", "affine")):
            probe = rng.standard_normal((6, 6)) + 1j * rng.standard_normal((6, 6))
            pos = raster_positions(14, 6, step_px=4) + rng.uniform(-0.2, 0.2, (9, 2))
            pos = np.clip(pos, 0.3, 14 - 6 - 0.3)
            op = PtychographyModel(probe, pos, (14, 14), 2, refine=refine, coefficients=[1.0, 0.4])
            v = [1 + rng.random(14 * 14 * 3)] + [probe.view(float).ravel()] * ("probe" in refine) \
                + [pos.ravel()] * ("positions" in refine) + [rng.uniform(-0.1, 0.1, AFFINE_SIZE)] * ("affine" in refine)
            yield "subpixel-refine-" + "-".join(refine or ("none",)), op, np.concatenate(v)
        probe = rng.standard_normal((6, 6)) + 1j * rng.standard_normal((6, 6))  # the loosened tie: coupling, matrix
        single = PtychographyModel(probe, raster_positions(14, 6, step_px=4), (14, 14), 1, refine=("probe",))
        phase = PhaseCoupling((14, 14), 2, [1.0, 0.4], MODEL_UNKNOWNS, 2, 1.5, 2 * 36)
        v = [1 + rng.random(14 * 14 * 3), 1 + 0.1 * rng.random(2), 0.1 * rng.random(14 * 14), probe.view(float).ravel()]
        yield "coupling-matrix-probe", compose(single, phase), np.concatenate(v)
        probe = fresnel_zone_plate_probe(16)
        yield "fzp-probe", ptychography_operator(probe, raster_positions(24, 16, step_px=4), (24, 24), 1), \
            1 + rng.random(24 * 24 * 2)


def _check_implementation(td, implementation, refine, windows="auto"):
    """``implementation``: ``"hand-written"`` (:class:`PtychographyModel`) or ``"jax"`` (:mod:`.jax_model`; whole-pixel
    positions, nothing refined but the probe); ``windows``: ``"auto"``, ``"cubic"`` or ``"band-limited"`` (fixed
    positions, or positions moved by the term's estimator only: not the affine map)."""
    from .band_limited_sampler import WINDOWS

    if windows not in WINDOWS:
        msg = f"{td.where()}: ptychography option windows must be one of {list(WINDOWS)}; got {windows!r}"
        raise ConfigError(msg)
    if windows == "band-limited" and (implementation == "jax" or "affine" in refine):
        msg = (f"{td.where()}: ptychography option windows = {windows!r} takes fixed or estimated positions and the "
               f"hand-written implementation; got refine {list(refine)}, implementation {implementation!r} (use "
               "windows 'cubic')")
        raise ConfigError(msg)
    if implementation not in ("hand-written", "jax"):
        msg = f"{td.where()}: ptychography implementation must be 'hand-written' or 'jax'; got {implementation!r}"
        raise ConfigError(msg)
    if implementation == "jax" and set(refine) - {"probe"}:
        msg = (f"{td.where()}: ptychography implementation 'jax' refines only the probe; got refine {list(refine)} "
               "(the hand-written implementation refines the rest)")
        raise ConfigError(msg)


def _photon_scale(td):
    """The term's noise level offer: ``photons_per_unit`` where finite and > 0 (counts = p * data), else ``None``."""
    p = float(td.attrs.get("photons_per_unit", np.inf))
    return p if np.isfinite(p) and p > 0 else None


def _position_offer(op, data, td):
    """The term's estimator of its positions (:class:`~mmip_ptychography.position_offer.PositionOffer`)."""
    from multimodal_ip.problem import CalibrationEstimator

    from .position_offer import PositionOffer

    offer = PositionOffer(op, data, td.attrs.get("photons_per_unit"), where=td.where())
    return CalibrationEstimator(offer, offer.unknowns, "ptychography positions")


@hookimpl
def mmip_register_modalities(register):
    register("ptychography", Ptychography())


class CxiImporter:
    """``mmip import --ptycho scan.cxi``: a CXI file; sets the object frame and probe for the other importers."""

    flag = "ptycho"
    help = ("CXI file (patterns at /entry_1/data_1/data or instrument_1/detector_1/data, geometry_1/translation, "
            "probe at source_1/illumination or image_1/data)")
    order = 0  # first: the XRF importer places its maps on this scan's frame
    #: options of this importer (flags of ``mmip import``)
    options = {"cxi_positions": {"type": str, "default": None, "choices": ("centre", "corner"),
                                 "help": "what a CXI translation locates: the probe window's centre (the CXI "
                                         "convention; default, unless the file declares it) or its top-left pixel"},
               "product": {"type": str, "default": None, "file": True,
                           "help": "a ptychodus product (.cxi or .h5) with the positions and probe of the --ptycho "
                                   "patterns (a diffraction file)"}}

    def read_bytes(self, path, context) -> int:
        """Bytes the import holds at its peak (the patterns as stored and as float64, the probe), from the file's
        structure, nothing read: ``mmip import`` plans with it (docs/plugins.md).

        Parameters
        ----------
        path, context
            The CXI file; the import's context (``allow_external``).

        Returns
        -------
        nbytes : :obj:`int`
            0 when the file has no 3-D patterns (the import refuses it by name).
        """
        from multimodal_ip.io.dataset import open_h5, resolve

        from .cxi import DATA_PATHS

        with open_h5(path) as f:
            d = next((d for d in (resolve(path, f, k, context.get("allow_external", False)) for k in DATA_PATHS)
                      if d is not None), None)
            shape = tuple(getattr(d, "shape", None) or ())
            if d is None or len(shape) != 3:
                return 0
            return int(np.prod(shape, dtype=np.float64)) * (d.dtype.itemsize + 8) + 32 * shape[1] * shape[2]

    def __call__(self, path, context):
        from .cxi import import_cxi

        term, frame = import_cxi(path, allow_external=context.get("allow_external", False),
                                 reference=context.get("cxi_positions"), product=context.get("product"))
        context.update(frame=frame, probe=term.arrays["probe"])
        context.setdefault("attrs", {}).update(pixel_size_m=frame.pixel_size_m, origin_m=list(frame.origin_m))
        if context.get("importing", [self.flag]) == [self.flag]:  # ptychography alone: one phase map, w (1, n, n)
            term.attrs["elements"] = ["phase"]
        return term

    def read_start(self, path, context):
        """``mmip reconstruct --start product.h5``: ``x``, ``w`` and ``probe`` from a ptychodus product (``.h5`` or
        CXI), ``None`` for another file (:func:`~mmip_ptychography.product_start.read_product_start`)."""
        from .product_start import read_product_start

        return read_product_start(path, context)


@hookimpl
def mmip_register_importers(register):
    register("cxi", CxiImporter())


@hookimpl
def mmip_register_exporters(register):
    from .product_export import ProductExporter

    register("ptychodus", ProductExporter(cxi=False))
    register("cxi", ProductExporter(cxi=True))


@hookimpl
def mmip_register_reports(register):
    from .crb_report import PositionBoundReport
    from .report import CalibrationReport

    register("calibration", CalibrationReport())
    register("position-bound", PositionBoundReport())
