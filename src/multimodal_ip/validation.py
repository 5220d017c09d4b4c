r"""Held-out validation: a deterministic split of every term's measurements into a fit part and a validation part.

A fraction of the measured values of each term (by default 10 %, drawn independently per value) is held out: the
objective and its gradient use the others, and every evaluation also returns the held-out loss of each term from the
same prediction (no extra forward model). The validation loss falls while the model learns the sample and rises once
it fits the noise: it picks the stopping iteration and the weights without a truth.

Which values are held out depends only on the seed, the term's name and each value's place in the *whole* term
(the global index along the term's split axis, ``split_axes["data"]``), never on how the term is cut into parts or MPI
ranks: a chunked or distributed run holds out the same values as one process. A modality may choose its own split
(e.g. whole detector rows) with the optional method ``validation_mask(td, fraction, seed) -> bool array`` shaped like
its ``data`` (``True``: held out).

For a ptychography term this holds out random detector pixels inside every diffraction pattern (the scan overlap is
untouched); for fluorescence maps random (element, position) values; for sinograms random (angle, bin) values.
"""

__all__ = ["DEFAULT_FRACTION", "AUTO_FRACTION", "AUTO_REFIT_FROM", "AUTO_MIN_HELD_OUT", "auto_validation",
           "MAX_FRACTION", "MIN_HELD_OUT", "holdout_mask",
           "check_fraction", "term_holdout",
           "StopOnValidation", "StopOnNoise", "stopping_rule"]

import zlib

import numpy as np

from .errors import ConfigError, DataError

#: share of every term's measurements held out for validation when validation is on
DEFAULT_FRACTION = 0.1
#: largest share that may be held out: more would fit on fewer values than it validates on (0.9999 fitted nothing,
#: and the run returned its start point)
MAX_FRACTION = 0.5
#: fewest values a term may expect to hold out (its share times its number of measured values): fewer give no
#: usable validation loss (1e-9 held out nothing, and the run returned its start point)
MIN_HELD_OUT = 10
#: share held out when ``--stop auto`` chooses validation (one data term) and the run gives none, on a term with at
#: least :data:`AUTO_MIN_HELD_OUT` values at that share: with 2 % the run on 98 % of the data lost less than with 10 %
#: against pty-chi (docs/validation.md, "One run to the result"); smaller terms hold :data:`DEFAULT_FRACTION` out
AUTO_FRACTION = 0.02
#: where the refit starts after that held-out run, unless the run says: its best iterate, continued on all the data
#: (``mmip reconstruct --refit-from``; the refit from the start waits for the whole held-out run)
AUTO_REFIT_FROM = "best"
#: fewest values :data:`AUTO_FRACTION` must hold out for ``--stop auto`` to take it and :data:`AUTO_REFIT_FROM`:
#: on 2 304-value files (32 px phantom, 3 seeds) 2 % held out (46 values) and the refit from the best iterate ended
#: 1-7 % worse than 10 % and the refit from the start; on the paper's 409 600-value cases (8 192 held out) better
AUTO_MIN_HELD_OUT = 1000


def auto_validation(spec: dict, values: int) -> dict:
    """The held-out share and the refit ``--stop auto`` takes when it chooses validation on a term of ``values``
    measured values: the run's own (``spec``: ``fraction``, ``refit_from``) where given, else :data:`AUTO_FRACTION`
    and :data:`AUTO_REFIT_FROM` when that share holds :data:`AUTO_MIN_HELD_OUT` values out, else
    :data:`DEFAULT_FRACTION` and the refit from the start.

    Parameters
    ----------
    spec : :obj:`dict`
        The run's ``[stopping]`` table.
    values : :obj:`int`
        The term's measured values.

    Returns
    -------
    settings : :obj:`dict`
        ``{"fraction", "refit_from"}`` and the rest of ``spec``.
    """
    large = values * AUTO_FRACTION >= AUTO_MIN_HELD_OUT
    return {"fraction": AUTO_FRACTION if large else DEFAULT_FRACTION, "refit_from": AUTO_REFIT_FROM if large else
            "start", **spec}


