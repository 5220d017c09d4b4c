"""Which trial of :func:`multimodal_ip.tune.tune` is chosen, and one line saying why (``mmip tune``)."""

__all__ = ["choose", "choose_model", "explain", "MODEL_MARGIN"]

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .tune import Trial


def choose(trials: list, tolerance: float = 0.0) -> "Trial":
    """The chosen trial: the lowest score, or with ``tolerance`` > 0 the most conservative trial whose score is within
    ``tolerance`` (relative) of the lowest: the model with the fewest refined unknowns, the balanced likelihood before
    Poisson, then the smallest ``c`` (the least
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

    def order(t):  # the model with the fewest unknowns first
        c = t.setting.balance_c if t.setting.balance_c is not None else math.inf
        return (len(t.setting.refine), t.setting.likelihood != "balanced", c,
                tuple(v for _, v in t.setting.strengths), t.score)

    return min(near, key=order)


#: relative score by which a model alternative of ``--models auto`` must beat the run's own model to be chosen
MODEL_MARGIN = 0.01


def choose_model(trials: list, grid_size: int, tolerance: float = 0.0, margin: float = MODEL_MARGIN) -> "Trial":
    """:func:`choose` over every trial, but a model alternative (a trial after the first ``grid_size``: the grid on
    the run's own model) wins only with a score below ``1 - margin`` times the grid's own choice: where the held-out
    score cannot tell the models apart (a tied sample) the model with fewer unknowns is kept.

    Parameters
    ----------
    trials : :obj:`list` of ``Trial``
        Scored trials of :func:`tune`, the grid's first.
    grid_size : :obj:`int`
        Number of grid trials.
    tolerance, margin : :obj:`float`, optional
        The tolerance of :func:`choose`; the relative score margin an alternative needs.

    Returns
    -------
    trial : ``Trial``
    """
    best = choose(trials, tolerance)
    own = trials[:grid_size]
    if not own or any(best is t for t in own):
        return best
    base = choose(own, tolerance)
    return best if best.score < base.score * (1 - margin) else base


def _ratio(value, reference) -> float:
    """``value / reference``; 1 when both are 0, ``inf`` when only the reference is (or either is not finite)."""
    if not (np.isfinite(value) and np.isfinite(reference)):
        return math.inf
    if reference > 0:
        return float(value / reference)
    return 1.0 if value == 0 else math.inf


def explain(best, trials: list, names=()) -> str:
    """One line saying why ``best`` was chosen: its score and worst term, and each other model's best score with the
    term it predicts worst against ``best`` (e.g. ``tied 3.1 (...): held-out ptychography loss 3.1x the chosen's``).

    Parameters
    ----------
    best : ``Trial``
        The chosen trial (:func:`choose`).
    trials : :obj:`list` of ``Trial``
        Every scored trial.
    names : sequence of :obj:`str`, optional
        Regularizer names for the labels.

    Returns
    -------
    :obj:`str`
    """
    def terms(t):
        return ", ".join(f"{k} {v:.3g}" for k, v in t.per_term.items())

    text = f"model {best.setting.model} ({best.setting.label(names)}): score {best.score:.4g} ({terms(best)})"
    others: dict = {}
    for t in trials:
        if t.setting.model != best.setting.model and (t.setting.model not in others
                                                      or t.score < others[t.setting.model].score):
            others[t.setting.model] = t
    if others:
        text += "; best of the other models: " + "; ".join(
            f"{m} {t.score:.4g} ({terms(t)}){_against(t, best)}" for m, t in others.items())
    return text


def _against(trial, best) -> str:
    """``: held-out TERM loss R x the chosen's`` for the term ``trial`` predicts worst relative to ``best``."""
    ratios = {k: _ratio(v, best.held[k]) for k, v in trial.held.items() if k in best.held}
    if not ratios:
        return ""
    term = max(ratios, key=lambda k: ratios[k])
    return f": held-out {term} loss {ratios[term]:.4g}x the chosen's"
