"""Calibration unknowns by their term's own estimator (``DataTerm.estimator``, a
:class:`~multimodal_ip.problem.CalibrationEstimator`): a block solver for unknowns only that term reads, called by
:func:`~multimodal_ip.solvers.solve_staged` instead of gradient steps on them (solver option ``calibration``): the
whole run when nothing else moves, else in turn with the solver (:func:`solve_alternating`)."""

__all__ = ["CALIBRATION_MODES", "STAGED_OPTIONS", "EstimatorPlan", "plan_estimators", "solve_alternating",
           "check_staged_options"]

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from ..backend import get_array_module
from ..errors import ConfigError, SolverError
from .history import History
from .result import Result, SolverState

log = logging.getLogger("multimodal_ip.solvers")

#: ``calibration``: ``auto`` uses a term's estimator when nothing else moves (else gradient steps, as before: with
#: the object unknown the alternation measured no better, docs/refinement.md "End to end"), ``estimator`` also
#: alternates it with the solver and refuses a run where it cannot be used, ``gradient`` never uses one
CALIBRATION_MODES = ("auto", "estimator", "gradient")
#: the staged run's own options, besides the solver's: ``calibration``; ``calibration_round``, the gradient solver's
#: iterations between two estimator calls (measured, docs/refinement.md "End to end"); ``estimator_iterations``, the
#: estimator's own iterations per call of an alternation (a run of the estimator alone takes the run's iterations)
STAGED_OPTIONS = {"calibration": "auto", "calibration_round": 25, "estimator_iterations": 20}


def check_staged_options(options: dict) -> None:
    """Refuse, in one line, a ``calibration`` that is not one of :data:`CALIBRATION_MODES`.

    Parameters
    ----------
    options : :obj:`dict`
        The run's solver options (types are checked with the solver's).

    Raises
    ------
    ConfigError
        An unknown mode.
    """
    mode = options.get("calibration", "auto")
    if mode not in CALIBRATION_MODES:
        msg = f"solver option calibration={mode!r}: expected one of {', '.join(CALIBRATION_MODES)}"
        raise ConfigError(msg)


@dataclass(frozen=True)
class EstimatorPlan:
    """Which term's estimator estimates which refined unknowns, and their constraints.

    Parameters
    ----------
    term : :class:`~multimodal_ip.DataTerm`
        The (whole) term offering the estimator.
    names : :obj:`tuple` of :obj:`str`
        The refined unknowns it estimates.
    constraints : :obj:`tuple`, optional
        The constraints on them (regularizers with ``is_constraint`` and a proximal map, the projection): their
        bounds go to the estimator, and what it returns is projected onto them.
    """

    term: object
    names: tuple
    constraints: tuple = field(default_factory=tuple)

    def bounds(self) -> dict:
        """``{name: (lower, upper)}`` of the box constraints on :attr:`names` (several boxes intersected).

        Returns
        -------
        :obj:`dict`
        """
        out: dict = {}
        for r in self.constraints:
            for n in set(r.variables) & set(self.names):
                low, high = out.get(n, (-np.inf, np.inf))
                out[n] = (np.maximum(low, getattr(r, "lower", -np.inf)), np.minimum(high, getattr(r, "upper", np.inf)))
        return out


def _refuse(mode, reason, fix):
    """Raise (mode ``estimator``) or log and return ``[]`` (``auto``: the gradient steps, as before)."""
    if mode == "estimator":
        msg = f"solver option calibration=estimator: {reason}; {fix}"
        raise ConfigError(msg)
    log.info("calibration by gradient steps: %s", reason)
    return []


