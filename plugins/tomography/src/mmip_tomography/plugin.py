"""Registers the ``transmission-tomography`` and ``xrf-tomography`` modalities and the ``tomo-*`` simulations."""

import numpy as np

from multimodal_ip import hookimpl
from multimodal_ip.errors import ConfigError, DataError, ShapeError
from multimodal_ip.losses import LeastSquares, Poisson

from .attenuation import attenuation_coefficients, line_coefficients


class _Tomography:
    """What both tomography modalities share: the datasets, geometry, coefficients, loss and split."""

    inputs = ("w",)
    #: keyword options of :meth:`build_term`
    options: tuple[str, ...] = ("loss", "dtype", "photon_weighted")
    #: ``data`` (sinograms), ``angles`` (radians), ``mu`` (per element), ``matrix`` (known attenuation map)
    datasets: tuple[str, ...] = ("data", "angles", "mu", "matrix")
    #: read in the run's precision (no float64 copy in a float32 run); integer counts accepted, cast once
    measurements: tuple[str, ...] = ("data",)
    #: the sinogram axis along the angles, and the angles themselves (MPI ranks and chunks take runs of angles)
    split_axes: dict = {}
    data_ndim = 2

    def _n_elements(self, td):
        if "mu" in td.arrays:
            return int(np.size(td.arrays["mu"]))
        if "elements" in td.attrs:
            return len(np.atleast_1d(td.attrs["elements"]))
        return None

    def variables(self, td):
        """``w`` (Ne, n0, n1): the shape from the attribute ``object_shape``; Ne from ``mu`` or ``elements``."""
        from multimodal_ip import Variable

        ne = self._n_elements(td)
        if ne is None or "object_shape" not in td.attrs:
            return []
        return [Variable("w", (ne, *(int(s) for s in np.atleast_1d(td.attrs["object_shape"]))))]

    def temporaries(self, td):
        """Bytes per angle that one evaluation allocates (samples of every map along every ray)."""
        geom = self._geometry(td, np.shape(td.arrays["data"])[-1], allow_missing=True)
        ne = self._n_elements(td) or 1
        return 8.0 * geom.bins * geom.samples * (3 * ne + 4) if geom else 0.0

    def _geometry(self, td, bins, allow_missing=False):
        from .geometry import Geometry

        if "object_shape" not in td.attrs:
            if allow_missing:
                return None
            msg = f"{td.where()}: missing attribute 'object_shape' (rows, cols of the slice)"
            raise DataError(msg)
        shape = tuple(int(s) for s in np.atleast_1d(td.attrs["object_shape"]))
        angles = td.array("angles", ndim=1, dtype_kind="fiu")
        try:
            step = td.attr("ray_step", 1.0)
            if not (np.isfinite(step) and 0 < step <= max(shape)):
                msg = (f"{td.where()}: attribute 'ray_step' must be a finite number of pixels in (0, {max(shape)}], "
                       f"got {step!r}")
                raise DataError(msg)
            return Geometry.make(shape, angles, bins=bins, step=step)
        except ShapeError as exc:
            msg = f"{td.where()}: {exc}"
            raise DataError(msg) from None

    def _mu(self, td, ne):
        if "mu" in td.arrays:
            mu = td.array("mu", shape=(ne,), dtype_kind="fiu").astype(float)
        elif "elements" in td.attrs and "energy_kev" in td.attrs:
            mu = attenuation_coefficients(np.atleast_1d(td.attrs["elements"]), td.attr("energy_kev"),
                                          td.attr("mu_scale", 1.0))
        else:
            msg = (f"{td.where()}: needs dataset 'mu' (attenuation per unit concentration per pixel, one per element) "
                   "or attributes 'elements' and 'energy_kev' (with xraylib)")
            raise DataError(msg)
        if np.any(mu < 0) or not np.all(np.isfinite(mu)):
            msg = f"{td.where('mu')}: attenuation coefficients must be finite and >= 0; got {list(mu)}"
            raise DataError(msg)
        return mu

    def _common(self, td, space, options, known):
        unknown = sorted(set(options) - set(known))
        if unknown:
            msg = f"{td.where()}: unknown {td.modality} option(s) {unknown}; known: {', '.join(known)}"
            raise ConfigError(msg)
        if "w" not in space:
            msg = f"{td.where()}: {td.modality} needs variable 'w' (element maps); the file declares {space.names}"
            raise DataError(msg)
        ne = space["w"].shape[0]
        shape = space["w"].shape[1:]
        if "object_shape" in td.attrs and tuple(np.atleast_1d(td.attrs["object_shape"])) != tuple(shape):
            msg = (f"{td.where()}: attribute object_shape {tuple(np.atleast_1d(td.attrs['object_shape']))} differs "
                   f"from /variables/w's maps {tuple(shape)}")
            raise DataError(msg)
        return ne, shape

    def _loss(self, td, loss, photon_weighted):
        photons = td.attr("photons_per_unit") if photon_weighted else td.attr("photons_per_unit", 1.0)
        if photon_weighted or loss == "poisson":
            if not (np.isfinite(photons) and photons > 0):
                msg = (f"{td.where()}: attribute photons_per_unit = {photons!r} must be finite and > 0 for a "
                       "photon-count likelihood (a noise-free simulation has no photon scale)")
                raise DataError(msg)
            return Poisson(photons_per_unit=photons, intensity=True)
        if loss != "least-squares":
            msg = f"{td.modality} loss must be 'least-squares' or 'poisson'; got {loss!r}"
            raise ConfigError(msg)
        return LeastSquares()

    def _data(self, td, shape):
        data = td.array("data", shape=shape, dtype_kind="fiu")  # cast once, to the compute dtype, by _term
        low = td.minimum("data")  # block by block: no data-sized boolean array
        if low < 0:
            msg = f"{td.where('data')}: measured intensities must be non-negative (min {low:.3g})"
            raise DataError(msg)
        return data

    def _term(self, td, op, data, xp, dtype, loss, photon_weighted):
        from multimodal_ip import DataTerm

        return DataTerm(op, xp.asarray(data.astype(dtype, copy=False)), self._loss(td, loss, photon_weighted), 1.0,
                        self.inputs, td.name)

    def _matrix(self, td, shape, dtype, key="matrix"):
        """A known attenuation map (per pixel of path, >= 0: a negative one would amplify the beam), or ``None``."""
        if key not in td.arrays:
            return None
        a = td.array(key, shape=shape, dtype_kind="fiu")
        low = td.minimum(key)
        if low < 0:
            msg = f"{td.where(key)}: a known attenuation must be >= 0 everywhere (min {low:.3g})"
            raise DataError(msg)
        return a.astype(dtype)


