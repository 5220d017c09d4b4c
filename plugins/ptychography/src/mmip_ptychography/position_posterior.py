"""The posterior of each scan position at a known object and probe, on a grid refined around its modes
(:class:`PositionPosterior`): the posterior mean (the minimum mean-square-error estimate), the maximum-likelihood
point within the prior's box, and the posterior covariance (the error the data leave, on average over the prior)."""

__all__ = ["PositionPosterior", "PosteriorSummary"]

from dataclasses import dataclass

import numpy as np
from mmip_scanprobe import as_positions

from multimodal_ip.errors import ConfigError


@dataclass
class PosteriorSummary:
    """What :class:`PositionPosterior` found for each position.

    Parameters
    ----------
    mean : :obj:`numpy.ndarray`
        ``(J, 2)`` posterior means (pixels): the estimate of least mean-square error given the prior.
    covariance : :obj:`numpy.ndarray`
        ``(J, 2, 2)`` posterior covariances (px^2); the trace is the posterior-expected squared error of the mean.
    ml : :obj:`numpy.ndarray`
        ``(J, 2)`` the grid point with the lowest negative log-likelihood (the maximum a posteriori point of the
        uniform prior's density, to the fine grid's spacing).
    ml_misfit : :obj:`numpy.ndarray`
        ``(J,)`` the negative log-likelihood there.
    low : :obj:`numpy.ndarray`
        ``(J, 2)`` lower corner of each prior box (pixels).
    high : :obj:`numpy.ndarray`
        ``(J, 2)`` upper corner.
    evaluations : :obj:`numpy.ndarray`
        ``(J,)`` likelihood evaluations per position.
    spacing : :obj:`numpy.ndarray`
        ``(J, 2)`` the spacing (pixels) of the grid each position's sums were taken on.
    unconverged : :obj:`numpy.ndarray`
        ``(J,)`` ``True`` where the last halving of the spacing still moved the mean or the rms spread by more
        than ``tol``, or the likelihood's peak is narrower than the finest grid.
    """

    mean: np.ndarray
    covariance: np.ndarray
    ml: np.ndarray
    ml_misfit: np.ndarray
    low: np.ndarray
    high: np.ndarray
    evaluations: np.ndarray
    spacing: np.ndarray
    unconverged: np.ndarray


