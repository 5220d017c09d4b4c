r"""Forward models of transmission and fluorescence tomography on element concentration maps.

Unknown: concentrations :math:`W` of shape ``(Ne, n0, n1)``. The attenuation map (per pixel of path) is
:math:`\mu = \sum_e \mu_e W_e + \mu_0`, with :math:`\mu_e` the attenuation per unit concentration and :math:`\mu_0` an
optional known map (the matrix). :math:`S` samples a map along the rays (:mod:`~mmip_tomography.geometry`),
:math:`\Delta t` is the step along a ray and :math:`C` the cumulative sum along it by the trapezoid rule,
:math:`(Cu)_t = \sum_{t' < t} u_{t'} + u_t / 2` (second order; rays start outside the slice).

* Transmission: :math:`T_{ks} = \exp\!\big(-\Delta t \sum_t (S\mu)_{kst}\big)` (Beer-Lambert; data :math:`I/I_0`).
* Fluorescence of element :math:`e`: :math:`F_{e,ks} = \Delta t \sum_t (S W_e)_{kst}\, A_{kst} X_{e,kst}` with the
  incident beam's attenuation :math:`A = \exp(-\Delta t\, C S\mu)` on its way to each emitting sample
  (self-absorption of the probe) and the emitted line's on its way out, :math:`X_e = \operatorname{mean}_d
  \exp(-L_d \mu_{\text{line},e})`, :math:`\mu_{\text{line},e} = \sum_k b_{ek} W_k (+ \text{known})`, :math:`L_d` the
  path integrals to detector :math:`d` (:class:`~mmip_tomography.geometry.ExitPaths`); :math:`X = 1` without
  ``mu_line``.

The fluorescence Jacobian has the linear part and the terms through the beam's and the lines' attenuation:

.. math:: \delta F_e = \Delta t \sum_t \big[(S\,\delta W_e) A X_e - (S W_e) X_e A\, \Delta t\, C S\,\delta\mu
   - (S W_e) A \operatorname{mean}_d X_{e,d} L_d \textstyle\sum_k b_{ek} \delta W_k\big],
   \quad \delta\mu = \sum_e \mu_e\, \delta W_e .

Both adjoints gather everything per sample first and make **one** transposed sampling pass for all elements.
"""

__all__ = ["TransmissionModel", "XRFTomographyModel", "ATTENUATION_MODES"]

from dataclasses import replace

import numpy as np
from pylops import LinearOperator

from multimodal_ip.backend import get_array_module
from multimodal_ip.errors import ConfigError, ShapeError
from multimodal_ip.operators import NonlinearOperator