def _key(name: str) -> int:
    return zlib.crc32(str(name).encode())


def holdout_mask(shape, fraction: float, seed: int, name: str, axis=None, offset: int = 0) -> np.ndarray:
    """``True`` where a value is held out. With ``axis``, the slab at global index ``offset + i`` along it is drawn
    from its own generator seeded by ``(seed, name, offset + i)``: any contiguous split gives the same values.

    Parameters
    ----------
    shape : :obj:`tuple` of :obj:`int`
        Shape of the data (of this part or rank).
    fraction : :obj:`float`
        Probability that a value is held out.
    seed : :obj:`int`
        Random seed.
    name : :obj:`str`
        Term name, mixed into the seed (terms draw independent masks).
    axis : :obj:`int`, optional
        Split axis of the data; ``None``: one draw for the whole array.
    offset : :obj:`int`, optional
        Global index of the first slab along ``axis`` (a part's or rank's ``split_offset``).

    Returns
    -------
    mask : :obj:`numpy.ndarray`
        Boolean array of ``shape``.
    """
    shape = tuple(int(s) for s in shape)
    if axis is None:
        return np.random.default_rng([int(seed), _key(name)]).random(shape) < fraction
    out = np.empty(shape, dtype=bool)
    slabs = np.moveaxis(out, axis, 0)
    for i in range(shape[axis]):
        slabs[i] = np.random.default_rng([int(seed), _key(name), int(offset) + i]).random(slabs.shape[1:]) < fraction
    return out


def check_fraction(fraction) -> float:
    """The share held out, as a float; a :class:`~multimodal_ip.errors.ConfigError` unless it is in
    ``(0, MAX_FRACTION]``.

    Parameters
    ----------
    fraction : :obj:`float` or :obj:`str`
        Share of every term's values to hold out.

    Returns
    -------
    fraction : :obj:`float`
        The same share.

    Raises
    ------
    ConfigError
        ``fraction`` is not a number in ``(0, MAX_FRACTION]``.
    """
    try:
        f = float(fraction)
    except (TypeError, ValueError):
        f = float("nan")
    if not 0 < f <= MAX_FRACTION:
        msg = (f"validation fraction must be a number in (0, {MAX_FRACTION:g}] (the share of every term's values held "
               f"out; more would leave fewer values to fit than to validate); got {fraction!r}")
        raise ConfigError(msg)
    return f


def _check_count(td, shape, axis, fraction: float) -> None:
    """Refuse a share that leaves a term fewer than :data:`MIN_HELD_OUT` held-out values, counted over the *whole*
    term (a part or an MPI rank's share counts its split axis at ``split_total``): every part and rank agrees."""
    n = int(np.prod(shape))
    if axis is not None and "split_total" in td.attrs:
        n = int(np.prod([s for i, s in enumerate(shape) if i != axis])) * int(td.attrs["split_total"])
    if fraction * n < MIN_HELD_OUT:
        least = MIN_HELD_OUT / n if n else float("inf")
        fix = (f"hold out at least {least:.2g}" if least <= MAX_FRACTION
               else f"the term is too small to hold values out (at most {MAX_FRACTION:g} of them)")
        msg = (f"{td.where()}: validation fraction {fraction:g} holds out about {fraction * n:.3g} of its {n} measured "
               f"values; at least {MIN_HELD_OUT} are needed for a validation loss ({fix})")
        raise ConfigError(msg)


