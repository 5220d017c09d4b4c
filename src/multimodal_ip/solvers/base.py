__all__ = ["Solver", "Result", "History", "SolverState", "Stop", "STATUSES", "stalled", "machine_epsilon",
           "unresolved", "ROUNDOFF_ULPS", "STEP_ULPS", "same_point"]

import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..backend import get_array_module, to_numpy
from ..errors import SolverError, one_line
from ..objective import Objective

log = logging.getLogger("multimodal_ip.solvers")


class History:
    """One row per iteration; columns ``iteration, time_s, objective, objective_<term>, grad_norm, error_<var>``.

    Parameters
    ----------
    rows : :obj:`list` of :obj:`dict`, optional
        Rows to start from (a resumed run's history).
    """

    def __init__(self, rows=None):
        self.rows = list(rows or [])

    def append(self, row: dict) -> None:
        self.rows.append(dict(row))

    @property
    def columns(self) -> list:
        cols: list[str] = []
        for r in self.rows:
            cols.extend(k for k in r if k not in cols)
        return cols

    def __getitem__(self, column) -> np.ndarray:
        return np.array([r.get(column, np.nan) for r in self.rows], dtype=float)

    def __len__(self) -> int:
        return len(self.rows)

    def as_arrays(self) -> dict:
        return {c: self[c] for c in self.columns}

    @classmethod
    def from_arrays(cls, arrays: dict) -> "History":
        n = len(next(iter(arrays.values()))) if arrays else 0
        return cls([{k: float(v[i]) for k, v in arrays.items()} for i in range(n)])

    def last(self) -> dict:
        return self.rows[-1] if self.rows else {}


#: Every ``Result.status`` a solver may return, and what it means.
STATUSES = {
    "converged": "a stopping test on the gradient or the objective change was met (gtol, ftol, zero gradient), "
                 "or no step changes the iterate and the objective while the model step is below the precision's "
                 "round-off (see unresolved)",
    "maxiter": "the iteration budget was used up; the last iterate is returned",
    "max_time": "the time budget (max_time_s) was used up; the last iterate is returned",
    "stalled": "the solver could not make progress (a failed line search, no acceptable damped step, an "
               "iteration that changed neither the iterate nor the objective) while its model promised a "
               "resolvable decrease: not a convergence test, often a wrong gradient",
    "failed": "the objective or gradient is not finite (at the start or during the run)",
    "validation": "the held-out validation loss did not improve for `patience` iterations; the iterate with the "
                  "lowest validation loss is returned (see multimodal_ip.validation)",
}


@dataclass(frozen=True)
class Stop:
    """What :meth:`Solver.step` returns to end a run: a status of :data:`STATUSES` and a message.

    A plain string returned by ``step`` still means ``converged`` (a convergence test of the solver's own).

    Parameters
    ----------
    status : :obj:`str`
        One of :data:`STATUSES`; any other is a ``ValueError``.
    message : :obj:`str`
        Why the run ends, in words.
    """

    status: str
    message: str

    def __post_init__(self):
        if self.status not in STATUSES:
            msg = f"unknown solver status {self.status!r}; one of {', '.join(STATUSES)}"
            raise ValueError(msg)


def stalled(message: str) -> Stop:
    """A step that found no progress: never reported as convergence.

    Parameters
    ----------
    message : :obj:`str`
        What the step found.

    Returns
    -------
    :class:`Stop`
        ``Stop("stalled", message)``, for :meth:`Solver.step` to return.
    """
    return Stop("stalled", message)


def same_point(a, b) -> bool:
    """``a`` and ``b`` hold the same values (a step too short to change an iterate at its precision)."""
    return a.shape == b.shape and bool(get_array_module(a).array_equal(a, b))


#: what a run's precision resolves, in units of its machine epsilon: a predicted decrease below ``ROUNDOFF_ULPS``
#: ulps of the objective (1.4e-14 relative in float64, 7.6e-6 in float32) cannot be told from round-off
ROUNDOFF_ULPS = 64
#: a model step shorter than ``STEP_ULPS`` ulps of the iterate (in norm) hardly changes it at its precision
STEP_ULPS = 4


def machine_epsilon(dtype) -> float:
    """Machine epsilon of ``dtype`` (of its real part when complex)."""
    return float(np.finfo(np.ones(1, dtype).real.dtype).eps)


