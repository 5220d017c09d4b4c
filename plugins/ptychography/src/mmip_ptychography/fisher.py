"""Cramer-Rao bounds of scan positions: the Fisher information each diffraction pattern carries about its position,
with the object and probe known (per position, 2 x 2) or unknown (a Schur complement of the Gauss-Newton operator)."""

__all__ = ["fisher_weight", "position_derivatives", "position_fisher", "position_bounds", "nuisance_fisher",
           "nuisance_bounds"]

import warnings

import numpy as np
from mmip_scanprobe import extract_patches

from multimodal_ip.backend import fft2c
from multimodal_ip.errors import ConfigError

from .curvature import window_illumination
from .ptychography_model import PtychographyModel

#: the sub-pixel window models :func:`position_derivatives` knows
MODELS = ("cubic", "fourier")


def fisher_weight(photons_per_unit=None, sigma=None) -> float:
    r"""The Fisher information per unit change of a pattern's amplitude :math:`|\psi|` along its phase direction.

    Poisson counts :math:`N \sim \mathrm{Poisson}(p|\psi|^2)`: :math:`(\partial_\theta I)^2 p / I = 4p
    (\partial_\theta|\psi|)^2`, weight :math:`4p`; Gaussian noise of standard deviation :math:`\sigma` on the
    amplitudes: :math:`1/\sigma^2`. (The ptychography term's losses have the same curvature: ``poisson``
    :math:`4p`, ``amplitude`` with ``photon_weighted`` its scale :math:`4p`.)

    Parameters
    ----------
    photons_per_unit : :obj:`float`, optional
        Photon scale :math:`p` of the data (counts = ``p * intensity``, the term's attribute ``photons_per_unit``).
    sigma : :obj:`float`, optional
        Standard deviation of Gaussian noise on the amplitudes (instead of ``photons_per_unit``).

    Returns
    -------
    weight : :obj:`float`
        :math:`4p` or :math:`1/\sigma^2`.

    Raises
    ------
    ConfigError
        Neither or both given, or a value that is not finite and positive.
    """
    if (photons_per_unit is None) == (sigma is None):
        msg = "give exactly one noise model: photons_per_unit (Poisson counts) or sigma (Gaussian amplitudes)"
        raise ConfigError(msg)
    value = float(photons_per_unit if sigma is None else sigma)
    if not (np.isfinite(value) and value > 0):
        name = "photons_per_unit" if sigma is None else "sigma"
        msg = f"{name} must be finite and > 0 for a Cramer-Rao bound (noise-free data bound nothing); got {value!r}"
        raise ConfigError(msg)
    return 4.0 * value if sigma is None else 1.0 / value**2


def _complex_model(obj, probe, positions, refine):
    """A :class:`PtychographyModel` of the complex object ``obj`` (one map, coupling 1: ``z = x + i w``) and its
    packed input at ``obj``, ``probe`` and ``positions`` (for what ``refine`` names)."""
    z = np.asarray(obj, dtype=complex)
    pos = np.asarray(positions, dtype=float)
    inside = np.clip(pos, 0, np.subtract(z.shape, np.shape(probe)))  # the model's start: refined ones may wander
    model = PtychographyModel(np.asarray(probe, dtype=complex), inside, z.shape, 1, refine=refine,
                              coefficients=[1.0])
    v = [z.real.ravel(), z.imag.ravel()]
    if "probe" in model.refine:
        v.append(np.ascontiguousarray(probe, dtype=complex).view(float).ravel())
    v.append(pos.ravel())
    return model, np.concatenate(v)