def plan_estimators(problem, mode: str = "auto") -> list:
    """The estimators a staged run uses for its refined calibration unknowns (``[]``: gradient steps only).

    Parameters
    ----------
    problem : :class:`~multimodal_ip.problem.objective.Objective`
        The run's problem (its ``calibration``, ``frozen``, terms and regularizers).
    mode : :obj:`str`, optional
        One of :data:`CALIBRATION_MODES`.

    Returns
    -------
    :obj:`list` of :class:`EstimatorPlan`

    Raises
    ------
    ConfigError
        An unknown mode; a term's estimator would run but sees only a part of its data (MPI ranks, chunked
        evaluation); mode ``estimator`` where no estimator can be used (the reason and what to do in one line).
    """
    check_staged_options({"calibration": mode})
    refined = [n for n in problem.calibration if n not in problem.frozen]
    if mode == "gradient" or not refined:
        return []
    terms = tuple(getattr(problem, "terms", ()))
    offered = [(t, tuple(n for n in refined if n in t.estimator.unknowns and n in t.inputs)) for t in terms
               if getattr(t, "estimator", None) is not None]
    offered = [(t, names) for t, names in offered if names]
    if not offered:
        return _refuse(mode, f"no data term offers an estimator of {', '.join(refined)}",
                       "use calibration=gradient (or auto)")
    estimated = {n for _, names in offered for n in names}
    alternation = bool(set(problem.space.names) - {*problem.frozen, *estimated})  # other unknowns move too
    if alternation and mode == "auto":  # measured no better than the joint gradient (docs/refinement.md)
        return _refuse(mode, "other unknowns move too (calibration=estimator alternates)", "")
    where = ", ".join(sorted({t.name for t, _ in offered}))
    if getattr(problem, "comm", None) is not None or not hasattr(problem, "parts"):
        msg = (f"term(s) {where} estimate their calibration from all their data; this run splits the data over MPI "
               "ranks: run it in one process, or with --solver-option calibration=gradient")
        raise ConfigError(msg)
    split = [t.name for t, _ in offered if problem.parts.get(t.name, 1) > 1]
    if split:
        msg = (f"term {split[0]!r} is evaluated in {problem.parts[split[0]]} parts (chunked, --chunk-memory) and its "
               "estimator sees one part's data: run with --chunk-memory 0, or with --solver-option "
               "calibration=gradient")
        raise ConfigError(msg)
    plans = []
    for t, names in offered:
        others = sorted({o.name for o in terms if o.name != t.name and set(o.inputs) & set(names)})
        if others:
            return _refuse(mode, f"{', '.join(names)} of term {t.name!r} are also read by {', '.join(others)} (its "
                           "estimator sees its own data only)", "use calibration=gradient (the joint gradient)")
        regs = [r for r in problem.regularizers if set(r.variables) & set(names)]
        soft = [r.name for r in regs if not (r.is_constraint and r.has_prox)]
        if soft:
            return _refuse(mode, f"regularizer(s) {', '.join(soft)} read {', '.join(names)} (the estimator knows only "
                           "box constraints)", "use calibration=gradient")
        plans.append(EstimatorPlan(t, names, tuple(regs)))
    if alternation and problem.has_holdout:
        return _refuse(mode, "stopping on held-out data (--stop validation) is not combined with an alternation",
                       "use --stop iterations, or calibration=gradient")
    return plans


#: checkpoint arrays of an alternating run's history before the running gradient round
_PREFIX = "alternating_history."


class _Checkpoint:
    """What an alternating run's callback sees as ``state.solver`` after an estimate: its checkpoint is the iterate
    and the history (the next step of the schedule starts afresh)."""

    def __init__(self, iteration, x, history, elapsed, packing=()):
        self.iteration, self.x, self.history, self.elapsed = iteration, x, history, elapsed
        self.packing = list(packing)

    def state_dict(self) -> dict:
        from ..backend import to_numpy

        return {"solver": "alternating", "iteration": self.iteration, "elapsed": self.elapsed,
                "arrays": {"x": to_numpy(self.x)}, "scalars": {"packing": self.packing},
                "history": self.history.as_arrays()}


class _RoundCheckpoint:
    """``state.solver`` during a gradient round: the round solver's own checkpoint (resumed exactly), with the
    round's place in the run and the history before it."""

    def __init__(self, inner, offset, t_offset, before):
        self.inner, self.offset, self.t_offset, self.before = inner, offset, t_offset, before

    def state_dict(self) -> dict:
        state = self.inner.state_dict()
        state["scalars"] = dict(state["scalars"], alternating_round=self.offset, alternating_time=self.t_offset)
        state["arrays"].update({_PREFIX + k: v for k, v in self.before.as_arrays().items()})
        return state