def _random_cases(rng, model, sizes, mu_range):
    """Conformance cases ``(name, model, w)`` at random angles over a full turn: sizes ``(n0, n1, K, Ne)``."""
    from .geometry import Geometry

    for n0, n1, k, ne in sizes:
        geom = Geometry.make((n0, n1), np.sort(rng.uniform(0, 2 * np.pi, k)))
        yield f"{n0}x{n1}-K{k}-Ne{ne}", model(geom, rng.uniform(*mu_range, ne)), rng.random((ne, n0, n1))


class TransmissionTomography(_Tomography):
    """``/terms/<name>``: ``data`` (K, S) transmission I/I0, ``angles`` (K,), ``mu`` (Ne,) [, ``matrix`` (n0, n1)];
    attributes ``object_shape``, optional ``ray_step`` (pixels, default 1), ``photons_per_unit`` (I0)."""

    split_axes = {"data": 0, "angles": 0}
    #: weighted against the fluorescence by the gradient-norm balancing
    balance_role = "weighted"

    def example_term(self, rng):
        """A 7 x 8 slice, two elements, five angles, noise-free."""
        from multimodal_ip import Variable
        from multimodal_ip.io import TermData

        from .geometry import Geometry
        from .models import TransmissionModel

        geom = Geometry.make((7, 8), np.linspace(0, np.pi, 5, endpoint=False))
        mu = np.array([0.08, 0.05])
        data = TransmissionModel(geom, mu).forward(rng.random((2, 7, 8)))
        td = TermData("transmission", "transmission-tomography",
                      {"data": data, "angles": np.asarray(geom.angles), "mu": mu}, {"object_shape": np.array([7, 8])})
        return td, [Variable("w", (2, 7, 8))]

    def build_term(self, td, space, loss="least-squares", xp=None, dtype=None, photon_weighted=False, **options):
        from .models import TransmissionModel

        ne, shape = self._common(td, space, options, self.options)
        k = int(np.size(td.arrays.get("angles", ())))
        data = self._data(td, (k, None))
        self._check_transmission(td, data)
        geom = self._geometry(td, data.shape[1])
        dtype = np.dtype(dtype or space.dtype)
        xp = xp or np
        op = TransmissionModel(geom, self._mu(td, ne), matrix=self._matrix(td, shape, dtype), dtype=dtype, xp=xp,
                               name="TransmissionModel")
        return self._term(td, op, data, xp, dtype, loss, photon_weighted)

    @staticmethod
    def _check_transmission(td, data) -> None:
        """Transmissions I/I0 lie in [0, 1], up to the photon noise of I0 = ``photons_per_unit`` (8 standard
        deviations of a count at I0; 0.5 when the file gives no I0): raw counts, or I/I0 of another scale, are
        refused by name."""
        top = float(np.max(data))
        photons = td.attr("photons_per_unit", np.nan)
        slack = 8.0 / np.sqrt(photons) if np.isfinite(photons) and photons > 0 else \
            (0.0 if photons == np.inf else 0.5)
        if top > 1.0 + slack + 1e-6:
            msg = (f"{td.where('data')}: transmissions I/I0 must lie in [0, 1] (up to photon noise: <= "
                   f"{1 + slack:.3g}), got max {top:.4g}; raw counts? divide them by the incident flux I0 "
                   "(photons_per_unit)")
            raise DataError(msg)

    def conformance_cases(self, rng):
        from .geometry import Geometry
        from .models import TransmissionModel

        yield from _random_cases(rng, TransmissionModel, ((9, 9, 4, 1), (10, 12, 40, 2), (8, 8, 3, 3)), (0.02, 0.1))
        geom = Geometry.make((11, 11), np.linspace(0, np.pi, 6), step=0.7)
        op = TransmissionModel(geom, [0.05, 0.02], matrix=0.01 * rng.random((11, 11)))
        yield "matrix-step0.7", op, rng.random((2, 11, 11))


