r"""Forward models of transmission and fluorescence tomography on element concentration maps.

Unknown: concentrations :math:`W` of shape ``(Ne, n0, n1)``. The attenuation map (per pixel of path) is
:math:`\mu = \sum_e \mu_e W_e + \mu_0`, with :math:`\mu_e` the attenuation per unit concentration and :math:`\mu_0` an
optional known map (the matrix). :math:`S` samples a map along the rays (:mod:`~mmip_tomography.geometry`),
:math:`\Delta t` is the step along a ray and :math:`C` the exclusive cumulative sum along it,
:math:`(Cu)_t = \sum_{t' < t} u_{t'}`.

* Transmission: :math:`T_{ks} = \exp\!\big(-\Delta t \sum_t (S\mu)_{kst}\big)` (Beer-Lambert; data :math:`I/I_0`).
* Fluorescence of element :math:`e`: :math:`F_{e,ks} = \Delta t \sum_t (S W_e)_{kst}\, A_{kst}` with the incident beam's
  attenuation :math:`A = \exp(-\Delta t\, C S\mu)` on its way to each emitting sample (self-absorption of the probe;
  the emitted line's attenuation toward the detector is not modelled).

The fluorescence Jacobian has the linear part and the term through the attenuation:

.. math:: \delta F_e = \Delta t \sum_t \big[(S\,\delta W_e) A - (S W_e) A\, \Delta t\, C S\,\delta\mu\big],
   \quad \delta\mu = \sum_e \mu_e\, \delta W_e .

Both adjoints gather everything per sample first and make **one** transposed sampling pass for all elements.
"""

__all__ = ["TransmissionModel", "XRFTomographyModel", "ATTENUATION_MODES"]

import numpy as np
from pylops import LinearOperator

from multimodal_ip.backend import get_array_module
from multimodal_ip.errors import ConfigError, ShapeError
from multimodal_ip.operators import NonlinearOperator

from .geometry import Geometry, ray_sampling

#: how the fluorescence model attenuates the incident beam: ``self`` (from the unknown maps, plus the known matrix),
#: ``map`` (a fixed attenuation map, e.g. from another measurement), ``none`` (ignored)
ATTENUATION_MODES = ("self", "map", "none")


def _coefficients(mu, ne, dtype):
    mu = np.asarray(mu, dtype=dtype).ravel()
    if mu.shape != (ne,) or not np.all(np.isfinite(mu)) or np.any(mu < 0):
        msg = f"attenuation coefficients: need {ne} finite value(s) >= 0 (one per element map); got {list(mu)}"
        raise ShapeError(msg)
    return mu


class TransmissionModel(NonlinearOperator):
    r"""Beer-Lambert transmission :math:`T = \exp(-R\mu)` of the maps ``(Ne, n0, n1)`` → sinogram ``(K, S)``.

    Parameters
    ----------
    geom : :class:`~mmip_tomography.geometry.Geometry`
    mu : array-like, shape ``(Ne,)``
        Attenuation per unit concentration per pixel of path.
    matrix : array, shape ``(n0, n1)``, optional
        Known attenuation added to :math:`\sum_e \mu_e W_e`.
    """

    def __init__(self, geom: Geometry, mu, matrix=None, dtype="float64", xp=np, name="TransmissionModel"):
        dtype = np.dtype(dtype)
        self.geom = geom
        self.mu = xp.asarray(_coefficients(mu, np.size(mu), dtype))
        self.radon = ray_sampling(geom, dtype, xp, summed=True)
        self.offset = None if matrix is None else self.radon.forward(xp.asarray(matrix, dtype=dtype))
        super().__init__(dims=(len(self.mu), *geom.shape), dimsd=geom.sinogram_shape, dtype=dtype, name=name)

    def _attenuation(self, w):
        return self.mu @ w.reshape(len(self.mu), -1)

    def _forward(self, w):
        p = self.radon.forward(self._attenuation(w).reshape(self.geom.shape))
        if self.offset is not None:
            p = p + self.offset
        with np.errstate(over="ignore"):  # far from the data (mu < 0) exp overflows: the solver steps back
            return get_array_module(w).exp(-p)

    def _linearize(self, w):
        t = self._forward(w)
        return t, _TransmissionJacobian(self, t)

    def _jacobian(self, w):
        return self._linearize(w)[1]


class _TransmissionJacobian(LinearOperator):
    def __init__(self, model, t):
        self.m, self.t = model, t
        super().__init__(dtype=model.dtype, dims=model.dims, dimsd=model.dimsd, name=f"J({model.name})")

    def _matvec(self, dw):
        m = self.m
        dp = m.radon.forward(m._attenuation(dw).reshape(m.geom.shape))
        return (-self.t * dp).ravel()

    def _rmatvec(self, r):
        m = self.m
        g = m.radon.adjoint(-self.t * r.reshape(self.t.shape), single=True)
        return (m.mu[:, None, None] * g[None]).ravel()