class _Run:
    """The state of one alternating run: the iterate, the history, the clock and the estimator calls."""

    def __init__(self, problem, plans, callback):
        self.problem, self.plans, self.callback = problem, plans, callback
        self.names = tuple(n for p in plans for n in p.names)
        self.held = problem.with_frozen((*problem.frozen, *self.names))  # what the gradient rounds solve
        self.history = History()
        self.iteration, self.elapsed, self.searched = 0, 0.0, False
        self.x = None

    def record(self, extra=None) -> dict:
        lin = self.held.linearize(self.x)
        row = {"iteration": self.iteration, "time_s": self.elapsed, "objective": lin.objective}
        row.update({f"objective_{k}": v for k, v in lin.objectives.items()})
        row["grad_norm"] = float(get_array_module(lin.gradient).linalg.norm(lin.gradient))
        row.update(extra or {})
        row.update({f"error_{k}": v for k, v in self.problem.relative_errors(self.x).items()})
        self.history.append(row)
        return row

    def notify(self) -> None:
        if self.callback is not None:
            self.callback(SolverState(self.iteration, self.x, self.history,
                                      _Checkpoint(self.iteration, self.x, self.history, self.elapsed,
                                                  getattr(self.problem.space, "packing", ()))))

    def estimate(self, iterations, count=1):
        """Every plan's estimator at the current iterate (``count``: the iterations the call adds to the run)."""
        t0 = time.perf_counter()
        space = self.problem.space
        arrays = space.unpack(self.x)
        taken, converged, messages = 0, True, []
        for plan in self.plans:
            values = {n: arrays[n] for n in plan.term.inputs}
            est = plan.term.estimator(values, plan.names, iterations=iterations, bounds=plan.bounds(),
                                      search=not self.searched)
            arrays.update(_checked(plan, est, space, self.problem.xp))
            taken, converged = max(taken, int(est.iterations)), converged and bool(est.converged)
            messages.append(est.message or f"{plan.term.name}: {est.iterations} iterations")
        self.searched = True
        self.x = space.pack(arrays)
        self.iteration += int(count if count is not None else max(taken, 1))
        self.elapsed += time.perf_counter() - t0
        self.record({"estimator_iterations": taken})
        self.notify()
        return taken, converged, "; ".join(messages)

    def gradient_round(self, run, held, k, options, resume_state=None):
        """``k`` iterations of the gradient solver on ``held`` (the problem with the estimated unknowns held;
        continued from its checkpoint ``resume_state``); its rows join the history."""
        offset, t_offset, before = self.iteration, self.elapsed, self.history

        def cb(st):
            if self.callback is not None:
                history = before.then(st.history, offset, t_offset)
                self.callback(SolverState(st.iteration + offset, st.x, history,
                                          _RoundCheckpoint(st.solver, offset, t_offset, before)))

        max_time = options.get("max_time_s")
        opts = dict(options) if max_time is None else dict(options, max_time_s=max(max_time - self.elapsed, 0.0))
        res = run(held, self.x, maxiter=k, callback=cb, resume_state=resume_state, **opts)
        self.history = before.then(res.history, offset, t_offset)
        self.x = res.x
        self.iteration = offset + int(res.history.last().get("iteration", 0))
        self.elapsed = t_offset + float(res.history.last().get("time_s", 0.0))
        return res

    def resume(self, state, first) -> dict | None:
        """Take up a checkpoint: after an estimate (``None``), or in a gradient round (the round's own checkpoint,
        returned)."""
        scalars, arrays = state.get("scalars", {}), state.get("arrays", {})
        if state.get("solver") == "alternating":
            self.history = History.from_arrays(state["history"])
            self.iteration, self.elapsed = int(state["iteration"]), float(state["elapsed"])
            inner = None
        elif "alternating_round" in scalars:
            before = {k[len(_PREFIX):]: a for k, a in arrays.items() if k.startswith(_PREFIX)}
            self.history = History.from_arrays(before)
            self.iteration, self.elapsed = int(scalars["alternating_round"]), float(scalars["alternating_time"])
            inner = dict(state, arrays={k: a for k, a in arrays.items() if not k.startswith(_PREFIX)})
        else:
            msg = (f"checkpoint of solver {state.get('solver')!r}: this run estimates {', '.join(self.names)} by its "
                   "term's estimator (a checkpoint of an alternating run); resume with --solver-option "
                   "calibration=gradient")
            raise SolverError(msg)
        self.x = self.problem.xp.asarray(arrays["x"])
        self.searched = self.iteration > first
        return inner


def _checked(plan, est, space, xp) -> dict:
    """The estimate of ``plan``'s unknowns: every name, each of its variable's shape and finite, projected onto the
    constraints; a wrong estimate is a :class:`~multimodal_ip.errors.SolverError` naming the term."""
    values = getattr(est, "values", None)
    if not isinstance(values, dict) or set(values) != set(plan.names):
        got = sorted(values) if isinstance(values, dict) else type(est).__name__
        msg = f"estimator of term {plan.term.name!r} returned {got}, expected estimates of {', '.join(plan.names)}"
        raise SolverError(msg)
    out = {}
    for n in plan.names:
        a = xp.asarray(values[n], dtype=space[n].dtype)
        if tuple(a.shape) != space[n].shape or not bool(xp.all(xp.isfinite(a))):
            msg = (f"estimator of term {plan.term.name!r}: estimate of {n!r} has shape {tuple(a.shape)} (expected "
                   f"{space[n].shape}) or is not finite")
            raise SolverError(msg)
        for r in plan.constraints:
            if n in r.variables:
                a = r.prox(a, 1.0)  # a constraint's proximal map is the projection onto it
        out[n] = a
    return out


