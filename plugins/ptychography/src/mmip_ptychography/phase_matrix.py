r"""The object's phase beyond the element maps: refined coupling factors and a non-fluorescing matrix.

The paper ties :math:`\Im z = \sum_e a_e w_e`. In a real sample part of :math:`\Im z` comes from matter that does not
fluoresce, and the coefficients :math:`a_e` are known only roughly. :class:`PhaseCoupling` is the map in front of a
one-map ptychography model that loosens the tie with two optional calibration unknowns (``--refine coupling``,
``--refine matrix``):

.. math:: s = \sum_e a_e\, (1 + u_e / \sqrt{N})\, w_e + G_\sigma m

``coupling`` (:math:`u`, start: zeros) changes the start coefficients :math:`a_e` (the term's ``coupling``: the
file's, ``--coupling``'s or xraylib's) by the factor :math:`k_e = 1 + u_e/\sqrt N` (:math:`N` object pixels: the
scale gives :math:`u_e` about the curvature of one pixel of the maps; as the factor itself it had :math:`N` times
that, and L-BFGS reached half the accuracy, docs/real_samples.md): one factor per element map, or one global phase
scale when the term does not name its elements; ``matrix`` (:math:`m`, start: zeros) is an object-sized map,
smoothed by the separable Gaussian :math:`G_\sigma` of ``matrix_smoothing_px`` (:math:`\sigma`; ``0``: a free map,
then regularize it with ``--regularizer``). docs/real_samples.md has the model, its invariance and the measurements.
"""

__all__ = ["PhaseCoupling", "MODEL_UNKNOWNS", "DEFAULT_MATRIX_SMOOTHING_PX", "phase_invariance", "smoothing_matrix"]

import numpy as np
from pylops import LinearOperator

from multimodal_ip import Invariance
from multimodal_ip.backend import get_array_module
from multimodal_ip.errors import ConfigError
from multimodal_ip.operators import NonlinearOperator

from .coupling import DEFAULT_MATRIX_SMOOTHING_PX, MODEL_UNKNOWNS, PHASE_STEP


def smoothing_matrix(n, sigma_px):
    r"""``(n, n)`` Gaussian smoothing along one axis, each row normalised to sum 1 (no darkening at the edges).

    Parameters
    ----------
    n : :obj:`int`
        Length of the axis.
    sigma_px : :obj:`float`
        Standard deviation in pixels; ``0`` gives the identity.

    Returns
    -------
    :obj:`numpy.ndarray`
        The float64 matrix :math:`B`, :math:`(B a)_i = \sum_j B_{ij} a_j`.
    """
    if sigma_px == 0:
        return np.eye(n)
    d = np.subtract.outer(np.arange(n), np.arange(n)) / float(sigma_px)
    b = np.exp(-0.5 * d**2)
    return b / b.sum(axis=1, keepdims=True)


