"""Scan positions at a known object and probe: a whole-pixel search, then per-position Levenberg-Marquardt steps
(:class:`PositionEstimator`)."""

__all__ = ["PositionEstimator", "PositionFit"]

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from mmip_scanprobe import BandLimitedWindows, CubicPatches, as_positions

from multimodal_ip.backend import fft2c, get_array_module, to_numpy
from multimodal_ip.errors import ConfigError

#: window models of :class:`PositionEstimator`
WINDOW_MODELS = ("band-limited", "cubic")
#: intensity below which the Poisson misfit's logarithm is held (a dark detector pixel)
POISSON_FLOOR = 1e-12
#: what :meth:`PositionEstimator.fit` returns for each position
ESTIMATES = ("local", "map", "mean")


@dataclass
class PositionFit:
    """What :meth:`PositionEstimator.fit` found.

    Parameters
    ----------
    positions : :obj:`numpy.ndarray`
        ``(J, 2)`` estimated top-left positions (pixels).
    misfit : :obj:`numpy.ndarray`
        ``(J,)`` each pattern's amplitude misfit there.
    iterations : :obj:`int`
        Levenberg-Marquardt iterations taken.
    history : :obj:`list` of :obj:`float`
        The total misfit after the search and after every iteration.
    posterior : ``PosteriorSummary``, optional
        With ``estimate="map"`` or ``"mean"``: the posterior of each position
        (``mmip_ptychography.position_posterior.PosteriorSummary``: its mean, its covariance, whose trace
        is the posterior-expected squared error of the mean, the grid's best point), else ``None``.
    """

    positions: np.ndarray
    misfit: np.ndarray
    iterations: int
    history: list = field(default_factory=list)
    posterior: Any = None