class PositionPosterior:
    r"""Per-position posterior of the scan positions given the object and probe, on an adaptive grid.

    The prior is the jitter's: each coordinate uniform on ``nominal +- radius``; with ``bounds`` the true positions
    are then clipped into ``[low, high]`` (as ``mmip simulate --position-jitter`` does), which puts the clipped
    prior mass on the bound as an atom. The likelihood is the estimator's Poisson negative log-likelihood
    :math:`\ell_j(p)` (:meth:`~mmip_ptychography.PositionEstimator.misfit`, its windows), so the posterior is
    :math:`\pi_j(p) \propto \mathrm{prior}(p)\, e^{-\ell_j(p)}`.

    The grid: every ``coarse`` px over the box (its ends included); then the spacing is halved, up to ``levels``
    times, around the points whose :math:`\ell_j` is within ``threshold`` of the lowest yet (their neighbours up to
    the previous spacing), and at each spacing the grid grows until every such point has its neighbours. Points
    never evaluated count as zero: they lie more than ``threshold`` above the minimum, judged on a grid on which a
    mode narrower than the coarse spacing still shows. The moments are the trapezoidal rule on each position's
    grid (exact to far below the spacing once it is finer than the posterior's width); a position stops being
    refined when a halving moves its mean and its rms spread by less than ``tol`` and :math:`\ell_j` rises by at
    most 2 from its lowest point to the neighbours there (a peak resolved by the spacing).

    Parameters
    ----------
    estimator : :class:`~mmip_ptychography.PositionEstimator`
        With ``photons_per_unit`` (a likelihood); float64 object and data (the likelihood's differences are a few
        units in sums of millions).
    radius : :obj:`float`, optional
        Half-width of the uniform prior of each coordinate around the nominal position (pixels).
    bounds : :obj:`tuple`, optional
        ``(low, high)`` (scalars or per coordinate) the true positions were clipped into.
    coarse : :obj:`float`, optional
        Spacing of the first grid (pixels).
    levels : :obj:`int`, optional
        Most halvings of the spacing (the finest is ``coarse / 2**levels``).
    threshold : :obj:`float`, optional
        Negative log-likelihood above the minimum beyond which the grid is not refined.
    tol : :obj:`float`, optional
        Change of the mean (each coordinate) and of the rms spread (pixels) below which a halving has converged.
    block : :obj:`int`, optional
        Likelihood evaluations per call of the estimator (memory: about 1 MB each for 64 px windows).
    """

    def __init__(self, estimator, radius=2.0, bounds=None, coarse=0.25, levels=5, threshold=15.0, tol=0.005,
                 block=128):
        if getattr(estimator, "photons", None) is None:
            msg = "position posterior: the estimator needs photons_per_unit (the Poisson likelihood); got None"
            raise ConfigError(msg)
        values = {"radius": radius, "coarse": coarse, "threshold": threshold, "tol": tol}
        for name, value in values.items():
            if not (np.isfinite(value) and value > 0):
                msg = f"position posterior: {name} must be finite and > 0; got {value!r}"
                raise ConfigError(msg)
        if int(levels) < 0 or int(block) < 1:
            msg = f"position posterior: levels must be >= 0 and block >= 1; got {levels!r}, {block!r}"
            raise ConfigError(msg)
        self.estimator = estimator
        self.radius, self.coarse, self.threshold, self.tol = float(radius), float(coarse), float(threshold), float(tol)
        self.levels, self.block = int(levels), int(block)
        self.bounds = None if bounds is None else tuple(np.broadcast_to(np.asarray(b, float), (2,)) for b in bounds)

    def prior(self, positions):
        """Each coordinate's prior box and the atoms of prior mass at its ends.

        Parameters
        ----------
        positions : :obj:`numpy.ndarray`
            ``(J, 2)`` nominal positions (pixels).

        Returns
        -------
        low, high, atom_low, atom_high : :obj:`numpy.ndarray`
            ``(J, 2)`` each: the box, and the probabilities that the coordinate sits exactly on its ends.
        """
        nominal = as_positions(positions)
        low, high = nominal - self.radius, nominal + self.radius
        if self.bounds is None:
            return low, high, np.zeros_like(low), np.zeros_like(low)
        lo, hi = np.clip(low, *self.bounds), np.clip(high, *self.bounds)
        return lo, hi, (lo - low) / (2 * self.radius), (high - hi) / (2 * self.radius)

    def __call__(self, positions):
        """The posterior of every position.

        Parameters
        ----------
        positions : :obj:`numpy.ndarray`
            ``(J, 2)`` nominal positions (pixels), one per pattern of the estimator.

        Returns
        -------
        ``PosteriorSummary``
            Mean, covariance, the grid's maximum-likelihood point, the boxes, the spacing and the cost.
        """
        low, high, atom_low, atom_high = self.prior(positions)
        n = len(low)
        fine = 2**self.levels
        count = np.where(high > low, np.maximum(np.ceil((high - low) / self.coarse - 1e-9), 1), 0).astype(np.int64)
        last = count * fine  # (J, 2): the finest grid's last index per coordinate
        grid = _Grid(self, low, (high - low) / np.maximum(last, 1), last, atom_low, atom_high)
        k = np.arange(0, int(last.max()) + 1, fine)
        jj, k0, k1 = (a.ravel() for a in np.meshgrid(np.arange(n), k, k, indexing="ij"))
        inside = (k0 <= last[jj, 0]) & (k1 <= last[jj, 1])
        grid.add(jj[inside], k0[inside], k1[inside])
        spacing = np.full(n, fine)
        before = grid.moments(spacing)
        active = np.ones(n, dtype=bool)
        for level in range(1, self.levels + 1):
            s = 2 ** (self.levels - level)
            grid.grow(grid.kept(active), s, 2)  # the new spacing's points around every kept one, up to the old one
            new = grid.kept(active)
            while new[0].size:  # until every kept point has its neighbours at this spacing
                new = grid.grow(new, s, 1)
            spacing[active] = s
            now = grid.moments(spacing)
            change = np.maximum(np.abs(now[0] - before[0]).max(axis=1), np.abs(now[2] - before[2]))
            active &= (change > self.tol) | (grid.rise(spacing) > 2)  # moved, or a peak narrower than the spacing
            before = now
            if not active.any():
                break
        mean, cov, _ = before
        ml, ml_nll = grid.lowest()
        return PosteriorSummary(mean, cov, ml, ml_nll, low, high, np.bincount(grid.split(grid.keys)[0], minlength=n),
                                spacing[:, None] * grid.step, active)


