r"""Choosing the balance, likelihood and regularization strengths from the data alone (``mmip tune``).

Every setting of the grid is fitted on the same fit part of the data (the held-out values of
:mod:`multimodal_ip.validation`), stopped on its validation loss, and scored by how well its best iterate predicts
the held-out values. The score must compare settings whose objectives differ (another ``c`` reweights the terms,
another likelihood changes the losses), so it uses neither: each term's held-out values are measured with the term's
default loss (the ``balanced`` likelihood) and divided by that of the flat start point, and the terms' ratios are
summed (:func:`validation_score`): a unitless "how much of the held-out data does this setting explain", equal for
every term whatever its units. The lowest score wins.
"""

__all__ = ["Setting", "settings_grid", "validation_score", "tune", "choose"]

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError


@dataclass(frozen=True)
class Setting:
    """One point of the grid: balance constant, likelihood, regularizer strengths (``{regularizer index: value}``).

    Parameters
    ----------
    balance_c : :obj:`float` or :obj:`None`
        Balance constant :math:`c` of the balanced likelihood; ``None`` for the Poisson likelihood (its weights come
        from the photon statistics).
    likelihood : :obj:`str`, optional
        ``"balanced"`` or ``"poisson"``.
    strengths : :obj:`tuple`, optional
        ``(regularizer index, strength)`` pairs.
    """

    balance_c: float | None
    likelihood: str = "balanced"
    strengths: tuple = ()

    def label(self, names=()) -> str:
        parts = [self.likelihood] + ([f"c={self.balance_c:g}"] if self.balance_c is not None else [])
        parts += [f"{names[i] if i < len(names) else i}={v:g}" for i, v in self.strengths]
        return ", ".join(parts)


@dataclass
class Trial:
    setting: Setting
    score: float
    per_term: dict
    best_iteration: int
    status: str
    error: float
    wall_s: float


def settings_grid(c_values, likelihoods, strength_grids: dict) -> list:
    """The settings to try: every ``c`` for the balanced likelihood (the Poisson likelihood takes its weights from the
    photon statistics: one setting), times every combination of regularizer strengths.

    Parameters
    ----------
    c_values : sequence of :obj:`float`
        Balance constants tried with the balanced likelihood.
    likelihoods : sequence of :obj:`str`
        Likelihoods tried (``"balanced"``, ``"poisson"``).
    strength_grids : :obj:`dict`
        ``{regularizer index: sequence of strengths}``.

    Returns
    -------
    grid : :obj:`list` of :class:`Setting`
        The settings, likelihood-major.

    Raises
    ------
    ConfigError
        The grid is empty.
    """
    combos = list(itertools.product(*[[(i, v) for v in vals] for i, vals in sorted(strength_grids.items())]))
    out = []
    for lik in likelihoods:
        for c in (c_values if lik == "balanced" else [None]):
            out += [Setting(None if c is None else float(c), lik, tuple(combo)) for combo in combos]
    if not out:
        msg = "tune: the grid is empty (give --c values and --likelihoods)"
        raise ConfigError(msg)
    return out


def validation_score(scorer, x, reference: dict) -> tuple:
    """``(score, {term: ratio})``: each term's held-out loss at ``x`` (default loss) over its value at the start.

    Parameters
    ----------
    scorer : :class:`~multimodal_ip.JointProblem`
        Problem whose ``linearize`` reports each term's held-out loss (``validation``) with the default loss.
    x : :obj:`numpy.ndarray`
        Point to score.
    reference : :obj:`dict`
        ``{term: held-out loss at the flat start}``.

    Returns
    -------
    score : :obj:`float`
        Sum of the ratios (lower is better).
    ratios : :obj:`dict`
        ``{term: held-out loss at x / reference}`` (``inf`` where the reference is zero).
    """
    val = scorer.linearize(x).validation
    ratios = {t: val[t] / reference[t] if reference[t] > 0 else math.inf for t in reference}
    return float(sum(ratios.values())), ratios