class PositionEstimator:
    r"""Per-position estimation of scan positions when the object and probe are known.

    Given the object and probe the patterns are independent, so each position is a 2-parameter least-squares
    problem: the amplitude misfit :math:`\phi_j(p) = \tfrac12 \| |F(P\,S_p z)| - \sqrt{d_j}\|^2`. :meth:`fit`
    takes an optional whole-pixel search of every offset within ``radius`` (the coarse start, for positions far
    from their nominal value), then Levenberg-Marquardt steps on each position with its own damping, from the exact
    2 x 2 Gauss-Newton block :math:`G_j = \Re\,m_k^T m_l`, :math:`m_k = \Re(\bar u \odot F(P\,\partial_k S_p z))`,
    :math:`u = \Psi/|\Psi|` (the blocks :class:`~mmip_ptychography.PtychographyCurvature` offers to the solvers).

    Parameters
    ----------
    z : array
        The complex object ``(n0, n1)``.
    probe : array
        The complex probe ``(Np0, Np1)``.
    data : array
        The measured intensities ``(J, Np0, Np1)``.
    window : :obj:`str`, optional
        ``"band-limited"`` (:class:`~mmip_scanprobe.BandLimitedWindows`, the interpolation a band-limited object
        has between its pixels) or ``"cubic"`` (:class:`~mmip_scanprobe.CubicPatches`, the reconstruction model's).
    margin : :obj:`int`, optional
        The band-limited patches' margin (pixels).
    photons_per_unit : :obj:`float`, optional
        The data's photon scale :math:`p` (counts = ``p * data``): the misfit is then the Poisson negative
        log-likelihood :math:`p \sum (|\Psi|^2 - d \log |\Psi|^2)` (efficient where counts are low, unlike the
        amplitude misfit); ``None``: the amplitude misfit.
    """

    def __init__(self, z, probe, data, window="band-limited", margin=8, photons_per_unit=None):
        if window not in WINDOW_MODELS:
            msg = f"position estimator window must be one of {WINDOW_MODELS}; got {window!r}"
            raise ConfigError(msg)
        self.photons = None if photons_per_unit is None else float(photons_per_unit)
        if self.photons is not None and not (np.isfinite(self.photons) and self.photons > 0):
            msg = f"position estimator photons_per_unit must be finite and > 0; got {photons_per_unit!r}"
            raise ConfigError(msg)
        ncp = get_array_module(z)
        self.window = window
        self.z = ncp.asarray(z, dtype=np.result_type(z.dtype, np.complex64))
        self.probe = ncp.asarray(probe, dtype=self.z.dtype)
        self.data = ncp.maximum(ncp.asarray(data, dtype=self.z.real.dtype), 0)
        self.amplitude = ncp.sqrt(self.data)
        self.shape = tuple(int(s) for s in self.probe.shape)
        self.band = BandLimitedWindows(self.z, self.shape, margin) if window == "band-limited" else None
        self.zp = ncp.pad(self.z, CubicPatches.PAD, mode="edge") if window == "cubic" else None

    def _windows(self, positions, derivatives=False):
        if self.band is not None:
            return self.band(positions, derivatives)
        sampler = CubicPatches(positions, self.shape, self.z.shape)
        rows = slice(None)
        out = sampler.sample(self.zp, rows)
        return (out, *sampler.derivatives(self.zp, rows)) if derivatives else out

    def misfit(self, positions, rows=slice(None)):
        """``(J,)``: each pattern's amplitude misfit with its window at ``positions``.

        Parameters
        ----------
        positions : :obj:`numpy.ndarray`
            ``(J, 2)`` top-left positions (pixels).
        rows : index, optional
            The patterns these positions are of (default all).

        Returns
        -------
        :obj:`numpy.ndarray`
        """
        psi = fft2c(self.probe * self._windows(as_positions(positions)))
        return np.asarray(to_numpy(self._misfit(psi, rows)), dtype=float)

    def _misfit(self, psi, rows):
        ncp = get_array_module(psi)
        if self.photons is not None:
            mu = psi.real**2 + psi.imag**2
            d = self.data[rows]
            return self.photons * (mu - d * ncp.log(ncp.maximum(mu, POISSON_FLOOR))).sum(axis=(1, 2))
        r = ncp.abs(psi) - self.amplitude[rows]
        return 0.5 * (r * r).sum(axis=(1, 2))

    def linearize(self, positions, rows=slice(None)):
        """``(misfit (J,), gradient (J, 2), Gauss-Newton blocks (J, 2, 2))`` at ``positions``.

        Parameters
        ----------
        positions : :obj:`numpy.ndarray`
            ``(J, 2)`` top-left positions (pixels).
        rows : index, optional
            The patterns these positions are of (default all).

        Returns
        -------
        :obj:`tuple` of :obj:`numpy.ndarray`
        """
        ncp = get_array_module(self.z)
        s, d0, d1 = self._windows(as_positions(positions), derivatives=True)
        psi = fft2c(self.probe * s)
        a = ncp.abs(psi)
        u = ncp.where(a > 0, psi / ncp.where(a > 0, a, 1), 0)
        # d misfit / d|psi| (amplitude: the residual; Poisson: 2 p (|psi| - d / |psi|)) and the curvature along u
        if self.photons is not None:
            r = 2 * self.photons * (a - self.data[rows] / ncp.maximum(a, POISSON_FLOOR**0.5))
            weight = 4 * self.photons
        else:
            r, weight = a - self.amplitude[rows], 1.0
        m = [(u.conj() * fft2c(self.probe * d)).real for d in (d0, d1)]
        grad = ncp.stack([(r * mk).sum(axis=(1, 2)) for mk in m], axis=1)
        blocks = weight * ncp.stack([ncp.stack([(mk * ml).sum(axis=(1, 2)) for ml in m], axis=1) for mk in m],
                                    axis=1)
        misfit = self._misfit(psi, rows)
        return tuple(np.asarray(to_numpy(v), dtype=float) for v in (misfit, grad, blocks))

    def search(self, positions, radius=2, step=1.0, keep=1):
        """The ``keep`` offsets of the grid ``-radius..radius`` (spacing ``step`` px) around each position with the
        lowest misfits, best first.

        Parameters
        ----------
        positions : :obj:`numpy.ndarray`
            ``(J, 2)`` start positions (pixels).
        radius : :obj:`float`, optional
            Half-width of the grid (pixels).
        step : :obj:`float`, optional
            Its spacing (pixels).
        keep : :obj:`int`, optional
            How many candidates per position.

        Returns
        -------
        :obj:`numpy.ndarray`
            ``(keep, J, 2)`` positions.
        """
        pos = as_positions(positions)
        grid = np.arange(-radius, radius + step / 2, step)
        offsets = np.array([(d0, d1) for d0 in grid for d1 in grid])
        values = np.stack([self.misfit(pos + d) for d in offsets])  # (offsets, J)
        best = np.argsort(values, axis=0, kind="stable")[:keep]  # (keep, J)
        return pos[None] + offsets[best]

    def fit(self, positions, iterations=50, radius=0.0, starts=3, max_step=1.0, tol=1e-3, estimate="local",
            bounds=None):
        """Estimate the positions: the search (when ``radius`` > 0), then Levenberg-Marquardt from each of the
        search's ``starts`` best offsets, keeping for each position the fit with the lowest misfit
        (``estimate="local"``); or from each position's posterior on a grid over the box ``positions +- radius``
        (:class:`~mmip_ptychography.PositionPosterior`, the Poisson likelihood, a uniform
        prior): its mean (``"mean"``, the least mean-square error on average over the prior: the best estimate
        where several minima lie within the box) or its highest point polished by Levenberg-Marquardt within the
        box (``"map"``, the global maximum-likelihood estimate there).

        Each iteration takes, for every position not yet converged, the damped Gauss-Newton step
        :math:`-(G_j + \\lambda_j \\,\\mathrm{tr}(G_j)/2\\, I)^{-1} g_j` (at most ``max_step`` px long), keeps it
        where the pattern's misfit decreases (:math:`\\lambda_j / 3`) and refuses it elsewhere
        (:math:`\\lambda_j \\times 4`). A position has converged when its accepted step is shorter than ``tol`` px.

        Parameters
        ----------
        positions : :obj:`numpy.ndarray`
            ``(J, 2)`` start (nominal) positions (pixels).
        iterations : :obj:`int`, optional
            Largest number of Levenberg-Marquardt iterations.
        radius : :obj:`float`, optional
            Half-width of the whole-pixel search before (0: none); the positions then stay within ``radius`` + 1/2
            px of ``positions`` in each coordinate (the search's box: the prior that the scan is off by at most
            that much).
        starts : :obj:`int`, optional
            Levenberg-Marquardt runs per position from the search's best offsets (with ``radius`` > 0).
        max_step : :obj:`float`, optional
            Longest step of one iteration (pixels).
        tol : :obj:`float`, optional
            Step length below which a position has converged (pixels).
        estimate : :obj:`str`, optional
            ``"local"`` (the search and Levenberg-Marquardt), ``"map"`` or ``"mean"`` (the posterior's; they need
            ``radius`` > 0 and ``photons_per_unit``).
        bounds : :obj:`tuple`, optional
            ``(low, high)`` the true positions are known to lie in (``mmip simulate`` clips them into the object:
            ``(0, n - Np)``): for ``"map"`` and ``"mean"``, the prior's mass beyond sits on the bound.

        Returns
        -------
        ``PositionFit``
            The positions, each pattern's misfit there, the iterations taken and the misfit history (and the
            posterior).
        """
        pos = as_positions(positions).copy()
        if estimate not in ESTIMATES:
            msg = f"position estimator estimate must be one of {ESTIMATES}; got {estimate!r}"
            raise ConfigError(msg)
        if estimate != "local":
            return self._posterior_fit(pos, estimate, radius, bounds, iterations, max_step, tol)
        if radius <= 0:
            return self._levenberg_marquardt(pos, iterations, max_step, tol)
        box = (pos - radius - 0.5, pos + radius + 0.5)
        fits = [self._levenberg_marquardt(p, iterations, max_step, tol, box)
                for p in self.search(pos, radius, keep=max(int(starts), 1))]
        best = np.argmin(np.stack([f.misfit for f in fits]), axis=0)
        rows = np.arange(len(pos))
        return PositionFit(np.stack([f.positions for f in fits])[best, rows],
                           np.stack([f.misfit for f in fits])[best, rows], max(f.iterations for f in fits),
                           fits[0].history)

    def _posterior_fit(self, pos, estimate, radius, bounds, iterations, max_step, tol):
        """:meth:`fit` for ``estimate`` ``"map"`` or ``"mean"``."""
        if not radius > 0 or self.photons is None:
            msg = (f"position estimator estimate={estimate!r} needs radius > 0 (the prior's box) and "
                   f"photons_per_unit (the likelihood); got radius {radius!r}, photons_per_unit {self.photons!r}")
            raise ConfigError(msg)
        from .position_posterior import PositionPosterior

        post = PositionPosterior(self, radius, bounds=bounds)(pos)
        if estimate == "mean":
            misfit = self.misfit(post.mean)
            return PositionFit(post.mean, misfit, 0, [float(misfit.sum())], post)
        fit = self._levenberg_marquardt(post.ml, iterations, max_step, tol, (post.low, post.high))
        fit.posterior = post
        return fit

    def _levenberg_marquardt(self, positions, iterations, max_step, tol, box=None):
        """:meth:`fit` from ``positions``, without a search; steps clipped into ``box`` ``(low, high)``."""
        pos = positions.copy()
        value, grad, blocks = self.linearize(pos)
        lam = np.full(len(pos), 1e-3)
        active = np.ones(len(pos), dtype=bool)
        history = [float(value.sum())]
        it = 0
        for it in range(1, iterations + 1):  # noqa: B007 - the count is returned
            idx = np.flatnonzero(active)
            if idx.size == 0:
                it -= 1
                break
            scale = np.maximum(np.trace(blocks[idx], axis1=1, axis2=2) / 2, 1e-30)
            system = blocks[idx] + (lam[idx] * scale)[:, None, None] * np.eye(2)
            step = -np.linalg.solve(system, grad[idx][..., None])[..., 0]
            length = np.linalg.norm(step, axis=1)
            step *= np.minimum(1.0, max_step / np.maximum(length, 1e-300))[:, None]
            trial = pos[idx] + step
            if box is not None:
                trial = np.clip(trial, box[0][idx], box[1][idx])
            ok = self.misfit(trial, idx) < value[idx]
            lam[idx] = np.where(ok, lam[idx] / 3, lam[idx] * 4)
            moved = idx[ok]
            pos[moved] = trial[ok]
            done = idx[(ok & (np.linalg.norm(step, axis=1) < tol)) | (lam[idx] > 1e8)]
            active[done] = False
            if moved.size:
                v, g, b = self.linearize(pos[moved], moved)
                value[moved], grad[moved], blocks[moved] = v, g, b
            history.append(float(value.sum()))
        return PositionFit(pos, value, it, history)