class _Grid:
    """The evaluated grid points of all positions: indices on the finest grid, their negative log-likelihoods."""

    def __init__(self, posterior, low, step, last, atom_low, atom_high):
        self.post, self.low, self.step, self.last = posterior, low, step, last
        self.atoms = (atom_low, atom_high)
        self.stride = int(last.max()) + 1
        self.keys = np.zeros(0, dtype=np.int64)  # sorted (j * stride + k0) * stride + k1
        self.nll = np.zeros(0)

    def split(self, keys):
        j, rest = np.divmod(keys, self.stride * self.stride)
        return (j, *np.divmod(rest, self.stride))

    def points(self, j, k0, k1):
        return self.low[j] + np.stack([k0, k1], axis=1) * self.step[j]

    def add(self, j, k0, k1):
        """Evaluate the points not yet evaluated; returns the kept ones among them."""
        keys = np.unique((j * self.stride + k0) * self.stride + k1)
        keys = keys[~np.isin(keys, self.keys, assume_unique=True)]
        j, k0, k1 = self.split(keys)
        pos, nll = self.points(j, k0, k1), np.empty(len(keys))
        est, b = self.post.estimator, self.post.block
        for i in range(0, len(keys), b):
            nll[i : i + b] = est.misfit(pos[i : i + b], j[i : i + b])
        order = np.argsort(np.concatenate([self.keys, keys]), kind="stable")
        self.keys, self.nll = np.concatenate([self.keys, keys])[order], np.concatenate([self.nll, nll])[order]
        keep = nll <= self.minimum()[j] + self.post.threshold
        return j[keep], k0[keep], k1[keep]

    def minimum(self):
        out = np.full(len(self.low), np.inf)
        np.minimum.at(out, self.split(self.keys)[0], self.nll)
        return out

    def kept(self, active):
        j, k0, k1 = self.split(self.keys)
        keep = (self.nll <= self.minimum()[j] + self.post.threshold) & active[j]
        return j[keep], k0[keep], k1[keep]

    def grow(self, points, s, reach):
        """Evaluate the neighbours of ``points`` at offsets ``-reach * s .. reach * s`` (step ``s``)."""
        j, k0, k1 = points
        off = np.arange(-reach, reach + 1) * s
        d0, d1 = (a.ravel() for a in np.meshgrid(off, off, indexing="ij"))
        jj = np.repeat(j, d0.size)
        n0 = np.clip(np.repeat(k0, d0.size) + np.tile(d0, j.size), 0, self.last[jj, 0])
        n1 = np.clip(np.repeat(k1, d0.size) + np.tile(d1, j.size), 0, self.last[jj, 1])
        return self.add(jj, n0, n1)

    def moments(self, spacing):
        """``(mean (J, 2), covariance (J, 2, 2), rms spread (J,))`` from each position's points on its grid of
        ``spacing`` (finest-grid steps): the trapezoidal rule on the box, the atoms at its ends."""
        j, k0, k1 = self.split(self.keys)
        s = spacing[j]
        on = (k0 % s == 0) & (k1 % s == 0)
        j, k0, k1, s = j[on], k0[on], k1[on], s[on]
        n = len(self.low)
        low_nll = self.minimum()
        w = np.exp(low_nll[j] - self.nll[on])
        for c, k in enumerate((k0, k1)):  # each point's prior weight: its cell of the box, plus the atoms at the ends
            last = self.last[j, c]
            end = (k == 0) | (k == last)
            cont = np.where(last > 0, s * self.step[j, c] / (2 * self.post.radius), 0.0) * np.where(end, 0.5, 1.0)
            w *= cont + np.where(k == 0, self.atoms[0][j, c], 0.0) + np.where(k == last, self.atoms[1][j, c], 0.0)
        pos = self.points(j, k0, k1)
        total = np.bincount(j, w, minlength=n)
        mean = np.stack([np.bincount(j, w * pos[:, c], minlength=n) for c in range(2)], axis=1) / total[:, None]
        d = pos - mean[j]
        cov = np.stack([np.stack([np.bincount(j, w * d[:, a] * d[:, b], minlength=n) for b in range(2)], axis=1)
                        for a in range(2)], axis=1) / total[:, None, None]
        return mean, cov, np.sqrt(np.trace(cov, axis1=1, axis2=2))

    def rise(self, spacing):
        """``(J,)``: how much the negative log-likelihood rises from each position's lowest point to its neighbours
        at ``spacing`` (finest-grid steps), the larger over the coordinates (where the neighbours are evaluated)."""
        j, k0, k1 = self.split(self.keys)
        first = np.lexsort((self.nll, j))
        first = first[np.r_[True, j[first][1:] != j[first][:-1]]]
        j, k, low = j[first], np.stack([k0[first], k1[first]], axis=1), self.nll[first]
        out = np.zeros(len(self.low))
        for c in range(2):
            for sign in (-1, 1):
                nb = k.copy()
                nb[:, c] = np.clip(nb[:, c] + sign * spacing[j], 0, self.last[j, c])
                keys = (j * self.stride + nb[:, 0]) * self.stride + nb[:, 1]
                at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
                found = self.keys[at] == keys
                out[j[found]] = np.maximum(out[j[found]], self.nll[at[found]] - low[found])
        return out

    def lowest(self):
        """Each position's evaluated point of lowest negative log-likelihood, and that value."""
        j, k0, k1 = self.split(self.keys)
        first = np.lexsort((self.nll, j))
        first = first[np.r_[True, j[first][1:] != j[first][:-1]]]
        return self.points(j[first], k0[first], k1[first]), self.nll[first]