def unresolved(decrease: float, step_norm: float, objective: float, x_norm: float, dtype,
               largest_objective: float = 0.0) -> str:
    r"""Why a solver's model step at an iterate is below what precision ``dtype`` resolves, or ``""``.

    A solver that finds no step changing the iterate and decreasing the objective has then converged at round-off;
    otherwise it has stalled (often a wrong gradient: the model promises a decrease the objective does not show).
    With :math:`\epsilon` = :func:`machine_epsilon` (``dtype``), the step is unresolved when

    * its predicted ``decrease`` is at most ``ROUNDOFF_ULPS`` :math:`\epsilon\,|\Phi|`, or
    * its length ``step_norm`` is at most ``STEP_ULPS`` :math:`\epsilon\,\|x\|` (``inf``: not tested), or
    * the objective is at most ``ROUNDOFF_ULPS`` :math:`\epsilon^2` times ``largest_objective``, the largest
      value of the run: a zero-residual fit ends at the square of its residuals' round-off, where a predicted
      decrease is as large as the objective itself.
    """
    eps = machine_epsilon(dtype)
    name = np.dtype(np.ones(1, dtype).real.dtype).name
    if 0 <= decrease <= ROUNDOFF_ULPS * eps * abs(objective):
        return f"predicted decrease {decrease:.3g} below {name} round-off of the objective {objective:.6g}"
    if step_norm <= STEP_ULPS * eps * x_norm:
        return f"model step {step_norm:.3g} below {name} round-off of the iterate (norm {x_norm:.6g})"
    if abs(objective) <= ROUNDOFF_ULPS * eps**2 * largest_objective:
        return (f"objective {objective:.3g} at the {name} round-off floor of its largest value in the run "
                f"({largest_objective:.6g})")
    return ""


@dataclass
class Result:
    """What a solver returns: the packed solution, the history and why it stopped.

    Parameters
    ----------
    x : :obj:`numpy.ndarray`
        The returned iterate, packed (numpy or cupy).
    history : :class:`History`
        One row per iteration.
    status : :obj:`str`
        One of :data:`STATUSES` (``converged``, ``maxiter``, ``max_time``, ``stalled``, ``failed``).
    message : :obj:`str`
        Why it stopped, in words.
    arrays : :obj:`dict`, optional
        ``{variable: array}``: ``x`` unpacked.
    returned_iteration : :obj:`int`, optional
        The iteration whose iterate ``x`` is (``None``: the last).
    """

    x: object
    history: History
    status: str
    message: str
    arrays: dict = field(default_factory=dict)
    #: the iteration whose iterate ``x`` is (``None``: the last; with early stopping, the best-validation one)
    returned_iteration: int | None = None

    def returned_row(self) -> dict:
        """The history row of the returned iterate."""
        if self.returned_iteration is None:
            return self.history.last()
        return next((r for r in self.history.rows if int(r["iteration"]) == self.returned_iteration),
                    self.history.last())


class Checkpointable(Protocol):
    """What ``SolverState.solver`` offers: a :class:`Solver`, or a staged run's view of its running stage."""

    def state_dict(self) -> dict: ...


@dataclass
class SolverState:
    """What a callback sees, and what a checkpoint stores.

    Parameters
    ----------
    iteration : :obj:`int`
        The iteration just completed.
    x : :obj:`numpy.ndarray`
        The packed iterate.
    history : :class:`History`
        The rows so far.
    solver : :class:`Solver`
        The running solver (``state_dict()`` is its checkpoint), or a staged run's view of its running stage.
    """

    iteration: int
    x: object
    history: History
    solver: "Checkpointable"