def term_holdout(td, info, fraction: float, seed: int) -> np.ndarray:
    """The held-out mask of one term (a whole term, a part or an MPI rank's share): the modality's
    ``validation_mask`` when it has one, else :func:`holdout_mask` along the data's split axis. A share outside
    ``(0, MAX_FRACTION]``, or one the whole term would hold fewer than :data:`MIN_HELD_OUT` values of, is refused.

    Parameters
    ----------
    td : :class:`~multimodal_ip.io.TermData`
        The term's data (its ``data`` array, attributes ``split_offset``/``split_total`` for a part or rank).
    info : :class:`~multimodal_ip.modality.ModalityInfo`
        The term's modality (its ``split_axes`` and ``validation_mask``).
    fraction : :obj:`float`
        Share of the values to hold out.
    seed : :obj:`int`
        Random seed.

    Returns
    -------
    mask : :obj:`numpy.ndarray`
        Boolean array, ``True`` where a value is held out.

    Raises
    ------
    ConfigError
        The share is out of range or holds out too few values.
    DataError
        The modality's mask has the wrong shape or dtype, or the term has no ``data`` and no ``validation_mask``.
    """
    fraction = check_fraction(fraction)
    shape = np.shape(td.arrays["data"]) if "data" in td.arrays else None
    axis = info.split_axes.get("data")
    custom = info.validation_mask(td, fraction, seed)
    if custom is not None:
        mask = np.asarray(custom)
        if shape is not None and mask.shape != shape or mask.dtype != bool:
            msg = (f"{td.where()}: validation_mask of modality {td.modality!r} returned {mask.dtype} {mask.shape}; "
                   f"expected bool {shape}")
            raise DataError(msg)
        _check_count(td, mask.shape, axis if shape is not None else None, fraction)
        return mask
    if shape is None:
        msg = f"{td.where()}: no dataset 'data' to hold values out of (give the modality a validation_mask)"
        raise DataError(msg)
    _check_count(td, shape, axis, fraction)
    return holdout_mask(shape, fraction, seed, td.name, axis, int(td.attrs.get("split_offset", 0)))


class StopOnValidation:
    """Early stopping: remembers the iterate with the lowest ``validation_total`` and asks to stop once it has not
    improved (by more than ``min_delta`` relative) for ``patience`` iterations.

    Parameters
    ----------
    patience : :obj:`int`, optional
        Iterations without improvement before stopping (at least 1).
    min_delta : :obj:`float`, optional
        Relative decrease of the best value that counts as an improvement.

    Raises
    ------
    ConfigError
        ``patience`` is below 1.
    """

    def __init__(self, patience: int = 10, min_delta: float = 0.0):
        if int(patience) < 1:
            msg = f"stopping patience must be >= 1 iteration; got {patience!r}"
            raise ConfigError(msg)
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.best = np.inf
        self.best_iteration = -1
        self.best_x = None
        #: added to the iteration numbers it is fed (a staged run's second stage counts on from the first)
        self.offset = 0

    def update(self, iteration: int, value: float, x) -> bool:
        """Record one iteration; ``True`` when the run should stop."""
        iteration += self.offset
        if np.isfinite(value) and value < self.best - self.min_delta * abs(self.best if np.isfinite(self.best) else 0):
            self.best, self.best_iteration, self.best_x = float(value), int(iteration), x.copy()
        return iteration - self.best_iteration >= self.patience

    def reason(self) -> tuple:
        """``(status, message)`` of a run this rule ended."""
        return "validation", f"validation loss did not improve for {self.patience} iterations"

    def state(self) -> dict:
        """Scalars a checkpoint keeps (with ``best_x``); :meth:`load` restores them."""
        return {"best": self.best, "best_iteration": self.best_iteration}

    def load(self, scalars: dict, best_x) -> None:
        self.best, self.best_iteration, self.best_x = float(scalars["best"]), int(scalars["best_iteration"]), best_x


