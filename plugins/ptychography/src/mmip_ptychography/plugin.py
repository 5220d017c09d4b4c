"""Registers the ``ptychography`` modality."""

import warnings

import numpy as np
from mmip_scanprobe import AFFINE_SIZE, REFINABLE

from multimodal_ip import DataTerm, Variable, hookimpl
from multimodal_ip.errors import ConfigError, DataError, ShapeError
from multimodal_ip.io.dataset import compact_dtype
from multimodal_ip.losses import Amplitude, Poisson
from multimodal_ip.operators import Modulus, compose

from .coupling import global_phase, parse_coupling
from .probe import fresnel_zone_plate_probe
from .ptychography_model import PtychographyModel
from .scan import raster_positions


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
    return PtychographyModel(probe, positions_px, object_shape, n_elements, coefficients=coefficients, dtype=dtype,
                             block=block)


class Ptychography:
    """The ``ptychography`` modality: builds the term from ``/terms/<name>`` (data, probe, positions).

    Options of :meth:`build_term`: ``loss`` (``"amplitude"``, the paper's, or ``"poisson"``), ``refine``
    (``"probe"``, ``"positions"``, ``"affine"``: calibration unknowns read besides ``x`` and ``w``), ``coupling`` (see
    :func:`~mmip_ptychography.coupling.parse_coupling`; default the term's ``coupling`` attribute, else ones),
    ``photon_weighted`` (the loss in photon counts, from ``photons_per_unit``: amplitude gets weight
    :math:`4p`, the variance-stabilised Poisson likelihood; Poisson is the exact one), ``dtype``.
    """

    inputs = ("x", "w")
    refinable = REFINABLE
    #: keyword options of :meth:`build_term`
    options = ("loss", "dtype", "refine", "calibration", "coupling", "photon_weighted")
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
        from multimodal_ip.io import TermData

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

    def calibration(self, td):
        """Start values this term offers for refinement: its probe, its scan positions and the identity of the
        positions' global affine map (``affine``: :func:`~mmip_scanprobe.affine_positions`, zeros)."""
        return {"probe": td.array("probe", ndim=2, dtype_kind="cf"),
                "positions": td.array("positions", ndim=2, dtype_kind="fiu").astype(float),
                "affine": np.zeros(AFFINE_SIZE)}

    def build_term(self, td, space, loss="amplitude", xp=None, dtype=None, refine=(), calibration=None,
                   coupling=None, photon_weighted=False, **options):
        if options:
            msg = (f"{td.where()}: unknown ptychography option(s) {sorted(options)}; known: loss, dtype, refine, "
                   "coupling, photon_weighted")
            raise ConfigError(msg)
        n_shape, ne = self._object_shape(td, space, refine)
        data, probe, positions = _read_scan(td)
        dtype = np.dtype(dtype or space.dtype)
        xp = xp or np
        elements = td.attrs.get("elements", (calibration or {}).get("elements"))  # else the XRF term's names
        elements = None if elements is None else [str(e) for e in np.atleast_1d(elements)]
        coef = parse_coupling(coupling if coupling is not None else td.attrs.get("coupling"), ne, elements)
        try:  # one model: plain windows for fixed whole-pixel positions, cubic-sampled ones otherwise
            op = PtychographyModel(xp.asarray(probe), positions, n_shape, ne, refine=refine, coefficients=coef,
                                   dtype=dtype)
        except ShapeError as exc:
            msg = f"{td.where('positions')}: {exc}"
            raise DataError(msg) from None
        lossfn = _loss(td, loss, photon_weighted, int(td.attrs.get("split_total", data.shape[0])))
        if "positions" in refine:
            _warn_low_overlap(td, probe, positions)
        inputs = (*self.inputs, *op.refine)
        if data.dtype.kind == "f" or compact_dtype(data.dtype) is not None:  # counts of <= 32 bits stay integers
            data = data.astype(dtype, copy=False)
        return DataTerm(op, xp.asarray(data), lossfn, 1.0, inputs, td.name, invariance=global_phase(coef, ne))

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

    def conformance_cases(self, rng):
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
        probe = fresnel_zone_plate_probe(16)
        yield "fzp-probe", ptychography_operator(probe, raster_positions(24, 16, step_px=4), (24, 24), 1), \
            1 + rng.random(24 * 24 * 2)