class XRFTomographyModel(NonlinearOperator):
    r"""Fluorescence sinograms ``(Ne, K, S)`` of the maps ``(Ne, n0, n1)``, the incident beam attenuated on its way in.

    Parameters
    ----------
    geom : :class:`~mmip_tomography.geometry.Geometry`
    mu : array-like, shape ``(Ne,)``
        Attenuation per unit concentration per pixel of path (used with ``attenuation="self"``).
    attenuation : :obj:`str`
        One of :data:`ATTENUATION_MODES`: ``"self"`` (nonlinear), ``"map"`` (``attenuation_map`` fixed: linear),
        ``"none"`` (linear, no self-absorption).
    matrix : array, shape ``(n0, n1)``, optional
        Known attenuation added to :math:`\sum_e \mu_e W_e` (``"self"``).
    attenuation_map : array, shape ``(n0, n1)``, optional
        The whole attenuation map (``"map"``).
    """

    def __init__(self, geom: Geometry, mu, attenuation="self", matrix=None, attenuation_map=None, dtype="float64",
                 xp=np, name=None):
        if attenuation not in ATTENUATION_MODES:
            msg = f"attenuation must be one of {ATTENUATION_MODES}; got {attenuation!r}"
            raise ConfigError(msg)
        dtype = np.dtype(dtype)
        self.geom, self.mode = geom, attenuation
        self.mu = xp.asarray(_coefficients(mu, np.size(mu), dtype))
        self.ne = len(self.mu)
        self.sampling = ray_sampling(geom, dtype, xp)
        self.fixed = None  # attenuation A of the samples when it does not depend on the unknowns
        if attenuation == "map":
            if attenuation_map is None:
                msg = "attenuation 'map' needs an attenuation_map"
                raise ConfigError(msg)
            self.fixed = self._beam(self.sampling.forward(xp.asarray(attenuation_map, dtype=dtype)))
        elif attenuation == "none":
            self.fixed = xp.ones(self.sampling.out_shape, dtype=dtype)
        self.offset = None if matrix is None or attenuation != "self" else \
            self.sampling.forward(xp.asarray(matrix, dtype=dtype))
        super().__init__(dims=(self.ne, *geom.shape), dimsd=(self.ne, *geom.sinogram_shape), dtype=dtype,
                         name=name or f"XRFTomographyModel[{attenuation}]")

    def _beam(self, m):
        """Attenuation of the incident beam at each sample: :math:`\\exp(-\\Delta t\\, C m)` along the rays."""
        ncp = get_array_module(m)
        c = ncp.cumsum(m, axis=-1)
        c -= m  # exclusive: the sample's own attenuation is not in front of it
        c *= -self.geom.step
        with np.errstate(over="ignore"):  # far from the data (mu < 0) exp overflows: the solver steps back
            return ncp.exp(c, out=c)

    def _state(self, w):
        a = self.sampling.forward(w)  # (K, S, T, Ne)
        if self.fixed is not None:
            return a, self.fixed
        m = a @ self.mu
        if self.offset is not None:
            m += self.offset
        return a, self._beam(m)

    def _emit(self, a, beam):
        r""":math:`\Delta t \sum_t a_e A` for every element: one batched product per ray, ``(Ne, K, S)``."""
        ncp = get_array_module(a)
        return self.geom.step * ncp.moveaxis(ncp.matmul(beam[:, :, None, :], a)[:, :, 0, :], -1, 0)

    def _forward(self, w):
        return self._emit(*self._state(w))

    def _linearize(self, w):
        a, beam = self._state(w)
        return self._emit(a, beam), _XRFJacobian(self, a, beam)

    def _jacobian(self, w):
        return self._linearize(w)[1]


class _XRFJacobian(LinearOperator):
    def __init__(self, model, a, beam):
        self.m, self.a, self.beam = model, a, beam
        super().__init__(dtype=model.dtype, dims=model.dims, dimsd=model.dimsd, name=f"J({model.name})")

    def _matvec(self, dw):
        m = self.m
        da = m.sampling.forward(dw.reshape(m.dims))
        dy = m._emit(da, self.beam)
        if m.fixed is None:  # through the attenuation: - dt * sum_t a_e A dt C(S dmu)
            dm = da @ m.mu
            dc = m.geom.step * (get_array_module(dm).cumsum(dm, axis=-1) - dm)
            dy -= m._emit(self.a, self.beam * dc)
        return dy.ravel()

    def _rmatvec(self, r):
        m = self.m
        ncp = get_array_module(r)
        r = r.reshape(m.dimsd)
        rk = ncp.moveaxis(r, 0, -1)  # (K, S, Ne)
        beam = m.geom.step * self.beam
        if m.fixed is None:
            b = ncp.matmul(self.a, rk[..., None])[..., 0]  # sum_e r_e a_e
            b *= beam
            b *= -m.geom.step  # the gradient in dt C S mu
            gm = ncp.flip(ncp.cumsum(ncp.flip(b, -1), axis=-1), -1)  # C^T: reverse exclusive cumulative sum
            gm -= b
            # per sample: dt r_e A + mu_e gm, written once as the product (T x 2) @ (2 x Ne) of every ray
            coef = ncp.empty((*rk.shape[:2], 2, m.ne), dtype=rk.dtype)
            coef[:, :, 0, :], coef[:, :, 1, :] = rk, m.mu
            g = ncp.matmul(ncp.stack([beam, gm], axis=-1), coef)
        else:
            g = beam[..., None] * rk[:, :, None, :]  # d/da_e: dt r_e A
        return m.sampling.adjoint(g).ravel()
