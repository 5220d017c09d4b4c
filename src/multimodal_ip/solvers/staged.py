__all__ = ["solve_staged"]

from ..errors import ConfigError
from ..problem import Objective
from .base import Handover, History, Result, SolverState, take_start

_PREFIX = "stage1_history."


class _StageSolver:
    """What a staged run's callback sees as ``state.solver``: the running stage's solver, whose
    :meth:`state_dict` also records the stage (and the first stage's history during the second)."""

    def __init__(self, inner, stage, first_history=None):
        self.inner, self.stage, self.first_history = inner, stage, first_history

    def state_dict(self) -> dict:
        state = self.inner.state_dict()
        state["scalars"] = dict(state["scalars"], stage=self.stage)
        if self.first_history is not None:
            state["arrays"].update({_PREFIX + k: v for k, v in self.first_history.as_arrays().items()})
        return state


def solve_staged(problem: Objective, x0, solver: str = "lbfgs", maxiter: int = 100, refine_after: int = 0,
                 callback=None, resume_state=None, **options) -> Result:
    """Solve with the calibration unknowns (``problem.calibration``) frozen for the first
    ``refine_after`` iterations, then refined with the rest for the remaining ones; one history. Variables the
    problem already holds fixed (``problem.frozen``) stay fixed in both stages; when they are all the others, the
    calibration is refined from the first iteration.

    From a flat start the object carries no structure that a calibration update could match, and the
    calibration gradients are orders of magnitude larger than the object's: refined from the first iteration
    they absorb the misfit (measured on the phantom case: error 0.20 instead of 0.11, see the README).

    Parameters
    ----------
    problem : :class:`~multimodal_ip.problem.objective.Objective`
        The objective (a :class:`~multimodal_ip.JointProblem` or a composition around one).
    x0 : :obj:`numpy.ndarray` or :class:`~multimodal_ip.solvers.Handover`
        The packed start point; handed over (a :class:`~multimodal_ip.solvers.Handover`), it is the solver's
        first iterate and no frame of the run keeps it.
    solver : :obj:`str`, optional
        The registered solver both stages run.
    maxiter : :obj:`int`, optional
        Iterations of both stages together.
    refine_after : :obj:`int`, optional
        Iterations with the calibration unknowns frozen (0: refined from the start).
    callback : callable, optional
        ``callback(state)``, seeing the overall iteration number; ``state.solver.state_dict()`` is a checkpoint of
        the staged run.
    resume_state : :obj:`dict`, optional
        Such a checkpoint: the run continues in whichever stage it was saved.
    **options
        The solver's other options, and the staged run's own: ``calibration`` (``auto``, ``estimator`` or
        ``gradient``), ``calibration_round`` and ``estimator_iterations``: calibration unknowns by their term's own
        estimator (:func:`~multimodal_ip.solvers.alternating.solve_alternating`; ``auto`` when nothing else moves).

    Returns
    -------
    :class:`Result`
        One result with one history over both stages.
    """
    from ..backend import solver_threads

    with solver_threads():
        return _solve_staged(problem, x0, solver, maxiter, refine_after, callback, resume_state, **options)


def _solve_staged(problem: Objective, x0, solver, maxiter, refine_after, callback, resume_state, **options):
    from . import get_solver
    from .alternating import STAGED_OPTIONS, plan_estimators, solve_alternating

    staged = {k: options.pop(k, v) for k, v in STAGED_OPTIONS.items()}
    plans = plan_estimators(problem, staged.pop("calibration"))
    _check_derivatives(problem, {n for p in plans for n in p.names})
    if plans:  # calibration unknowns a term estimates itself (docs/refinement.md, "Known-object calibration")
        return solve_alternating(problem, x0, plans, solver, maxiter, refine_after, callback, resume_state,
                                 **staged, **options)
    fixed = tuple(problem.frozen)  # held fixed by the caller in both stages (``--freeze``)
    frozen = tuple(n for n in problem.calibration if n not in fixed)
    free = set(problem.space.names) - {*fixed, *frozen}  # nothing would move in the first stage: no first stage
    k = min(max(int(refine_after), 0), int(maxiter)) if frozen and free else 0
    run = get_solver(solver)
    takes = bool(getattr(run, "takes_handover", False))
    if not takes:  # a solve function of the plugin protocol is given the array
        x0 = take_start(x0)
    if k == 0:
        return run(problem, x0, maxiter=maxiter, callback=callback, resume_state=resume_state, **options)
    stage = int((resume_state or {}).get("scalars", {}).get("stage", 1))
    first = None
    if stage == 2:
        arrays = resume_state["arrays"]
        first = History.from_arrays({n[len(_PREFIX):]: a for n, a in arrays.items() if n.startswith(_PREFIX)})
    else:
        wrapped = None if callback is None else (
            lambda st: callback(SolverState(st.iteration, st.x, st.history, _StageSolver(st.solver, 1))))
        res = run(problem.with_frozen((*fixed, *frozen)), x0, maxiter=k, callback=wrapped, resume_state=resume_state,
                  **options)
        if maxiter - k == 0 or res.status in ("failed", "validation", "noise"):
            return res
        first, x0, resume_state = res.history, Handover(res.x) if takes else res.x, None
        del res  # the second stage's start is handed over too
    offset = int(first.last().get("iteration", 0))
    if options.get("stopping") is not None:  # one validation record over both stages, in overall iterations
        options["stopping"].offset = offset

    def second_callback(st):
        callback(SolverState(st.iteration + offset, st.x, first.then(st.history),
                             _StageSolver(st.solver, 2, first)))

    res = run(problem, x0, maxiter=maxiter - k, callback=None if callback is None else second_callback,
              resume_state=resume_state, **options)
    message = f"reached maxiter={maxiter} in two stages: {k} + {maxiter - k}" if res.status == "maxiter" \
        else res.message  # the second stage's own count is not the run's
    return Result(res.x, first.then(res.history), res.status, message, res.arrays, res.returned_iteration)


def _check_derivatives(problem, estimated) -> None:
    """Refuse, in one line, a run that would move an input a term's operator has no derivatives in (its
    ``no_derivatives``, e.g. ptychography's band-limited windows at moving positions) by gradient steps: such an
    input is held (``--freeze``) or estimated by its term's estimator (``calibration=estimator``)."""
    moving = set(problem.space.names) - set(problem.frozen) - set(estimated)
    for t in getattr(problem, "terms", ()):
        bad = sorted(set(getattr(t.operator, "no_derivatives", ())) & moving & set(t.inputs))
        if bad:
            msg = (f"term {t.name!r} has no derivatives in {', '.join(bad)} (its model); move them by its estimator "
                   "(--solver-option calibration=estimator) or hold them (--freeze)")
            raise ConfigError(msg)