def position_derivatives(obj, probe, positions, model="cubic", margin=8):
    r"""The patterns :math:`\psi_j` and their derivatives :math:`\partial\psi_j/\partial p_{jk}` with respect to
    each position's row and column.

    Parameters
    ----------
    obj : :obj:`numpy.ndarray`
        Complex object ``(n0, n1)``, :math:`z = x + i \sum_e a_e w_e`.
    probe : :obj:`numpy.ndarray`
        Complex probe ``(Np0, Np1)``.
    positions : :obj:`numpy.ndarray`
        ``(J, 2)`` top-left (row, col) window positions, px.
    model : :obj:`str`, optional
        ``"cubic"``: the reconstruction's windows (:class:`~mmip_scanprobe.CubicPatches`, through
        :class:`~mmip_ptychography.PtychographyModel`); ``"fourier"``: band-limited windows (each cut from a patch
        ``margin`` px larger on every side, the object extended by its edge values, shifted by a Fourier phase
        ramp: the model ``mmip simulate --position-jitter`` makes its data with).
    margin : :obj:`int`, optional
        The Fourier model's extra pixels on every side.

    Returns
    -------
    psi : :obj:`numpy.ndarray`
        ``(J, Np0, Np1)`` complex far fields.
    dpsi : :obj:`numpy.ndarray`
        ``(J, 2, Np0, Np1)``: derivative with respect to the row (``[:, 0]``) and column (``[:, 1]``).

    Raises
    ------
    ConfigError
        An unknown ``model``.
    """
    pos = np.asarray(positions, dtype=float)
    if model == "cubic":
        op, v = _complex_model(obj, probe, pos, ("positions",))
        psi, jac = op.linearize(v)
        start = op.layout.bounds["positions"][0]
        dpsi = []
        for k in range(2):  # one tangent moves every position at once: a pattern depends on its own position only
            dv = np.zeros(v.size)
            dv[start + k : start + 2 * len(pos) : 2] = 1.0
            dpsi.append(np.asarray(jac.matvec(dv)).reshape(op.dimsd))
        return np.asarray(psi).reshape(op.dimsd), np.stack(dpsi, axis=1)
    if model != "fourier":
        msg = f"position model must be one of {MODELS}; got {model!r}"
        raise ConfigError(msg)
    from mmip_scanprobe import BandLimitedWindows

    probe = np.asarray(probe, dtype=complex)
    windows, d0, d1 = BandLimitedWindows(np.asarray(obj, dtype=complex), probe.shape, margin)(pos, derivatives=True)
    return fft2c(probe * windows), np.stack([fft2c(probe * d0), fft2c(probe * d1)], axis=1)


def position_fisher(obj, probe, positions, weight, model="cubic"):
    r"""Per-position Fisher information of the scan positions with the object and probe known.

    .. math:: F_j = w \sum_k \Re(\bar u_k\, \partial_a \psi_{jk})\, \Re(\bar u_k\, \partial_b \psi_{jk}),
        \quad u = \psi/|\psi|

    which for Poisson counts (:math:`w = 4p`) is :math:`p \sum_k \partial_a I_k\, \partial_b I_k / I_k`.

    Parameters
    ----------
    obj : :obj:`numpy.ndarray`
        Complex object ``(n0, n1)``.
    probe : :obj:`numpy.ndarray`
        Complex probe ``(Np0, Np1)``.
    positions : :obj:`numpy.ndarray`
        ``(J, 2)`` positions, px.
    weight : :obj:`float`
        :func:`fisher_weight` of the noise model.
    model : :obj:`str`, optional
        Window model, see :func:`position_derivatives`.

    Returns
    -------
    fisher : :obj:`numpy.ndarray`
        ``(J, 2, 2)`` in 1/px^2 (row, column).
    """
    psi, dpsi = position_derivatives(obj, probe, positions, model)
    a = np.abs(psi)
    u = np.where(a > 0, psi / np.where(a > 0, a, 1), 0)[:, None]
    g = (u.conj() * dpsi).real.reshape(len(psi), 2, -1)
    return float(weight) * np.einsum("jak,jbk->jab", g, g)


