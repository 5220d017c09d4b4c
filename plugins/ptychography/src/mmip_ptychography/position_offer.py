"""The ptychography term's calibration estimator (``DataTerm(estimator=...)``, the contract in docs/plugins.md): the
scan positions at the current object and probe, each a two-parameter fit of its own pattern by
:class:`~mmip_ptychography.PositionEstimator` (band-limited windows, the Poisson likelihood when the data's photon
scale is known, on the first call each position's posterior mean over the search box (with the Poisson likelihood)
or a whole-pixel search around the file's positions, then per-position Levenberg-Marquardt)."""

__all__ = ["PositionOffer", "SEARCH_RADIUS_PX", "MEAN_RADIUS_PX"]

import numpy as np

from multimodal_ip.backend import to_numpy

#: half-width of the whole-pixel search around the file's positions when the run sets no ``--refine-bound``
#: (pixels): the scan errors the search looks for (the paper's cases jitter by up to 2 px)
SEARCH_RADIUS_PX = 2.0
#: largest search radius for which the first call takes the posterior mean (its grid grows with the radius squared:
#: a wider box takes the whole-pixel search and Levenberg-Marquardt)
MEAN_RADIUS_PX = 4.0


class PositionOffer:
    r"""``estimate(values, names, *, iterations, bounds, search)`` of a ptychography term's ``positions``.

    The object :math:`z = x + i\sum_e a_e w_e` (the term's coupling) and the probe (``values["probe"]`` when it is
    refined, else the term's) are taken from ``values``; the positions are fitted to the term's patterns by
    :meth:`PositionEstimator.fit <mmip_ptychography.PositionEstimator.fit>` in float64. With ``search`` (the run's
    first call) and the Poisson likelihood, each position is the mean of its posterior over the box within the radius
    of the file's positions (``estimate="mean"``: the least mean-square error where the box holds several minima,
    docs/refinement.md); with the amplitude misfit, or a radius over :data:`MEAN_RADIUS_PX`, it searches every
    whole-pixel offset within the radius and keeps the best of three Levenberg-Marquardt fits from the best offsets.
    Otherwise it runs Levenberg-Marquardt from the current positions. The radius is the bound's half-width when the
    run bounds the positions (``--refine-bound positions=D``), else :data:`SEARCH_RADIUS_PX`; every estimate stays
    within the radius + 1/2 px of the file's positions (the search's box).

    Parameters
    ----------
    model : :class:`~mmip_ptychography.PtychographyModel`
        The term's operator (its coupling, probe and nominal positions).
    data : array
        The term's measured intensities ``(J, Np0, Np1)``.
    photons_per_unit : :obj:`float`, optional
        The data's photon scale (counts = ``photons_per_unit * data``): the Poisson likelihood; ``None``: the
        amplitude misfit (also for ``inf``, noise-free data). Any other value that is not a finite positive number is
        refused (one line, naming ``where``) when the estimator is first called, not taken for the amplitude misfit.
    starts : :obj:`int`, optional
        Levenberg-Marquardt fits per position from the search's best offsets.
    where : :obj:`str`, optional
        The term's place in its file, for that message.
    """

    unknowns = ("positions",)

    def __init__(self, model, data, photons_per_unit=None, starts=3, where="ptychography term"):
        self.model, self.data = model, data
        self._bad_photons = None
        self.photons = None
        if photons_per_unit is not None:
            try:
                photons = float(photons_per_unit)
            except (TypeError, ValueError):
                photons = float("nan")
            if np.isfinite(photons) and photons > 0:
                self.photons = photons
            elif photons != np.inf:  # inf: noise-free data, the amplitude misfit; the rest is refused when the
                # estimator runs (a run that never calls it does not need the attribute)
                self._bad_photons = (f"{where}: attribute photons_per_unit = {photons_per_unit!r} must be finite and "
                                     "> 0 for the position estimator's Poisson likelihood (remove the attribute for "
                                     "the amplitude misfit)")
        self.starts = int(starts)
        self._data64 = None  # the data in float64, converted on the first call

    def _object(self, values):
        op = self.model
        main = np.concatenate([np.asarray(to_numpy(values[n]), dtype=float).ravel() for n in ("x", "w")])
        return np.asarray(to_numpy(op.coupling.matvec(main.astype(op.dtype))), dtype=complex).reshape(op.object_shape)

    def __call__(self, values, names, *, iterations, bounds, search):
        """The positions at the current object and probe.

        Parameters
        ----------
        values : :obj:`dict`
            The term's inputs (``x``, ``w``, ``positions``, ``probe`` when refined) at the current iterate.
        names : :obj:`tuple` of :obj:`str`
            ``("positions",)``.
        iterations : :obj:`int`
            Largest number of Levenberg-Marquardt iterations.
        bounds : :obj:`dict`
            ``{"positions": (lower, upper)}`` when the run bounds them.
        search : :obj:`bool`
            Search whole-pixel offsets around the file's positions first.

        Returns
        -------
        :class:`~multimodal_ip.problem.CalibrationEstimate`
        """
        from multimodal_ip.errors import ConfigError
        from multimodal_ip.problem import CalibrationEstimate

        from .position_estimator import PositionEstimator

        if self._bad_photons is not None:
            raise ConfigError(self._bad_photons)
        op = self.model
        probe = np.asarray(to_numpy(values["probe"] if "probe" in values else op.probe), dtype=complex)
        est = PositionEstimator(self._object(values), probe.reshape(op.window), self._data(),
                                photons_per_unit=self.photons)
        nominal = np.asarray(op.positions, dtype=float)
        radius = SEARCH_RADIUS_PX
        if "positions" in bounds:
            low, high = (np.broadcast_to(np.asarray(b, dtype=float).reshape(-1), nominal.size) for b in
                         bounds["positions"])
            radius = float(np.max(high - low)) / 2
        if search:
            estimate = "mean" if self.photons is not None and radius <= MEAN_RADIUS_PX else "local"
            fit = est.fit(nominal, iterations=iterations, radius=radius, starts=self.starts, estimate=estimate)
        else:
            start = np.asarray(to_numpy(values["positions"]), dtype=float).reshape(nominal.shape)
            fit = est.fit(start, iterations=iterations)
        positions = np.clip(fit.positions, nominal - radius - 0.5, nominal + radius + 0.5)
        post = fit.posterior
        converged = fit.iterations < iterations if post is None else not np.any(post.unconverged)
        likelihood = "Poisson" if self.photons is not None else "amplitude"
        how = "posterior mean" if post is not None else "per-position Levenberg-Marquardt"
        message = (f"positions by {how} (band-limited windows, {likelihood} likelihood"
                   f"{f', search box within {radius:g} px' if search else ''}): "
                   + (f"{int(np.sum(post.evaluations))} likelihood evaluations on its grids, "
                      f"{int(np.sum(post.unconverged))} not converged" if post is not None else
                      f"{'converged' if converged else 'stopped'} after {fit.iterations} iterations"))
        dtype = np.asarray(values["positions"]).dtype
        return CalibrationEstimate({"positions": positions.astype(dtype)}, int(fit.iterations), converged, message)

    def _data(self):
        if self._data64 is None:
            self._data64 = np.asarray(to_numpy(self.data), dtype=float)
        return self._data64