from .geometry import ExitPaths, Geometry, ray_sampling

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
    r"""Fluorescence sinograms ``(Ne, K, S)`` of the maps ``(Ne, n0, n1)``, the incident beam attenuated on its way in
    and, with ``mu_line`` (or ``line_maps``), each element's line attenuated on its way out to the detector(s).

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
    mu_line : array, shape ``(Ne, Ne)``, optional
        ``mu_line[e, k]``: attenuation of element ``e``'s line per unit concentration of element ``k`` per pixel
        (``"self"``): the line's map is :math:`\sum_k b_{ek} W_k` (+ ``line_matrix[e]``).
    line_matrix : array, shape ``(Ne, n0, n1)``, optional
        Known attenuation at each line's energy (``"self"``).
    line_maps : array, shape ``(Ne, n0, n1)``, optional
        The whole attenuation map at each line's energy, fixed (``"map"``).
    detectors : sequence of float
        Detector directions, radians from the beam (:mod:`~mmip_tomography.geometry`); the data are the mean over
        the detectors. Default one detector at 90 degrees.
    """

    def __init__(self, geom: Geometry, mu, attenuation="self", matrix=None, attenuation_map=None, dtype="float64",
                 xp=np, name=None, mu_line=None, line_matrix=None, line_maps=None, detectors=(np.pi / 2,),
                 block=None):
        self._setting = dict(mu=mu, attenuation=attenuation, matrix=matrix, attenuation_map=attenuation_map,
                             dtype=dtype, xp=xp, mu_line=mu_line, line_matrix=line_matrix, line_maps=line_maps,
                             detectors=detectors)
        self._parts: list = []
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
        self._lines(mu_line, line_matrix, line_maps, detectors, dtype, xp)
        super().__init__(dims=(self.ne, *geom.shape), dimsd=(self.ne, *geom.sinogram_shape), dtype=dtype,
                         name=name or f"XRFTomographyModel[{attenuation}{'+lines' if self.exits else ''}]")
        self.block = block

    # ---- blocks of angles: every angle's rays are independent, so a block is the model of its angles ----------
    @property
    def block(self):
        """Angles per block (``None``: all at once): each block is evaluated as the model of its angles alone, so
        an evaluation's temporaries are one block's (:meth:`block_for_bytes`); results equal the unblocked model's."""
        return self._block

    @block.setter
    def block(self, block):
        k = len(self.geom.angles)
        self._block = None if block is None or int(block) >= k else max(1, int(block))
        self._parts = []
        if self._block is not None:  # set-up: the sub-models (their sampling matrices together: the whole one's)
            for i in range(0, k, self._block):
                sl = slice(i, min(i + self._block, k))
                sub = replace(self.geom, angles=self.geom.angles[sl])
                self._parts.append((sl, XRFTomographyModel(sub, **self._setting)))

    def angle_bytes(self) -> int:
        """Bytes of temporaries one angle adds to an evaluation: samples of every map along every ray, the beam's
        attenuation and the products of the adjoint (with the lines: their paths and attenuations per detector)."""
        per = self.geom.bins * self.geom.samples * np.dtype(self.dtype).itemsize
        return int(per * (3 * self.ne + 4 + (3 * self.ne * len(self.exits) if self.exits else 0)))

    def block_for_bytes(self, target) -> int:
        """Angles per block so that one block's temporaries stay under ``target`` bytes (at least 1)."""
        return max(1, int(target // max(self.angle_bytes(), 1)))

    def _lines(self, mu_line, line_matrix, line_maps, detectors, dtype, xp):
        """The emitted lines' attenuation: ``self.exits`` (one :class:`ExitPaths` per detector, empty: none),
        ``self.b`` (``(Ne, Ne)``, from the unknowns) or ``self.fixed_exit`` (fixed maps)."""
        self.exits, self.b, self.line_offset, self.fixed_exit = [], None, None, None
        if self.mode == "self" and mu_line is not None:
            b = np.asarray(mu_line, dtype=dtype)
            if b.shape != (self.ne, self.ne) or not np.all(np.isfinite(b)) or np.any(b < 0):
                msg = (f"mu_line: need ({self.ne}, {self.ne}) finite values >= 0 (line of element e, attenuating "
                       f"element k); got shape {b.shape}")
                raise ShapeError(msg)
            self.b = xp.asarray(b)
        elif self.mode == "map" and line_maps is not None:
            line_maps = xp.asarray(line_maps, dtype=dtype)
        else:
            return
        detectors = np.atleast_1d(np.asarray(detectors, dtype=float))
        if detectors.size < 1 or not np.all(np.isfinite(detectors)):
            msg = f"detectors: need one or more finite angles (radians from the beam); got {list(detectors)}"
            raise ConfigError(msg)
        self.exits = [ExitPaths(self.geom, d, dtype, xp) for d in detectors]
        if self.b is None:
            self.fixed_exit = self._exit(line_maps)[0]
        elif line_matrix is not None:
            lm = xp.asarray(line_matrix, dtype=dtype).reshape(self.ne, *self.geom.shape)
            self.line_offset = [p.forward(lm) for p in self.exits]

    def _exit(self, maps, w=None):
        r"""Mean over the detectors of :math:`\exp(-L_d)`, :math:`L_d` the path integral of each line's map to
        detector ``d``, ``(K, S, T, Ne)``, and the per-detector factors (for the Jacobian)."""
        ncp = get_array_module(maps)
        parts = []
        for i, p in enumerate(self.exits):
            if w is None:
                path = p.forward(maps)
            else:  # from the unknowns: the paths of the element maps, mixed by b (linear, so in either order)
                path = p.forward(w) @ self.b.T
                if self.line_offset is not None:
                    path += self.line_offset[i]
            with np.errstate(over="ignore"):
                parts.append(ncp.exp(-path))
        return sum(parts[1:], parts[0]) / len(parts), parts

    def _beam(self, m):
        r"""Attenuation of the incident beam at each sample: :math:`\exp(-\Delta t\, C m)` along the rays."""
        ncp = get_array_module(m)
        c = ncp.cumsum(m, axis=-1)
        c -= 0.5 * m  # trapezoid rule (second order): half of the sample's own step is in front of it
        c *= -self.geom.step
        with np.errstate(over="ignore"):  # far from the data (mu < 0) exp overflows: the solver steps back
            return ncp.exp(c, out=c)

    def _state(self, w):
        """Samples ``a`` of the maps, the beam's attenuation, the emitters ``a X`` (line attenuation ``X``
        included) and the per-detector factors (``None`` unless they depend on ``w``)."""
        a = self.sampling.forward(w)  # (K, S, T, Ne)
        parts = None
        if self.b is not None:
            x, parts = self._exit(None, w)
            ax = a * x
        elif self.fixed_exit is not None:
            ax = a * self.fixed_exit
        else:
            ax = a
        if self.fixed is not None:
            return a, self.fixed, ax, parts
        m = a @ self.mu
        if self.offset is not None:
            m += self.offset
        return a, self._beam(m), ax, parts

    def _emit(self, a, beam):
        r""":math:`\Delta t \sum_t a_e A` for every element: one batched product per ray, ``(Ne, K, S)``."""
        ncp = get_array_module(a)
        return self.geom.step * ncp.moveaxis(ncp.matmul(beam[:, :, None, :], a)[:, :, 0, :], -1, 0)

    def _forward(self, w):
        if self._parts:
            out = get_array_module(w).empty(self.dimsd, dtype=self.dtype)
            for sl, sub in self._parts:
                out[:, sl] = sub._forward(w)
            return out
        a, beam, ax, _ = self._state(w)
        return self._emit(ax, beam)

    def _linearize(self, w):
        if self._parts:  # the Jacobian keeps the point, not the samples: each product remakes a block's state
            return self._forward(w), _BlockedJacobian(self, w)
        state = self._state(w)
        return self._emit(state[2], state[1]), _XRFJacobian(self, *state)

    def _jacobian(self, w):
        return self._linearize(w)[1]


class _XRFJacobian(LinearOperator):
    def __init__(self, model, a, beam, ax, parts):
        self.m, self.a, self.beam, self.ax, self.parts = model, a, beam, ax, parts
        super().__init__(dtype=model.dtype, dims=model.dims, dimsd=model.dimsd, name=f"J({model.name})")

    def _x(self):
        m = self.m
        if m.fixed_exit is not None:
            return m.fixed_exit
        return sum(self.parts[1:], self.parts[0]) / len(self.parts)

    def _matvec(self, dw):
        m = self.m
        dw = dw.reshape(m.dims)
        da = m.sampling.forward(dw)
        dy = m._emit(da if self.parts is None and m.fixed_exit is None else da * self._x(), self.beam)
        if m.fixed is None:  # through the attenuation: - dt * sum_t a_e X_e A dt C(S dmu)
            dm = da @ m.mu
            dc = m.geom.step * (get_array_module(dm).cumsum(dm, axis=-1) - 0.5 * dm)
            dy -= m._emit(self.ax, self.beam * dc)
        if self.parts is not None:  # through the lines' attenuation: - dt * sum_t a_e A X_e,d dL_e,d / nd
            for p, x in zip(m.exits, self.parts):
                dy -= m._emit(self.a * x * (p.forward(dw) @ m.b.T), self.beam) / len(m.exits)
        return dy.ravel()

    def _rmatvec(self, r):
        m = self.m
        ncp = get_array_module(r)
        r = r.reshape(m.dimsd)
        rk = ncp.moveaxis(r, 0, -1)  # (K, S, Ne)
        beam = m.geom.step * self.beam
        lines = self.parts is not None or m.fixed_exit is not None
        if m.fixed is None:
            b = ncp.matmul(self.ax, rk[..., None])[..., 0]  # sum_e r_e a_e X_e
            b *= beam
            b *= -m.geom.step  # the gradient in dt C S mu
            gm = ncp.flip(ncp.cumsum(ncp.flip(b, -1), axis=-1), -1)  # C^T: reverse cumulative sum, half own step
            gm -= 0.5 * b
            if lines:
                g = beam[..., None] * rk[:, :, None, :] * self._x() + gm[..., None] * m.mu
            else:
                # per sample: dt r_e A + mu_e gm, written once as the product (T x 2) @ (2 x Ne) of every ray
                coef = ncp.empty((*rk.shape[:2], 2, m.ne), dtype=rk.dtype)
                coef[:, :, 0, :], coef[:, :, 1, :] = rk, m.mu
                g = ncp.matmul(ncp.stack([beam, gm], axis=-1), coef)
        else:
            g = beam[..., None] * rk[:, :, None, :]  # d/da_e: dt r_e A
            if lines:
                g = g * self._x()
        out = m.sampling.adjoint(g)
        if self.parts is not None:
            h = beam[..., None] * rk[:, :, None, :] * self.a  # dt r_e A a_e, then per detector X_e,d / nd
            for p, x in zip(m.exits, self.parts):
                out -= p.adjoint((h * x / len(m.exits)) @ m.b)
        return out.ravel()


class _BlockedJacobian(LinearOperator):
    """The Jacobian of a blocked model at ``w``: each product runs block by block (a block's state made, used and
    dropped), the adjoint summing the blocks' gradients."""

    def __init__(self, model, w):
        self.m, self.w = model, w
        super().__init__(dtype=model.dtype, dims=model.dims, dimsd=model.dimsd, name=f"J({model.name})")

    def _matvec(self, dw):
        ncp = get_array_module(dw)
        out = ncp.empty(self.m.dimsd, dtype=self.m.dtype)
        for sl, sub in self.m._parts:
            out[:, sl] = sub._linearize(self.w)[1].matvec(dw).reshape(sub.dimsd)
        return out.ravel()

    def _rmatvec(self, r):
        r = r.reshape(self.m.dimsd)
        ncp = get_array_module(r)
        g = None
        for sl, sub in self.m._parts:
            gb = sub._linearize(self.w)[1].rmatvec(ncp.ascontiguousarray(r[:, sl]).ravel())
            g = gb if g is None else g.__iadd__(gb)
        return g