def position_bounds(fisher):
    r"""Cramer-Rao bounds from per-position Fisher matrices.

    Parameters
    ----------
    fisher : :obj:`numpy.ndarray`
        ``(J, 2, 2)`` symmetric matrices (:func:`position_fisher`).

    Returns
    -------
    bound : :obj:`numpy.ndarray`
        ``(J,)``: :math:`\sqrt{\operatorname{tr} F_j^{-1}}`, the smallest rms distance (px) an unbiased estimate
        of the position can reach; ``inf`` where :math:`F_j` is singular (a window that says nothing).
    per_coordinate : :obj:`numpy.ndarray`
        ``(J, 2)``: :math:`\sqrt{(F_j^{-1})_{kk}}` for the row and the column.
    """
    f = np.asarray(fisher, dtype=float)
    det = f[:, 0, 0] * f[:, 1, 1] - f[:, 0, 1] * f[:, 1, 0]
    ok = det > 1e-12 * np.maximum(f[:, 0, 0] * f[:, 1, 1], np.finfo(float).tiny)
    safe = np.where(ok, det, 1.0)
    var = np.where(ok[:, None], np.stack([f[:, 1, 1], f[:, 0, 0]], axis=1) / safe[:, None], np.inf)
    return np.sqrt(var.sum(axis=1)), np.sqrt(var)


def _gauss_newton(op, v, weight):
    r"""The Gauss-Newton (Fisher) operator :math:`H\,dv = \Re J^H (w\, u \Re(\bar u J dv))` of the model ``op`` at
    ``v`` for a loss with curvature ``weight`` along the phase direction :math:`u = \psi/|\psi|` (the ``poisson``
    and ``amplitude`` losses: :meth:`~multimodal_ip.losses.Loss.curvature_sqrt`)."""
    psi, jac = op.linearize(v)
    a = np.abs(psi).ravel()
    u = np.where(a > 0, psi.ravel() / np.where(a > 0, a, 1), 0)

    def hvp(dv):
        return np.asarray(jac.rmatvec(weight * u * (u.conj() * jac.matvec(dv)).real)).real

    return hvp


def _object_diagonal(op, obj, probe, positions, weight):
    """An estimate of the diagonal of the Gauss-Newton operator over the object (and probe) unknowns, for the
    Jacobi preconditioner: half the illumination (the phase projection keeps about half of each direction)."""
    corners = np.clip(np.rint(positions).astype(int), 0, np.array(obj.shape) - np.array(probe.shape))
    light = window_illumination(obj.shape, np.abs(probe) ** 2, corners)
    parts = [light.ravel(), light.ravel()]
    if "probe" in op.refine:
        seen = extract_patches(np.abs(obj) ** 2, corners, probe.shape).sum(axis=0)
        parts.append(np.repeat(seen.ravel(), 2))
    d = 0.5 * weight * np.concatenate(parts)
    return np.where(d > 0, d, max(float(d.max()), 1.0))