class XRFTomography(_Tomography):
    """``/terms/<name>``: ``data`` (Ne, K, S) fluorescence sinograms, ``angles`` (K,), ``mu`` (Ne,) [, ``matrix``,
    ``attenuation_map`` (n0, n1)]; attributes ``object_shape``, optional ``ray_step``, ``photons_per_unit``,
    ``elements`` and ``energy_kev`` (``mu`` from xraylib when the dataset is absent). The emitted lines' attenuation
    on the way to the detector: dataset ``mu_line`` (Ne, Ne) (or attribute ``lines``, xraylib line names, with
    ``elements``), optional ``line_matrix`` (Ne, n0, n1), ``line_attenuation_map`` (Ne, n0, n1) (mode ``map``),
    attribute ``detector_angles`` (radians from the beam, default pi/2).

    Option ``attenuation``: ``"self"`` (default; the maps attenuate the incident beam), ``"map"`` (the term's
    ``attenuation_map`` does, fixed), ``"none"`` (no self-absorption). Option ``line_attenuation``: ``"auto"``
    (default: modelled when the file describes the lines), ``"off"`` (the ablation), ``"on"`` (required).
    """

    options = ("loss", "dtype", "photon_weighted", "attenuation", "line_attenuation")
    datasets = ("data", "angles", "mu", "matrix", "attenuation_map", "mu_line", "line_matrix", "line_attenuation_map")
    split_axes = {"data": 1, "angles": 0}
    #: the fluorescence sees every element: it is the term the others are weighted against
    balance_role = "reference"

    def _n_elements(self, td):
        if "data" in td.arrays and len(np.shape(td.arrays["data"])) == 3:
            return int(np.shape(td.arrays["data"])[0])
        return super()._n_elements(td)

    def temporaries(self, td):
        """Nothing grows with the angles: the model runs a block of angles at a time (sized by the memory target
        per block, ``--chunk-memory``, else a quarter of the memory budget), so the term is never split."""
        return 0.0

    def working_memory(self, td, space, dtype, chunk_bytes=None):
        """Bytes one objective + gradient allocates besides its data and the problem's vectors (the run's memory
        budget, :mod:`multimodal_ip.run_budget`): one block of angles' temporaries and the gradient's maps."""
        from multimodal_ip.memory import memory_budget_bytes
        from multimodal_ip.modality import BUDGET_FRACTION

        per = self._angle_bytes(td) * np.dtype(dtype).itemsize / 8
        target = chunk_bytes or BUDGET_FRACTION * memory_budget_bytes()
        block = per * min(max(1, int(target // max(per, 1))), int(np.size(td.arrays.get("angles", 1))))
        return int(block + 2 * (space["w"].size if "w" in space else 0) * np.dtype(dtype).itemsize)

    def _angle_bytes(self, td):
        """Bytes per angle (float64) of an evaluation's temporaries: as the transmission's, plus with the emitted
        lines per detector: the line maps on its grid (about the diagonal in bins) and their paths and attenuations
        at every sample."""
        base = super().temporaries(td)
        if not base or not ("mu_line" in td.arrays or "lines" in td.attrs):
            return base
        geom = self._geometry(td, np.shape(td.arrays["data"])[-1], allow_missing=True)
        ne = self._n_elements(td) or 1
        detectors = np.size(td.attrs.get("detector_angles", 1))
        grid = (np.ceil(np.hypot(*geom.shape) / min(1.0, geom.step)) + 2) * geom.samples
        return base + 8.0 * detectors * ne * (3 * grid + 3 * geom.bins * geom.samples)

    def example_term(self, rng):
        """A 7 x 8 slice, two elements, five angles over a full turn, noise-free, self-absorbing."""
        from multimodal_ip import Variable
        from multimodal_ip.io import TermData

        from .geometry import Geometry
        from .models import XRFTomographyModel

        geom = Geometry.make((7, 8), np.linspace(0, 2 * np.pi, 5, endpoint=False))
        mu = np.array([0.08, 0.05])
        data = XRFTomographyModel(geom, mu).forward(rng.random((2, 7, 8)))
        td = TermData("xrf", "xrf-tomography", {"data": data, "angles": np.asarray(geom.angles), "mu": mu},
                      {"object_shape": np.array([7, 8])})
        return td, [Variable("w", (2, 7, 8))]

    def build_term(self, td, space, loss="least-squares", xp=None, dtype=None, photon_weighted=False,
                   attenuation="self", line_attenuation="auto", **options):
        from .models import ATTENUATION_MODES, XRFTomographyModel

        ne, shape = self._common(td, space, options, self.options)
        if attenuation not in ATTENUATION_MODES:
            msg = f"{td.where()}: option attenuation must be one of {ATTENUATION_MODES}; got {attenuation!r}"
            raise ConfigError(msg)
        k = int(np.size(td.arrays.get("angles", ())))
        data = self._data(td, (ne, k, None))
        geom = self._geometry(td, data.shape[2])
        dtype = np.dtype(dtype or space.dtype)
        xp = xp or np
        amap = self._matrix(td, shape, dtype, "attenuation_map") if attenuation == "map" else None
        if attenuation == "map" and amap is None:
            msg = f"{td.where()}: attenuation 'map' needs the dataset 'attenuation_map' ({shape[0]}, {shape[1]})"
            raise DataError(msg)
        mu = self._mu(td, ne) if attenuation == "self" else np.zeros(ne)
        op = XRFTomographyModel(geom, mu, attenuation=attenuation, matrix=self._matrix(td, shape, dtype),
                                attenuation_map=amap, dtype=dtype, xp=xp,
                                **self._lines(td, ne, shape, dtype, attenuation, line_attenuation))
        from multimodal_ip.memory import memory_budget_bytes
        from multimodal_ip.modality import BUDGET_FRACTION

        op.block = op.block_for_bytes(BUDGET_FRACTION * memory_budget_bytes())  # --chunk-memory: set by the builder
        return self._term(td, op, data, xp, dtype, loss, photon_weighted)

    def _lines(self, td, ne, shape, dtype, attenuation, line_attenuation):
        """Keyword arguments of the emitted lines' attenuation (none when off or not described)."""
        choice = {True: "on", False: "off"}.get(line_attenuation, line_attenuation)
        if choice not in ("auto", "on", "off"):
            msg = f"{td.where()}: option line_attenuation must be 'auto', 'on' or 'off'; got {line_attenuation!r}"
            raise ConfigError(msg)
        key = {"self": "mu_line", "map": "line_attenuation_map"}.get(attenuation)
        described = key is not None and (key in td.arrays or (key == "mu_line" and "lines" in td.attrs))
        if choice == "on" and not described:
            msg = (f"{td.where()}: option line_attenuation 'on' with attenuation {attenuation!r} needs the dataset "
                   f"{key or 'mu_line'!r}" + (" (or attributes 'lines' and 'elements')" if key == "mu_line" else ""))
            raise DataError(msg)
        if choice == "off" or not described:
            return {}
        out = {"detectors": _detector_angles(td)}
        if key == "line_attenuation_map":
            return dict(out, line_maps=_known_attenuation(td, key, (ne, *shape), dtype, with_minimum=True))
        out["mu_line"] = _line_coefficients(td, ne)
        if "line_matrix" in td.arrays:
            out["line_matrix"] = _known_attenuation(td, "line_matrix", (ne, *shape), dtype, with_minimum=False)
        return out

    def conformance_cases(self, rng):
        from .geometry import Geometry
        from .models import XRFTomographyModel

        yield from _random_cases(rng, XRFTomographyModel, ((9, 9, 4, 1), (10, 12, 48, 2), (8, 7, 3, 3)), (0.05, 0.2))
        geom = Geometry.make((11, 11), np.linspace(0, 2 * np.pi, 7), bins=9, step=0.6)
        yield "matrix-bins9-step0.6", XRFTomographyModel(geom, [0.1, 0.05], matrix=0.02 * rng.random((11, 11))), \
            rng.random((2, 11, 11))
        yield "map", XRFTomographyModel(geom, [0.1, 0.05], attenuation="map",
                                        attenuation_map=0.1 * rng.random((11, 11))), rng.random((2, 11, 11))
        yield "none", XRFTomographyModel(geom, [0.1, 0.05], attenuation="none"), rng.random((2, 11, 11))
        b = rng.uniform(0.05, 0.25, (2, 2))
        yield "lines", XRFTomographyModel(geom, [0.1, 0.05], mu_line=b), rng.random((2, 11, 11))
        yield "lines-matrix-2detectors", XRFTomographyModel(
            geom, [0.1, 0.05], matrix=0.02 * rng.random((11, 11)), mu_line=b,
            line_matrix=0.02 * rng.random((2, 11, 11)), detectors=(np.pi / 2, -2.0)), rng.random((2, 11, 11))
        yield "map-lines", XRFTomographyModel(geom, [0.1, 0.05], attenuation="map", attenuation_map=0.1 * rng.random(
            (11, 11)), line_maps=0.2 * rng.random((2, 11, 11))), rng.random((2, 11, 11))


@hookimpl
def mmip_register_modalities(register):
    register("transmission-tomography", TransmissionTomography())
    register("xrf-tomography", XRFTomography())


@hookimpl
def mmip_register_simulations(register):
    from .simulate import CASES, TomoCase

    for case in CASES:
        register(case, TomoCase(case))


@hookimpl
def mmip_register_reports(register):
    from .report import SinogramReport

    register("tomography", SinogramReport())


def _detector_angles(td) -> tuple:
    """The detectors' angles from the beam (attribute ``detector_angles``, default pi/2), checked."""
    detectors = np.atleast_1d(np.asarray(td.attrs.get("detector_angles", np.pi / 2), dtype=float))
    if detectors.ndim != 1 or detectors.size < 1 or not np.all(np.isfinite(detectors)):
        msg = (f"{td.where()}: attribute 'detector_angles' must be one or more finite angles (radians from the "
               f"beam); got {detectors.tolist()}")
        raise DataError(msg)
    return tuple(detectors)


def _known_attenuation(td, key, shape, dtype, with_minimum):
    """A known attenuation dataset (``line_attenuation_map`` or ``line_matrix``), >= 0 everywhere."""
    maps = td.array(key, shape=shape, dtype_kind="fiu")
    if td.minimum(key) < 0:
        msg = f"{td.where(key)}: a known attenuation must be >= 0 everywhere" + \
            (f" (min {td.minimum(key):.3g})" if with_minimum else "")
        raise DataError(msg)
    return maps.astype(dtype)


def _line_coefficients(td, ne):
    """The (Ne, Ne) line attenuation coefficients: dataset ``mu_line``, else xraylib from ``lines``/``elements``."""
    if "mu_line" in td.arrays:
        b = td.array("mu_line", shape=(ne, ne), dtype_kind="fiu").astype(float)
    else:
        b = line_coefficients(np.atleast_1d(td.attrs.get("elements", ())), td.attrs["lines"], td.attr("mu_scale", 1.0))
    if b.shape != (ne, ne) or np.any(b < 0) or not np.all(np.isfinite(b)):
        msg = (f"{td.where('mu_line')}: line attenuation coefficients must be ({ne}, {ne}), finite and >= 0; "
               f"got shape {b.shape}")
        raise DataError(msg)
    return b