class StopOnNoise:
    r"""The discrepancy principle (``--stop noise``): stop at the first iteration whose data misfit is at most
    ``factor`` times the misfit the noise alone would leave, as each term's loss predicts it from the term's noise
    level (``DataTerm.noise_input``) at the current prediction. Nothing is held out and
    the run's last iterate is the result.

    Parameters
    ----------
    problem : :class:`~multimodal_ip.JointProblem`
        The problem solved (its terms offer ``photons_per_unit``; their losses a noise model).
    factor : :obj:`float`, optional
        :math:`\tau`: stop once misfit :math:`\le \tau \times` expected (1: the classic rule).

    Raises
    ------
    ConfigError
        A term offers no noise level, its loss has no noise model, the problem is not one process's, or ``factor``
        is not a number > 0.
    """

    #: the rule runs on all the data
    needs_holdout = False

    def __init__(self, problem, factor: float = 1.0):
        if not (isinstance(factor, (int, float)) and np.isfinite(factor) and factor > 0):
            msg = f"stopping noise_factor must be a number > 0; got {factor!r}"
            raise ConfigError(msg)
        if not hasattr(problem, "_term_input"):  # MPI ranks' problems hold terms but no joint input of each
            msg = "--stop noise runs in one process (not on MPI ranks); use --stop validation there"
            raise ConfigError(msg)
        for t in problem.terms:
            if t.photons_per_unit is None:
                msg = (f"--stop noise: term {t.name!r} offers no noise level (its modality gives none, or its data "
                       f"have no finite photons_per_unit); use --stop validation")
                raise ConfigError(msg)
            if not _has_noise(t.loss):
                msg = (f"--stop noise: the {t.loss.name} loss of term {t.name!r} has no noise model to predict its "
                       f"misfit from; use --stop validation")
                raise ConfigError(msg)
        self.problem, self.factor = problem, float(factor)
        self.best_x, self.best_iteration, self.offset = None, -1, 0
        self.misfit = self.expected = float("nan")

    def update(self, iteration: int, value: float, x) -> bool:
        """Evaluate the misfit and its expectation at ``x`` (``value`` is not used); ``True`` when the run should
        stop."""
        misfit = expected = 0.0
        for i, t in enumerate(self.problem.terms):
            v, e = t.noise_input(self.problem._term_input(i, x))
            if e is None:
                msg = f"--stop noise: the {t.loss.name} loss of term {t.name!r} has no noise model for its prediction"
                raise ConfigError(msg)
            misfit, expected = misfit + t.weight * v, expected + t.weight * e
        self.misfit, self.expected = misfit, expected
        return bool(misfit <= self.factor * expected)

    def reason(self) -> tuple:
        """``(status, message)`` of a run this rule ended."""
        return "noise", (f"data misfit {self.misfit:.6g} <= {self.factor:g} x {self.expected:.6g}, the misfit the "
                         f"noise leaves at this prediction")

    def state(self) -> dict:
        """Scalars a checkpoint keeps (none: the rule needs no history)."""
        return {}

    def load(self, scalars: dict, best_x) -> None:
        """Nothing to restore."""


def _has_noise(loss) -> bool:
    """Whether ``loss`` overrides :meth:`~multimodal_ip.losses.Loss.noise_misfit`."""
    from .losses import Loss

    return type(loss).noise_misfit is not Loss.noise_misfit


def stopping_rule(cfg: dict, problem):
    """The early-stopping rule of a run configuration (``[stopping] rule``), or ``None`` to run the iterations.

    Parameters
    ----------
    cfg : :obj:`dict`
        The run configuration (its ``stopping`` table: ``rule``, ``patience``, ``min_delta``, ``noise_factor``).
    problem : :class:`~multimodal_ip.JointProblem`
        The problem the run solves (``--stop noise`` reads its terms).

    Returns
    -------
    rule : :class:`StopOnValidation`, :class:`StopOnNoise` or :obj:`None`
        What the solver's ``stopping`` gets.
    """
    spec = cfg.get("stopping") or {}
    rule = spec.get("rule", "iterations")
    if rule == "validation":
        return StopOnValidation(int(spec.get("patience", 10)), float(spec.get("min_delta", 0.0)))
    if rule == "noise":
        return StopOnNoise(problem, spec.get("noise_factor", 1.0))
    return None