def nuisance_fisher(obj, probe, positions, weight, refine_probe=True, rtol=1e-8, maxiter=None, dense=False):
    r"""Fisher information of all scan positions with the object (and the probe) unknown: the Schur complement
    :math:`S = H_{pp} - H_{po} H_{oo}^{+} H_{op}` of the Gauss-Newton operator :math:`H` of the reconstruction's
    model (:class:`~mmip_ptychography.PtychographyModel`, cubic windows) at ``obj``, ``probe``, ``positions``.

    :math:`H_{oo}^{+} H_{op} e_i` is solved by conjugate gradients (Jacobi-preconditioned), one solve per position
    coordinate. The exact invariances of the object unknowns (global phase of object and of probe, object-probe
    scale) are null modes of :math:`H_{oo}` that :math:`H_{op}` does not reach: the solves are consistent and
    :math:`S` does not depend on them. The common shift of the scan that the object absorbs is left in :math:`S`
    (a near-null mode); :func:`nuisance_bounds` removes it.

    Parameters
    ----------
    obj : :obj:`numpy.ndarray`
        Complex object ``(n0, n1)``.
    probe : :obj:`numpy.ndarray`
        Complex probe ``(Np0, Np1)``.
    positions : :obj:`numpy.ndarray`
        ``(J, 2)`` positions, px.
    weight : :obj:`float`
        :func:`fisher_weight` of the noise model.
    refine_probe : :obj:`bool`, optional
        The probe is unknown too (default); ``False``: only the object.
    rtol : :obj:`float`, optional
        Relative residual at which each CG solve stops.
    maxiter : :obj:`int`, optional
        Iteration cap of each CG solve (default: scipy's).
    dense : :obj:`bool`, optional
        Build :math:`H` column by column and use its pseudo-inverse instead of CG (small problems, tests).

    Returns
    -------
    schur : :obj:`numpy.ndarray`
        ``(2J, 2J)`` symmetric, ordered ``(p_0 row, p_0 col, p_1 row, ...)``, in 1/px^2.
    """
    from scipy.sparse.linalg import LinearOperator, cg

    obj, probe = np.asarray(obj, dtype=complex), np.asarray(probe, dtype=complex)
    pos = np.asarray(positions, dtype=float)
    op, v = _complex_model(obj, probe, pos, ("probe", "positions") if refine_probe else ("positions",))
    hvp = _gauss_newton(op, v, float(weight))
    start = op.layout.bounds["positions"][0]
    n2 = 2 * len(pos)

    def unit(i):
        e = np.zeros(v.size)
        e[i] = 1.0
        return e

    if dense:
        h = np.stack([hvp(unit(i)) for i in range(v.size)], axis=1)
        h = 0.5 * (h + h.T)
        hoo, hop = h[:start, :start], h[:start, start:]
        schur = h[start:, start:] - hop.T @ np.linalg.pinv(hoo, rcond=1e-10, hermitian=True) @ hop
        return 0.5 * (schur + schur.T)
    inner = LinearOperator((start, start), matvec=lambda y: hvp(np.concatenate([y, np.zeros(n2)]))[:start],
                           dtype=float)
    diag = _object_diagonal(op, obj, probe, pos, float(weight))
    precond = LinearOperator((start, start), matvec=lambda y: y / diag, dtype=float)
    schur = np.empty((n2, n2))
    stopped = 0
    for i in range(n2):
        col = hvp(unit(start + i))
        y, info = cg(inner, col[:start], rtol=rtol, atol=0.0, maxiter=maxiter, M=precond)
        stopped += info > 0
        schur[:, i] = col[start:] - hvp(np.concatenate([y, np.zeros(n2)]))[start:]
    if stopped:
        warnings.warn(f"nuisance_fisher: {stopped} of {n2} CG solves stopped at maxiter={maxiter} before rtol={rtol}: "
                      "the Schur complement is too large there (the bound too optimistic)", stacklevel=2)
    return 0.5 * (schur + schur.T)


def nuisance_bounds(schur):
    r"""Per-position Cramer-Rao bounds from the positions' Fisher information with the object unknown, the common
    shift of the scan removed (the object absorbs it: the bound is on the positions relative to their mean).

    Parameters
    ----------
    schur : :obj:`numpy.ndarray`
        ``(2J, 2J)`` (:func:`nuisance_fisher`).

    Returns
    -------
    bound : :obj:`numpy.ndarray`
        ``(J,)``: :math:`\sqrt{\operatorname{tr}}` of each position's 2 x 2 block of
        :math:`Q (Q^T S Q)^{-1} Q^T`, :math:`Q` an orthonormal basis of the displacements with zero mean.
    per_coordinate : :obj:`numpy.ndarray`
        ``(J, 2)``: the square roots of the diagonal (row, column).
    """
    s = np.asarray(schur, dtype=float)
    n2 = s.shape[0]
    shift = np.zeros((n2, 2))
    shift[0::2, 0] = shift[1::2, 1] = 1.0
    q = np.linalg.svd(np.eye(n2) - shift @ shift.T / (n2 // 2))[0][:, : n2 - 2]  # the zero-mean displacements
    cov = q @ np.linalg.pinv(q.T @ s @ q, hermitian=True) @ q.T
    var = np.clip(np.diag(cov), 0, None).reshape(-1, 2)
    return np.sqrt(var.sum(axis=1)), np.sqrt(var)
