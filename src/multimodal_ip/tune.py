r"""Choosing the balance, likelihood, regularization strengths and model from the data alone (``mmip tune``).

Every setting of the grid is fitted on the same fit part of the data (the held-out values of
:mod:`multimodal_ip.validation`), stopped on its validation loss, and scored by how well its best iterate predicts
the held-out values. The score must compare settings whose objectives differ (another ``c`` reweights the terms,
another likelihood changes the losses, another model refines more unknowns), so it uses neither: each term's
held-out values are measured with the term's default loss (the ``balanced`` likelihood). :func:`score_trials` then
makes them unitless, by one of :data:`SCORES`:

* ``worst`` (default): each term's held-out loss over the lowest any setting reached for that term, and the
  largest of these ratios. A setting that buys one term's fit with another term's held-out loss (a model that
  cannot explain both, or a weight that gives one term up) scores the ratio of the term it gave up: it loses.
* ``sum``: the same ratios, summed.
* ``start``: each term's held-out loss over that of the flat start point, summed (:func:`validation_score`; the
  score before models were tuned, measured in docs/validation.md). A term whose loss falls by orders of magnitude
  from the start (XRF maps) then outweighs one whose held-out loss grows many times (docs/real_samples.md).

The lowest score wins. With ``alternatives`` (``mmip tune``'s default), :func:`tune` first fits the grid, then each
alternative model once at the setting chosen on the grid, scores all trials together, and :func:`choose_model` keeps
the run's own model unless an alternative beats it by :data:`MODEL_MARGIN`.
"""

__all__ = ["Setting", "settings_grid", "validation_score", "tune", "choose", "choose_model", "score_trials", "explain",
           "SCORES", "MODEL_MARGIN", "tune_planner"]

import itertools
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import ConfigError
from .tune_choice import MODEL_MARGIN, _ratio, choose, choose_model, explain

#: the rules :func:`score_trials` scores by (module docstring)
SCORES = ("worst", "sum", "start")


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
    refine : :obj:`tuple` of :obj:`str`, optional
        The model: unknowns refined besides the run's own (``()``: the run's model, shown as ``tied``).
    options : :obj:`tuple`, optional
        ``(term option, value)`` pairs of the model (``matrix@matrix_smoothing_px=2``): given to every term whose
        modality lists the option.
    """

    balance_c: float | None
    likelihood: str = "balanced"
    strengths: tuple = ()
    refine: tuple = ()
    options: tuple = ()

    def label(self, names=()) -> str:
        parts = [self.likelihood] + ([f"c={self.balance_c:g}"] if self.balance_c is not None else [])
        parts += [f"{names[i] if i < len(names) else i}={v:g}" for i, v in self.strengths]
        return ", ".join(parts) + (f", model={self.model}" if self.refine or self.options else "")

    @property
    def model(self) -> str:
        """The model's name: ``tied`` (nothing more refined) or its unknowns joined by ``+``, then its term options
        (``@KEY=VALUE``)."""
        return ("+".join(self.refine) or "tied") + "".join(f"@{k}={v:g}" for k, v in self.options)


@dataclass
class Trial:
    setting: Setting
    score: float
    per_term: dict
    best_iteration: int
    status: str
    error: float
    wall_s: float
    #: ``{term: held-out loss}`` at the best iterate (default losses)
    held: dict = field(default_factory=dict)
    #: ``{term: held-out loss at the flat start}`` of this setting's model
    start: dict = field(default_factory=dict)


def settings_grid(c_values, likelihoods, strength_grids: dict, models=((),)) -> list:
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
    models : sequence of :obj:`tuple`, optional
        The models tried: unknowns refined besides the run's own (``()``: the run's model), or
        ``(unknowns, ((term option, value), ...))`` for a model with its own term options.

    Returns
    -------
    grid : :obj:`list` of :class:`Setting`
        The settings, model-major, then likelihood.

    Raises
    ------
    ConfigError
        The grid is empty.
    """
    combos = list(itertools.product(*[[(i, v) for v in vals] for i, vals in sorted(strength_grids.items())]))
    out = []
    for model in models:
        refine, options = (model[0], model[1]) if model and isinstance(model[0], tuple) else (model, ())
        for lik in likelihoods:
            for c in (c_values if lik == "balanced" else [None]):
                out += [Setting(None if c is None else float(c), lik, tuple(combo), tuple(refine), tuple(options))
                        for combo in combos]
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
    ratios = _start_ratios(scorer.linearize(x).validation, reference)
    return float(sum(ratios.values())), ratios


def _start_ratios(held, reference) -> dict:
    """``{term: held-out loss / its flat-start value}`` (``inf`` where that value is zero)."""
    return {t: held[t] / reference[t] if reference[t] > 0 else math.inf for t in reference}