class Solver:
    r"""Base class: owns the loop, timer, stopping rules, history, NaN checks and checkpoints.

    A subclass implements :meth:`setup` (state at ``x0``) and :meth:`step` (one
    iteration; updates ``self.x`` and ``self.lin``), and lists its extra array
    state in :meth:`_state_variable_names` so that a run can be saved and resumed.

    Parameters
    ----------
    problem : :class:`~multimodal_ip.objective.Objective`
        What is minimised: a :class:`~multimodal_ip.JointProblem` or a composition around one (the solver uses
        only the protocol's members).
    maxiter : :obj:`int`, optional
        Maximum number of iterations.
    gtol : :obj:`float`, optional
        Stop when the gradient norm falls below ``gtol``.
    ftol : :obj:`float`, optional
        Stop when the relative objective change of one iteration falls below ``ftol``.
    max_time_s : :obj:`float`, optional
        Stop after this much solver time (callbacks excluded).
    callback : callable, optional
        ``callback(state)`` after every iteration (:class:`SolverState`); the timer pauses meanwhile.
    stopping : :class:`~multimodal_ip.validation.StopOnValidation`, optional
        Early stopping on the held-out validation loss (the problem's terms need a holdout): the run ends with
        status ``validation`` when it has not improved for ``stopping.patience`` iterations, and whatever ends the
        run, the iterate with the lowest validation loss is returned.
    align : :obj:`bool`, optional
        After every iteration, move the iterate along each term's :class:`~multimodal_ip.Invariance` to the best
        fit of the other terms (:meth:`~multimodal_ip.JointProblem.align`); the history gets ``align_<term>``.
        Solvers that cannot change their iterate between iterations refuse it.
    """

    name = "solver"
    #: state attributes that are lists of arrays (stored stacked)
    _list_states: tuple[str, ...] = ()

    #: why this solver cannot take ``align`` (its state would not follow an iterate moved between iterations);
    #: empty when it can
    cannot_align = ""

    #: array attributes besides ``x`` whose change is progress (an ADMM dual moves while its iterate rests): an
    #: iteration that changes none of them, ``x`` nor the objective ends the run (:meth:`_no_progress`)
    progress_state: tuple[str, ...] = ()

    def __init__(self, problem: Objective, maxiter=100, gtol=1e-10, ftol=0.0, max_time_s=None, callback=None,
                 stopping=None, align=False):
        self.problem = problem
        self.align = bool(align)
        if self.align and self.cannot_align:
            msg = f"solver {self.name!r} cannot take align=true: {self.cannot_align}"
            raise SolverError(msg)
        self.moves: dict = {}
        self.align_steps: dict = {}  # the trust region along each invariance (``align``), by term
        self.maxiter = int(maxiter)
        self.gtol = float(gtol)
        self.ftol = float(ftol)
        self.max_time_s = max_time_s
        self.callback = callback
        self.stopping = stopping
        if stopping is not None and not problem.has_holdout:
            msg = "stopping on validation needs held-out values: build the problem with validation on"
            raise SolverError(msg)
        self.history = History()
        self.iteration = 0
        self.elapsed = 0.0

    # ---- subclasses ------------------------------------------------------------
    def setup(self, x0) -> None:
        self.x = x0
        self.lin = self.problem.linearize(x0)

    def step(self) -> "str | Stop | None":
        """One iteration. ``None`` to go on, a :class:`Stop` to end (``stalled(...)`` when no step was found),
        or a string: a convergence test of the solver's own was met."""
        raise NotImplementedError

    def _state_variable_names(self) -> tuple:
        """Names of array attributes (besides ``x``) needed to resume exactly."""
        return ()

    def _state_scalars(self) -> dict:
        return {}

    def _load_scalars(self, scalars: dict) -> None:
        pass

    def _align(self) -> None:
        """Move ``self.x`` along the problem's invariances (``align``) and linearize there. Each invariance's trust
        region doubles after a move that reached it (up to ``ALIGN_GROWTH`` times its ``max_step``) and halves back
        towards ``max_step`` otherwise; it is saved in checkpoints."""
        from ..problem import ALIGN_GROWTH

        start = {n: float(inv.max_step) for n, inv in self.problem.invariances().items()}
        steps = {n: self.align_steps.get(n, m) for n, m in start.items()}
        x, self.moves = self.problem.align(self.x, steps)
        for n, t in self.moves.items():
            reached = abs(t) >= 0.95 * steps[n]
            self.align_steps[n] = min(2 * steps[n], ALIGN_GROWTH * start[n]) if reached else max(steps[n] / 2, start[n])
        if x is not self.x:
            self.x, self.lin = x, self._linearize(x)

    def _linearize(self, x):
        return self.problem.linearize(x)

    def _no_progress(self) -> "str | Stop":
        """How a run ends after an iteration that changed neither the iterate (at its precision), the
        :attr:`progress_state` nor the objective: the next ones would repeat it. Stalled unless a solver knows
        better (its own convergence test at such a fixed point)."""
        return stalled(f"iteration {self.iteration + 1} changed neither the iterate nor the objective (at "
                       f"{self._precision().name} precision)")

    def _snapshot(self) -> tuple:
        """What :meth:`_no_progress` compares across an iteration (copies: a step may update in place)."""
        return (self.lin.objective, self.x.copy(), *(getattr(self, n).copy() for n in self.progress_state))

    def _unchanged(self, before: tuple) -> bool:
        now = (self.lin.objective, self.x, *(getattr(self, n) for n in self.progress_state))
        return before[0] == now[0] and all(same_point(a, b) for a, b in zip(before[1:], now[1:]))

    def _precision(self) -> np.dtype:
        """The dtype the problem evaluates in (a solver's own iterate may be wider: scipy's is float64)."""
        return np.dtype(self.problem.space.dtype)

    def _unresolved(self, decrease: float, step) -> str:
        """:func:`unresolved` for the model step ``step`` from ``self.x`` with predicted ``decrease`` (``step``
        ``None``: the solver has no model step length, only the decrease is tested)."""
        ncp = get_array_module(self.x)
        objectives = self.history["objective"]
        largest = float(np.max(np.abs(objectives[np.isfinite(objectives)]), initial=0.0))
        step_norm = np.inf if step is None else float(ncp.linalg.norm(step))
        return unresolved(float(decrease), step_norm, self.lin.objective,
                          float(ncp.linalg.norm(self.x)), self._precision(), largest)

    # ---- loop ------------------------------------------------------------------
    def record(self) -> dict:
        ncp = get_array_module(self.x)
        row = {"iteration": self.iteration, "time_s": self.elapsed, "objective": self.lin.objective}
        for k, v in self.lin.objectives.items():
            row[f"objective_{k}"] = v
        row["grad_norm"] = float(ncp.linalg.norm(self.lin.gradient))
        validation = getattr(self.lin, "validation", None) or {}
        for k, v in validation.items():
            row[f"validation_{k}"] = v
        if validation:
            row["validation_total"] = float(sum(validation.values()))
        for k, v in self.moves.items():
            row[f"align_{k}"] = v
        for k, v in self.problem.relative_errors(self.x).items():
            row[f"error_{k}"] = v
        self.history.append(row)
        return row

    def _early_stop(self, row) -> bool:
        """Feed the stopping rule one history row; ``True`` when it asks the run to end."""
        if self.stopping is None:
            return False
        return self.stopping.update(int(row["iteration"]), row.get("validation_total", np.nan), self.x)

    def _result(self, status, message) -> Result:
        """The result; with a stopping rule, at the best-validation iterate (and the message says which)."""
        x, best = self.x, None
        if self.stopping is not None and self.stopping.best_x is not None:
            x, best = self.stopping.best_x, self.stopping.best_iteration
            message = f"{message}; best validation loss {self.stopping.best:.6g} at iteration {best}, returned"
        if status in ("failed", "stalled"):
            log.warning("%s stopped: %s", self.name, message)
        return Result(x, self.history, status, message, self.problem.space.unpack(x), best)

    def solve(self, x0=None, resume_state=None) -> Result:
        """Run from ``x0``, or continue from a state saved by :meth:`state_dict`."""
        t0 = time.perf_counter()
        if resume_state is not None:
            self.load_state_dict(resume_state)
        else:
            self.setup(x0)
            self.elapsed = time.perf_counter() - t0
            self._early_stop(self.record())
        status, message = "maxiter", f"reached maxiter={self.maxiter}"
        while self.iteration < self.maxiter:
            if not np.isfinite(self.lin.objective):
                status, message = "failed", f"objective is not finite at iteration {self.iteration}"
                break
            t0 = time.perf_counter()
            before = self._snapshot()
            stop = self.step()
            if self.align and not stop:
                self._align()
            if not stop and self._unchanged(before):
                stop = self._no_progress()
            self.iteration += 1
            self.elapsed += time.perf_counter() - t0
            prev = self.history.last()["objective"]
            row = self.record()
            if self.callback is not None:
                self.callback(SolverState(self.iteration, self.x, self.history, self))
            if self._early_stop(row):
                status = "validation"
                message = f"validation loss did not improve for {self.stopping.patience} iterations"
                break
            if stop:
                status, message = (stop.status, stop.message) if isinstance(stop, Stop) else ("converged", str(stop))
                break
            if not np.isfinite(row["objective"]):
                status, message = "failed", f"objective became {row['objective']} at iteration {self.iteration}"
                break
            if row["grad_norm"] <= self.gtol:
                status, message = "converged", f"gradient norm {row['grad_norm']:.3g} <= gtol={self.gtol:g}"
                break
            if self.ftol > 0 and abs(prev - row["objective"]) <= self.ftol * max(abs(prev), 1e-300):
                status, message = "converged", f"relative objective change <= ftol={self.ftol:g}"
                break
            if self.max_time_s is not None and self.elapsed >= self.max_time_s:
                status, message = "max_time", f"reached max_time_s={self.max_time_s:g}"
                break
        return self._result(status, message)

    # ---- save / resume ---------------------------------------------------------
    def state_dict(self) -> dict:
        """Arrays (numpy) and scalars to resume this run exactly; the class by *name*, never pickled."""
        arrays = {"x": to_numpy(self.x)}
        for n in self._state_variable_names():
            val = getattr(self, n)
            if isinstance(val, list):
                arrays[n] = np.stack([to_numpy(v) for v in val]) if val else np.zeros((0, self.x.size))
            else:
                arrays[n] = to_numpy(val)
        scalars = dict(self._state_scalars(), **{f"align_step_{n}": v for n, v in self.align_steps.items()})
        if self.stopping is not None and self.stopping.best_x is not None:
            arrays["stopping_best_x"] = to_numpy(self.stopping.best_x)
            scalars = dict(scalars, **{f"stopping_{k}": v for k, v in self.stopping.state().items()})
        return {
            "solver": self.name,
            "iteration": self.iteration,
            "elapsed": self.elapsed,
            "arrays": arrays,
            "scalars": scalars,
            "history": self.history.as_arrays(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["solver"] != self.name:
            msg = f"checkpoint was written by solver {state['solver']!r}, not {self.name!r}"
            raise SolverError(msg)
        size = self.problem.space.size
        arrays = state.get("arrays", {})
        for n in ("x", *self._state_variable_names()):
            a = arrays.get(n)
            ok = a is not None and (a.ndim == 2 and a.shape[1] == size if n in self._list_states
                                    else a.shape == (size,) or n != "x")
            if not ok:
                got = "missing" if a is None else f"shape {a.shape}"
                msg = f"checkpoint of solver {self.name!r}: array {n!r} is {got} (the problem has {size} unknowns)"
                raise SolverError(msg)
        history = state.get("history", {})
        lengths = {len(np.atleast_1d(v)) for v in history.values()}
        if len(lengths) != 1 or 0 in lengths or not {"iteration", "time_s", "objective"} <= set(history):
            msg = (f"checkpoint of solver {self.name!r}: its history lacks iteration/time_s/objective or its "
                   "columns differ in length")
            raise SolverError(msg)
        try:
            self.iteration = int(state["iteration"])
            self.elapsed = float(state["elapsed"])
            self.history = History.from_arrays(state["history"])
            xp = self.problem.xp
            self.x = xp.asarray(arrays["x"])
            for n in self._state_variable_names():
                a = arrays[n]
                setattr(self, n, [xp.asarray(r) for r in a] if n in self._list_states else xp.asarray(a))
            self._load_scalars(state["scalars"])
            self.align_steps = {k.removeprefix("align_step_"): float(v) for k, v in state["scalars"].items()
                                if k.startswith("align_step_")}
            if self.stopping is not None and "stopping_best_x" in arrays:
                self.stopping.load({k.removeprefix("stopping_"): v for k, v in state["scalars"].items()
                                    if k.startswith("stopping_")}, xp.asarray(arrays["stopping_best_x"]))
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"checkpoint of solver {self.name!r} is incomplete or corrupt ({type(exc).__name__}: {exc})"
            raise SolverError(one_line(msg)) from None
        if not 0 <= self.iteration <= 10**9 or not np.isfinite(self.elapsed):
            msg = f"checkpoint of solver {self.name!r}: iteration {self.iteration} / elapsed {self.elapsed} invalid"
            raise SolverError(msg)
        self.lin = self.problem.linearize(self.x)