def choose(trials: list, tolerance: float = 0.0) -> "Trial":
    """The chosen trial: the lowest score, or with ``tolerance`` > 0 the most conservative trial whose score is within
    ``tolerance`` (relative) of the lowest: the balanced likelihood before Poisson, then the smallest ``c`` (the least
    weight on the terms balanced against the reference), then the smallest strengths. Near the optimum the held-out
    score is flat to about 1 % while the true error still varies by several percent (docs/validation.md); among
    settings the data cannot tell apart this prefers the one that trusts the weighted terms least.

    Parameters
    ----------
    trials : :obj:`list` of ``Trial``
        Trials returned by :func:`tune` (at least one).
    tolerance : :obj:`float`, optional
        Relative score tolerance; ``0`` picks the lowest score.

    Returns
    -------
    trial : ``Trial``
        The chosen trial.
    """
    best = min(trials, key=lambda t: t.score)
    if tolerance <= 0:
        return best
    near = [t for t in trials if t.score <= best.score * (1 + tolerance)]

    def order(t):
        c = t.setting.balance_c if t.setting.balance_c is not None else math.inf
        return (t.setting.likelihood != "balanced", c, tuple(v for _, v in t.setting.strengths), t.score)

    return min(near, key=order)


def tune(build, solve, grid, fraction, seed, patience, progress=None, budget_s=None) -> list:
    """Fit every setting of ``grid`` with validation stopping; return the :class:`Trial` list in grid order.

    ``build(setting, validation, seed, score=False) -> JointProblem`` and ``solve(problem, x0, stopping) -> Result``
    are the caller's (the CLI passes its run configuration). Every fit starts from the flat start, so that its best
    iteration is also the iteration count of a run on all the data from that start (a warm start from the previous
    setting would save iterations but make the counts incomparable). ``budget_s``: stop trying settings after this
    much time (the trials so far are returned).

    Parameters
    ----------
    build : :obj:`callable`
        ``build(setting, validation, seed, score=False)`` returning the :class:`~multimodal_ip.JointProblem` of a
        setting with ``validation`` of the data held out; ``score=True`` builds the scoring problem (default
        losses).
    solve : :obj:`callable`
        ``solve(problem, x0, stopping)`` returning a solver ``Result``.
    grid : sequence of :class:`Setting`
        Settings to try (:func:`settings_grid`).
    fraction : :obj:`float`
        Fraction of each term's data held out for validation.
    seed : :obj:`int`
        Seed of the held-out mask (the same for every setting).
    patience : :obj:`int`
        Iterations without a better validation loss before a fit stops
        (:class:`~multimodal_ip.validation.StopOnValidation`).
    progress : :obj:`callable`, optional
        Called with each ``Trial`` once it is done.
    budget_s : :obj:`float`, optional
        Time budget in seconds (at least one setting is always tried).

    Returns
    -------
    trials : :obj:`list` of ``Trial``
        One per setting tried, in grid order.

    Raises
    ------
    ConfigError
        The held-out loss at the flat start is not finite.
    """
    from .validation import StopOnValidation

    scorer = build(Setting(None, "balanced", ()), fraction, seed, score=True)
    with np.errstate(all="ignore"):  # a non-finite start is reported below, in one line
        reference = scorer.linearize(scorer.start()).validation
    bad = {t: v for t, v in reference.items() if not np.isfinite(v)}
    if bad:
        msg = (f"tune: the held-out loss at the flat start is not finite ({bad}); check the data and term options "
               "(e.g. coupling)")
        raise ConfigError(msg)
    trials: list = []
    started = time.perf_counter()
    for setting in grid:
        if budget_s is not None and trials and time.perf_counter() - started > budget_s:
            break
        t0 = time.perf_counter()
        problem = build(setting, fraction, seed)
        stop = StopOnValidation(patience)
        res = solve(problem, problem.start(), stop)
        score, ratios = validation_score(scorer, res.x, reference)
        errors = problem.relative_errors(res.x)
        trials.append(Trial(setting, score, ratios, int(res.returned_row()["iteration"]), res.status,
                            float(errors.get("total", np.nan)), time.perf_counter() - t0))
        if progress is not None:
            progress(trials[-1])
    return trials