class PhaseCoupling(NonlinearOperator):
    r"""``[x; w; u; m; rest]`` to ``[x; s; rest]`` with :math:`s = \sum_e a_e k_e w_e + B_0 m B_1^T`,
    :math:`k_e = 1 + g u_e`, :math:`g = 1/\sqrt{N}` (``factors``).

    ``u`` (``coupling``) and ``m`` (``matrix``) are present only when refined; ``rest`` (the probe and position
    unknowns of the model after it) passes through unchanged.

    Parameters
    ----------
    shape : :obj:`tuple`
        Shape of ``x``, of each ``w_e`` and of ``m``.
    ne : :obj:`int`
        Number of element maps.
    coefficients : array-like, optional
        Start coefficients :math:`a_e` (default ones).
    refine : sequence of :obj:`str`, optional
        Which of ``MODEL_UNKNOWNS`` (``"coupling"``, ``"matrix"``) are inputs.
    n_factors : :obj:`int`, optional
        Length of ``u``: ``ne`` (one factor per element) or 1 (one global phase scale).
    smoothing_px : :obj:`float`, optional
        :math:`\sigma` of the Gaussian smoothing :math:`B_0, B_1` of ``m`` (0: none).
    n_rest : :obj:`int`, optional
        Length of the pass-through tail.
    dtype : :obj:`str`, optional
        Real dtype.

    Notes
    -----
    Bilinear in :math:`(u, w)`: :math:`\delta s = \sum_e a_e (k_e \delta w_e + g\,\delta u_e w_e) + B_0 \delta m
    B_1^T`; adjoint :math:`\bar w_e = a_e k_e \bar s`, :math:`\bar u_e = g\, a_e \langle w_e, \bar s\rangle`,
    :math:`\bar m = B_0^T \bar s B_1`.
    """

    def __init__(self, shape, ne, coefficients=None, refine=(), n_factors=None,
                 smoothing_px=DEFAULT_MATRIX_SMOOTHING_PX, n_rest=0, dtype="float64", name="PhaseCoupling"):
        unknown = [r for r in refine if r not in MODEL_UNKNOWNS]
        if unknown:
            msg = f"PhaseCoupling: can refine only {MODEL_UNKNOWNS}; got {unknown}"
            raise ConfigError(msg)
        sigma = float(smoothing_px) if not isinstance(smoothing_px, bool) else -1.0
        if not (np.isfinite(sigma) and sigma >= 0):
            msg = f"matrix_smoothing_px must be a finite number of pixels >= 0; got {smoothing_px!r}"
            raise ConfigError(msg)
        self.shape2, self.ne = tuple(int(s) for s in shape), int(ne)
        self.npix = int(np.prod(self.shape2))
        self.a = np.ones(self.ne) if coefficients is None else np.asarray(coefficients, dtype=float).ravel()
        self.refine = tuple(r for r in MODEL_UNKNOWNS if r in refine)
        self.nk = (int(n_factors) if n_factors is not None else self.ne) if "coupling" in self.refine else 0
        if self.nk not in (0, 1, self.ne):
            msg = f"coupling factors: need 1 (a global phase scale) or {self.ne} (one per element map); got {self.nk}"
            raise ConfigError(msg)
        self.nm = self.npix if "matrix" in self.refine else 0
        self.n_rest, self.sigma = int(n_rest), sigma
        #: :math:`g`: the factors' change per unit of ``u``
        self.gain = 1.0 / np.sqrt(self.npix)
        self.b0 = smoothing_matrix(self.shape2[0], sigma)
        self.b1 = smoothing_matrix(self.shape2[1], sigma)
        self.n_main = self.npix * (1 + self.ne)
        n_in = self.n_main + self.nk + self.nm + self.n_rest
        super().__init__((n_in,), (2 * self.npix + self.n_rest,), dtype=dtype, name=name)

    def split(self, v):
        """``(x, w (ne, npix), k or None, m (2-D) or None, rest)`` views of a packed input."""
        x, w = v[: self.npix], v[self.npix : self.n_main].reshape(self.ne, self.npix)
        at = self.n_main
        k = v[at : at + self.nk] if self.nk else None
        at += self.nk
        m = v[at : at + self.nm].reshape(self.shape2) if self.nm else None
        return x, w, k, m, v[at + self.nm :]

    def factors(self, u):
        r"""The factors :math:`k = 1 + g u` of the refined ``coupling`` ``u``.

        Parameters
        ----------
        u : array
            The ``coupling`` unknown (``n_factors``,).

        Returns
        -------
        array
            :math:`k`, the factors on the start coefficients :math:`a_e`.
        """
        return 1 + self.gain * u

    def coefficients(self, k, ncp, dtype):
        r"""The effective :math:`a_e k_e` (``ne``,) on ``ncp``, for the ``coupling`` unknown ``k`` (``None``: the
        start coefficients)."""
        a = ncp.asarray(self.a, dtype=dtype)
        return a if k is None else a * self.factors(k)

    def _smooth(self, m, adjoint=False):
        ncp = get_array_module(m)
        b0, b1 = ncp.asarray(self.b0, dtype=m.dtype), ncp.asarray(self.b1, dtype=m.dtype)
        return (b0.T @ m @ b1 if adjoint else b0 @ m @ b1.T).ravel()

    def phase(self, v):
        """The phase :math:`s` (``npix``,) at the packed input ``v``."""
        ncp = get_array_module(v)
        x, w, k, m, _ = self.split(v)
        s = self.coefficients(k, ncp, v.dtype) @ w
        return s if m is None else s + self._smooth(m)

    def matrix(self, m):
        r"""The matrix's contribution :math:`G_\sigma m` (2-D) of the unknown ``m``."""
        return self._smooth(m).reshape(self.shape2)

    def _forward(self, v):
        ncp = get_array_module(v)
        return ncp.concatenate([v[: self.npix], self.phase(v), v[self.n_main + self.nk + self.nm :]])

    def _jacobian(self, v):
        return _PhaseJacobian(self, v)