def tune(build, solve, grid, fraction, seed, patience, progress=None, budget_s=None, score="worst",
         alternatives=(), tolerance=0.0) -> list:
    """Fit every setting of ``grid`` with validation stopping, then every model of ``alternatives`` at the setting
    chosen among them (:func:`choose`); return the :class:`Trial` list in that order, all scored together.

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
        losses) of the setting's model (one per model: its unknowns are the setting's).
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
    score : :obj:`str`, optional
        The rule of :func:`score_trials` (one of :data:`SCORES`).
    alternatives : sequence of :obj:`tuple`, optional
        Models ``(unknowns, ((term option, value), ...))`` tried after the grid, each once, at the grid's chosen
        setting (its ``c``, likelihood and strengths): the second stage of ``mmip tune``'s default. Empty: the grid
        alone.
    tolerance : :obj:`float`, optional
        The tolerance of :func:`choose` for the grid's choice.

    Returns
    -------
    trials : :obj:`list` of ``Trial``
        One per setting tried, grid order then the alternatives, scored together by :func:`score_trials` once all
        are done (``progress`` sees each one's held-out losses, scored against the start).

    Raises
    ------
    ConfigError
        The held-out loss at the flat start is not finite.
    """
    from .validation import StopOnValidation

    if score not in SCORES:
        msg = f"tune: score must be one of {', '.join(SCORES)}; got {score!r}"
        raise ConfigError(msg)
    scorers: dict = {}

    def scorer_of(setting):
        """The scoring problem of the setting's model and its held-out losses at the flat start (built once)."""
        key = setting.refine, setting.options
        if key not in scorers:
            with np.errstate(all="ignore"):  # a non-finite start is reported below, in one line
                scorer = build(Setting(None, "balanced", (), *key), fraction, seed, score=True)
                reference = scorer.linearize(scorer.start()).validation
            bad = {t: v for t, v in reference.items() if not np.isfinite(v)}
            if bad:
                msg = (f"tune: the held-out loss at the flat start is not finite ({bad}); check the data and term "
                       "options (e.g. coupling)")
                raise ConfigError(msg)
            scorers[key] = scorer, reference
        return scorers[key]

    scorer_of(grid[0])
    trials: list = []
    started = time.perf_counter()

    def trial(setting):
        t0 = time.perf_counter()
        scorer, reference = scorer_of(setting)
        problem = build(setting, fraction, seed)
        stop = StopOnValidation(patience)
        res = solve(problem, problem.start(), stop)
        validation = scorer.linearize(res.x).validation
        held = {t: float(validation[t]) for t in reference}  # kept as measured (not rebuilt from the ratios)
        ratios = _start_ratios(held, reference)
        errors = problem.relative_errors(res.x)
        trials.append(Trial(setting, float(sum(ratios.values())), ratios, int(res.returned_row()["iteration"]),
                            res.status, float(errors.get("total", np.nan)), time.perf_counter() - t0, held,
                            dict(reference)))
        if progress is not None:
            progress(trials[-1])

    def in_budget():
        return budget_s is None or not trials or time.perf_counter() - started <= budget_s

    for setting in grid:
        if not in_budget():
            break
        trial(setting)
    if alternatives:
        chosen = choose(score_trials(trials, score), tolerance).setting
        for refine, options in alternatives:
            if not in_budget():
                break
            trial(replace(chosen, refine=tuple(refine), options=tuple(options)))
    return score_trials(trials, score)


def score_trials(trials: list, rule: str = "worst") -> list:
    """The trials scored by ``rule`` (:data:`SCORES`): ``per_term`` and ``score`` replaced.

    Parameters
    ----------
    trials : :obj:`list` of ``Trial``
        Trials with their held-out losses (``held``) and flat-start losses (``start``).
    rule : :obj:`str`, optional
        ``worst``: each term's held-out loss over the lowest any trial reached, the largest ratio; ``sum``: those
        ratios summed; ``start``: each over the flat start's, summed.

    Returns
    -------
    trials : :obj:`list` of ``Trial``
        New trials, same order.
    """
    if rule == "start":
        return [replace(t, per_term={k: _ratio(v, t.start[k]) for k, v in t.held.items()},
                        score=float(sum(_ratio(v, t.start[k]) for k, v in t.held.items()))) for t in trials]
    best = {k: min(t.held[k] for t in trials) for k in trials[0].held}
    out = []
    for t in trials:
        ratios = {k: _ratio(v, best[k]) for k, v in t.held.items()}
        value = max(ratios.values()) if rule == "worst" else sum(ratios.values())
        out.append(replace(t, per_term=ratios, score=float(value)))
    return out


def tune_planner(cfg, grid, fraction, alternatives=None) -> tuple:
    """The memory plan of a tune (:func:`~multimodal_ip.run_budget.run_planner`, before the data are read) and the
    configuration it fits (its ``chunk_memory`` and ``solver_options`` are the tune's setting): every fit holds
    ``fraction`` out and keeps its best iterate, the largest model's unknowns count (the grid's and the
    alternatives'), and every model's scoring problem keeps its masks (and its start values with ``start``).

    Parameters
    ----------
    cfg : :obj:`dict`
        The run configuration of the tune (not changed).
    grid : :obj:`list` of ``Setting``
        The settings tried (:func:`settings_grid`).
    fraction : :obj:`float`
        The share of the values held out.
    alternatives : callable, optional
        ``alternatives(terms)``: the model alternatives ``[(refine, options), ...]`` tried after the grid.

    Returns
    -------
    plan : callable
        The loader's ``plan``.
    planned : :obj:`dict`
        The configuration the plan fits in place.
    """
    from .run_budget import measured_values, run_planner

    own = dict(cfg, stopping={"rule": "validation", "fraction": fraction})
    grid_models = {(s.refine, s.options) for s in grid}

    def models(terms):
        return [m[0] for m in grid_models] + [r for r, _ in (alternatives(terms) if alternatives else [])]

    def extra(space, terms, vector):
        n = len(models(terms))  # a scoring problem per model, kept to the end
        return {"scoring problems": n * (measured_values(terms) + (vector if cfg.get("start") is not None else 0))}

    return run_planner(own, models=models, extra=extra), own