def _schedule(maxiter, first, every) -> list:
    """The alternation as ``[(kind, iterations)]``: ``first`` gradient iterations, then an estimate (1) and
    ``every`` gradient iterations in turn, ending on an estimate (unless one iteration is left after one);
    ``maxiter`` iterations in all."""
    steps, left = [("gradient", min(first, maxiter))] if first > 0 else [], maxiter - min(first, maxiter)
    while left > 0:
        steps.append(("estimate", 1))
        left -= 1
        k = min(every, left - 1) if left > 1 else left  # leave the last iteration to a final estimate
        if k > 0:
            steps.append(("gradient", k))
            left -= k
    return steps


def solve_alternating(problem, x0, plans, solver="lbfgs", maxiter=100, refine_after=0, callback=None,
                      resume_state=None, calibration_round=25, estimator_iterations=20, **options) -> Result:
    """Refine the unknowns of ``plans`` by their terms' estimators (:func:`plan_estimators`), the rest by
    ``solver``.

    With every variable but the estimated ones held fixed (``problem.frozen``) the run is one estimator call of
    ``maxiter`` iterations: two history rows (before and after), the status ``converged`` or ``maxiter`` as the
    estimator reports. Otherwise ``refine_after`` solver iterations (``calibration_round`` when 0) with the
    calibration held, then an estimate and ``calibration_round`` solver iterations in turn (other refined unknowns
    move with the solver; before the first estimate every calibration unknown is held, as in a staged run), ending
    on an estimate where the count allows; each estimate counts as one of the ``maxiter`` iterations (its own
    iterations, at most ``estimator_iterations``, in the column ``estimator_iterations``).

    Parameters
    ----------
    problem : :class:`~multimodal_ip.JointProblem`
        The run's problem.
    x0 : array
        The packed start point.
    plans : :obj:`list` of :class:`EstimatorPlan`
        The estimators (:func:`plan_estimators`).
    solver : :obj:`str`, optional
        The registered solver of the other unknowns.
    maxiter : :obj:`int`, optional
        Iterations of the run.
    refine_after : :obj:`int`, optional
        Solver iterations before the first estimate.
    callback : callable, optional
        ``callback(state)`` after every iteration (overall numbering); ``state.solver.state_dict()`` is a checkpoint.
    resume_state : :obj:`dict`, optional
        Such a checkpoint: the run continues its schedule from the saved iterate.
    calibration_round : :obj:`int`, optional
        Solver iterations between two estimates.
    estimator_iterations : :obj:`int`, optional
        The estimator's iterations per call in an alternation.
    **options
        The solver's options.

    Returns
    -------
    :class:`~multimodal_ip.solvers.Result`
    """
    from . import get_solver
    from .base import take_start

    run = _Run(problem, plans, callback)
    run.x = take_start(x0)  # a Handover's array: the run's iterate, held by no caller
    moving = set(problem.space.names) - {*problem.frozen, *run.names}
    first = int(refine_after) if refine_after > 0 else int(calibration_round)
    if not set(moving) - set(problem.calibration):  # nothing but calibration moves: no first stage
        first = 0
    inner = None if resume_state is None else run.resume(resume_state, first)
    if resume_state is None:
        run.record()
    if not moving:  # the estimator is the whole run (nothing to stop early: a stopping rule is not used)
        taken, converged, message = run.estimate(maxiter, count=None)
        return _result(run, "converged" if converged else "maxiter", message)
    gradient = get_solver(solver)
    done = 0
    for kind, k in _schedule(int(maxiter), first, max(int(calibration_round), 1)):
        done += k
        if done <= run.iteration:
            continue  # a resumed run: this step is in the checkpoint
        if kind == "estimate":
            run.estimate(estimator_iterations)
            continue
        held = problem.with_frozen((*problem.frozen, *problem.calibration)) if done == k and first else run.held
        res = run.gradient_round(gradient, held, k, options, resume_state=inner)
        inner = None
        if res.status in ("failed", "max_time"):
            return _result(run, res.status, res.message)
    names = ", ".join(run.names)
    return _result(run, "maxiter", f"reached maxiter={maxiter} alternating {solver} ({calibration_round} iterations "
                   f"a round) with the estimator of {names}")


def _result(run, status, message) -> Result:
    return Result(run.x, run.history, status, message, run.problem.space.unpack(run.x), None)