class _PhaseJacobian(LinearOperator):
    """The Jacobian of :class:`PhaseCoupling` at a point (see its Notes)."""

    def __init__(self, op, v):
        self.op = op
        ncp = get_array_module(v)
        _, self.w, self.k, _, _ = op.split(v)
        self.coef = op.coefficients(self.k, ncp, v.dtype)
        super().__init__(dtype=op.dtype, dims=op.dims, dimsd=op.dimsd, name="PhaseCouplingJacobian")

    def _matvec(self, dv):
        op, ncp = self.op, get_array_module(dv)
        dx, dw, dk, dm, rest = op.split(dv)
        ds = self.coef @ dw
        if dk is not None:
            ds = ds + (op.gain * ncp.asarray(op.a, dtype=dv.dtype) * (dk if op.nk == op.ne else dk[0])) @ self.w
        if dm is not None:
            ds = ds + op._smooth(dm)
        return ncp.concatenate([dx, ds, rest])

    def _rmatvec(self, r):
        op, ncp = self.op, get_array_module(r)
        rx, rs, rest = r[: op.npix], r[op.npix : 2 * op.npix], r[2 * op.npix :]
        parts = [rx, ncp.multiply(self.coef[:, None], rs[None, :]).ravel()]
        if op.nk:
            per = op.gain * ncp.asarray(op.a, dtype=r.dtype) * (self.w @ rs)
            parts.append(per if op.nk == op.ne else per.sum(keepdims=True))
        if op.nm:
            parts.append(op._smooth(rs.reshape(op.shape2), adjoint=True))
        parts.append(rest)
        return ncp.concatenate(parts)


def phase_invariance(op: PhaseCoupling, max_step=PHASE_STEP) -> Invariance | None:
    r"""The global phase :math:`z \to e^{it} z` of the loosened model, :math:`z = x + i s`: :math:`x' = x\cos t -
    s \sin t`; the change of :math:`s` goes to the maps in proportion to the current :math:`a_e k_e` (the least
    change of :math:`w`, as :func:`~mmip_ptychography.coupling.global_phase`; the matrix stays). ``None`` when every
    start coefficient is zero (no move where the current ones are).

    Parameters
    ----------
    op : :class:`PhaseCoupling`
        The model's phase map (its start coefficients, refined unknowns and smoothing).
    max_step : :obj:`float`, optional
        First trust region (rad) of the alignment.

    Returns
    -------
    :class:`~multimodal_ip.Invariance` or :obj:`None`
    """
    if not np.any(op.a):
        return None

    def apply(arrays, t):
        x, w = arrays["x"], arrays["w"]
        ncp = get_array_module(x)
        k = arrays.get("coupling")
        coef = op.coefficients(None if k is None else ncp.ravel(k), ncp, w.dtype)
        s = ncp.tensordot(coef, w, axes=1)
        m = arrays.get("matrix")
        if m is not None:
            s = s + op.matrix(m)
        c, sn = float(np.cos(t)), float(np.sin(t))
        ds = sn * x + (c - 1.0) * s
        norm = float(ncp.sum(coef * coef))
        if norm == 0:
            return {}
        return {"x": (c * x - sn * s).astype(x.dtype, copy=False),
                "w": (w + (coef / norm)[:, None, None] * ds[None]).astype(w.dtype, copy=False)}

    return Invariance(apply, max_step, "global phase")