def _read_scan(td):
    """``(data, probe, positions)`` of the term, checked: non-negative intensities (or a detector's integer counts),
    a probe of the patterns' shape that is not zero everywhere, one position per pattern."""
    data = td.array("data", ndim=3, dtype_kind="fiu")  # intensities, or a detector's integer counts
    low = td.minimum("data")  # block by block: no data-sized boolean array
    if low < 0:
        msg = f"{td.where('data')}: intensities must be non-negative (min {low:.3g})"
        raise DataError(msg)
    npx = data.shape[1:]
    probe = td.array("probe", shape=npx, dtype_kind="cf")
    if not np.any(probe):
        msg = f"{td.where('probe')}: the probe is zero everywhere (no beam, no data to explain)"
        raise DataError(msg)
    return data, probe, td.array("positions", shape=(data.shape[0], 2), dtype_kind="fiu")


def _loss(td, loss, photon_weighted, j):
    """The term's loss: ``"amplitude"`` (averaged over all ``j`` positions, also on one MPI rank, or in photon
    counts when ``photon_weighted``) or ``"poisson"`` (both photon scales from ``photons_per_unit``)."""
    photons = td.attr("photons_per_unit") if photon_weighted else td.attr("photons_per_unit", 1.0)
    if (photon_weighted or loss == "poisson") and not (np.isfinite(photons) and photons > 0):
        msg = (f"{td.where()}: attribute photons_per_unit = {photons!r} must be finite and > 0 for a photon-count "
               "likelihood (a noise-free simulation has no photon scale)")
        raise DataError(msg)
    if loss == "amplitude":
        return Amplitude(scale=4.0 * photons if photon_weighted else 1.0 / j)
    if loss == "poisson":
        return Poisson(photons_per_unit=photons)
    msg = f"ptychography loss must be 'amplitude' or 'poisson'; got {loss!r}"
    raise ConfigError(msg)


#: below this overlap of the probe's 90 % disc between neighbouring positions, refining positions warns
LOW_OVERLAP = 0.5


def scan_overlap(probe, positions):
    """``(overlap, radius, step)``: the linear overlap ``1 - step / (2 radius)`` of the disc holding 90 % of the
    probe's intensity (radius about its intensity centroid, px) between neighbouring positions (step: the median
    distance to the nearest other position, px). ``nan`` overlap for a single position."""
    from scipy.spatial import cKDTree

    intensity = np.abs(np.asarray(probe)) ** 2
    grid = np.indices(intensity.shape).reshape(2, -1).T.astype(float)
    weights = intensity.ravel() / intensity.sum()
    distance = np.linalg.norm(grid - weights @ grid, axis=1)
    order = np.argsort(distance)
    radius = float(distance[order][np.searchsorted(np.cumsum(weights[order]), 0.9)])
    pos = np.asarray(positions, dtype=float)
    if len(pos) < 2:
        return float("nan"), radius, float("nan")
    step = float(np.median(cKDTree(pos).query(pos, k=2)[0][:, 1]))
    return 1.0 - step / (2.0 * max(radius, 0.5)), radius, step


def _warn_low_overlap(td, probe, positions) -> None:
    """One warning line when positions are refined on a scan whose windows hardly overlap (measured: the object then
    takes up the position errors; docs/refinement.md, "Overlap and iteration count")."""
    overlap, radius, step = scan_overlap(probe, positions)
    if overlap < LOW_OVERLAP:
        warnings.warn(f"{td.where('positions')}: refining positions on a scan whose neighbours share {overlap:.2f} of "
                      f"the probe's 90 % disc (radius {radius:.1f} px, step {step:.1f} px); below {LOW_OVERLAP} the "
                      "object takes up most position errors (docs/refinement.md)", stacklevel=4)


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

    def __call__(self, path, context):
        from .cxi import import_cxi

        term, frame = import_cxi(path, allow_external=context.get("allow_external", False),
                                 reference=context.get("cxi_positions"), product=context.get("product"))
        context.update(frame=frame, probe=term.arrays["probe"])
        context.setdefault("attrs", {}).update(pixel_size_m=frame.pixel_size_m, origin_m=list(frame.origin_m))
        if context.get("importing", [self.flag]) == [self.flag]:  # ptychography alone: one phase map, w (1, n, n)
            term.attrs["elements"] = ["phase"]
        return term


@hookimpl
def mmip_register_importers(register):
    register("cxi", CxiImporter())


@hookimpl
def mmip_register_reports(register):
    from .report import CalibrationReport

    register("calibration", CalibrationReport())
