"""Registers the ``transmission-tomography`` and ``xrf-tomography`` modalities and the ``tomo-*`` simulations."""

import numpy as np

from multimodal_ip import DataTerm, Variable, hookimpl
from multimodal_ip.errors import ConfigError, DataError, ShapeError
from multimodal_ip.losses import LeastSquares, Poisson

from .geometry import Geometry
from .models import ATTENUATION_MODES, TransmissionModel, XRFTomographyModel


def attenuation_coefficients(elements, energy_kev, scale=1.0):
    r""":math:`\mu_e` = xraylib's total mass attenuation ``CS_Total`` (cm^2/g) of each element at ``energy_kev``,
    times ``scale`` (g/cm^3 of unit concentration x pixel size in cm: the attenuation per pixel of path)."""
    try:
        import xraylib
    except ImportError:
        msg = "attenuation from element names needs xraylib: pip install xraylib (or give the dataset 'mu')"
        raise ConfigError(msg) from None
    out = []
    for el in elements:
        try:
            z = int(el) if str(el).isdigit() else xraylib.SymbolToAtomicNumber(str(el).strip())
            out.append(xraylib.CS_Total(z, float(energy_kev)) * float(scale))
        except ValueError as exc:
            msg = f"element {el!r} at {energy_kev} keV: {exc} (give symbols such as Fe, Zn, or atomic numbers)"
            raise ConfigError(msg) from None
    return np.asarray(out, dtype=float)


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
        if "object_shape" not in td.attrs:
            if allow_missing:
                return None
            msg = f"{td.where()}: missing attribute 'object_shape' (rows, cols of the slice)"
            raise DataError(msg)
        shape = tuple(int(s) for s in np.atleast_1d(td.attrs["object_shape"]))
        angles = td.array("angles", ndim=1, dtype_kind="fiu")
        try:
            return Geometry.make(shape, angles, bins=bins, step=float(td.attrs.get("ray_step", 1.0)))
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
        return DataTerm(op, xp.asarray(data.astype(dtype, copy=False)), self._loss(td, loss, photon_weighted), 1.0,
                        self.inputs, td.name)

    def _matrix(self, td, shape, dtype, key="matrix"):
        return td.array(key, shape=shape, dtype_kind="fiu").astype(dtype) if key in td.arrays else None


def _random_cases(rng, model, sizes, mu_range):
    """Conformance cases ``(name, model, w)`` at random angles over a full turn: sizes ``(n0, n1, K, Ne)``."""
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
        from multimodal_ip.io import TermData

        geom = Geometry.make((7, 8), np.linspace(0, np.pi, 5, endpoint=False))
        mu = np.array([0.08, 0.05])
        data = TransmissionModel(geom, mu).forward(rng.random((2, 7, 8)))
        td = TermData("transmission", "transmission-tomography",
                      {"data": data, "angles": np.asarray(geom.angles), "mu": mu}, {"object_shape": np.array([7, 8])})
        return td, [Variable("w", (2, 7, 8))]

    def build_term(self, td, space, loss="least-squares", xp=None, dtype=None, photon_weighted=False, **options):
        ne, shape = self._common(td, space, options, self.options)
        k = int(np.size(td.arrays.get("angles", ())))
        data = self._data(td, (k, None))
        geom = self._geometry(td, data.shape[1])
        dtype = np.dtype(dtype or space.dtype)
        xp = xp or np
        op = TransmissionModel(geom, self._mu(td, ne), matrix=self._matrix(td, shape, dtype), dtype=dtype, xp=xp,
                               name="TransmissionModel")
        return self._term(td, op, data, xp, dtype, loss, photon_weighted)

    def conformance_cases(self, rng):
        yield from _random_cases(rng, TransmissionModel, ((9, 9, 4, 1), (10, 12, 40, 2), (8, 8, 3, 3)), (0.02, 0.1))
        geom = Geometry.make((11, 11), np.linspace(0, np.pi, 6), step=0.7)
        op = TransmissionModel(geom, [0.05, 0.02], matrix=0.01 * rng.random((11, 11)))
        yield "matrix-step0.7", op, rng.random((2, 11, 11))


class XRFTomography(_Tomography):
    """``/terms/<name>``: ``data`` (Ne, K, S) fluorescence sinograms, ``angles`` (K,), ``mu`` (Ne,) [, ``matrix``,
    ``attenuation_map`` (n0, n1)]; attributes ``object_shape``, optional ``ray_step``, ``photons_per_unit``,
    ``elements`` and ``energy_kev`` (``mu`` from xraylib when the dataset is absent).

    Option ``attenuation``: ``"self"`` (default; the maps attenuate the incident beam), ``"map"`` (the term's
    ``attenuation_map`` does, fixed), ``"none"`` (no self-absorption).
    """

    options = ("loss", "dtype", "photon_weighted", "attenuation")
    datasets = ("data", "angles", "mu", "matrix", "attenuation_map")
    split_axes = {"data": 1, "angles": 0}
    #: the fluorescence sees every element: it is the term the others are weighted against
    balance_role = "reference"

    def _n_elements(self, td):
        if "data" in td.arrays and len(np.shape(td.arrays["data"])) == 3:
            return int(np.shape(td.arrays["data"])[0])
        return super()._n_elements(td)

    def example_term(self, rng):
        """A 7 x 8 slice, two elements, five angles over a full turn, noise-free, self-absorbing."""
        from multimodal_ip.io import TermData

        geom = Geometry.make((7, 8), np.linspace(0, 2 * np.pi, 5, endpoint=False))
        mu = np.array([0.08, 0.05])
        data = XRFTomographyModel(geom, mu).forward(rng.random((2, 7, 8)))
        td = TermData("xrf", "xrf-tomography", {"data": data, "angles": np.asarray(geom.angles), "mu": mu},
                      {"object_shape": np.array([7, 8])})
        return td, [Variable("w", (2, 7, 8))]

    def build_term(self, td, space, loss="least-squares", xp=None, dtype=None, photon_weighted=False,
                   attenuation="self", **options):
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
                                attenuation_map=amap, dtype=dtype, xp=xp)
        return self._term(td, op, data, xp, dtype, loss, photon_weighted)

    def conformance_cases(self, rng):
        yield from _random_cases(rng, XRFTomographyModel, ((9, 9, 4, 1), (10, 12, 48, 2), (8, 7, 3, 3)), (0.05, 0.2))
        geom = Geometry.make((11, 11), np.linspace(0, 2 * np.pi, 7), bins=9, step=0.6)
        yield "matrix-bins9-step0.6", XRFTomographyModel(geom, [0.1, 0.05], matrix=0.02 * rng.random((11, 11))), \
            rng.random((2, 11, 11))
        yield "map", XRFTomographyModel(geom, [0.1, 0.05], attenuation="map",
                                        attenuation_map=0.1 * rng.random((11, 11))), rng.random((2, 11, 11))
        yield "none", XRFTomographyModel(geom, [0.1, 0.05], attenuation="none"), rng.random((2, 11, 11))


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
