__all__ = ["Solver", "Result", "History", "SolverState", "Stop", "STATUSES", "stalled", "machine_epsilon",
           "unresolved", "ROUNDOFF_ULPS", "STEP_ULPS", "same_point", "Handover", "take_start"]

import logging
import time

import numpy as np

from ..backend import get_array_module, to_numpy
from ..errors import SolverError, one_line
from ..problem import Objective
from ._rows import Rows
from .history import History
from .result import Result, SolverState
from .status import (
    ROUNDOFF_ULPS,
    STATUSES,
    STEP_ULPS,
    Stop,
    machine_epsilon,
    same_point,
    stalled,
    unresolved,
)

log = logging.getLogger("multimodal_ip.solvers")


class Handover:
    """A start point handed over to a solver, not lent: the solver takes the array as its first iterate
    (``take_start``) and this box lets go of it, so that no caller's frame keeps it through the run (one
    unknown-sized vector fewer from the first step on: docs/performance.md, "Memory budget of a run"). The callers
    between (:func:`~multimodal_ip.solvers.solve_staged`, a solve function) pass the box on; a solve function
    that takes one says so with the attribute ``takes_handover = True`` (else it is given the array).

    Parameters
    ----------
    x : array
        The packed start point; nothing else should keep it once it is handed over.
    """

    __slots__ = ("_x",)

    def __init__(self, x):
        self._x = x

    @property
    def array(self):
        """The start point while it is not taken (``None`` after), without taking it."""
        return self._x

    def take(self):
        """The start point, which this box no longer holds.

        Returns
        -------
        x : array
            The array handed over (``None`` when it was taken already).
        """
        x, self._x = self._x, None
        return x


def take_start(x0):
    """The start point of a solve: the array of a :class:`~multimodal_ip.solvers.Handover` (taken from it), else
    ``x0`` itself.

    Parameters
    ----------
    x0 : array, :class:`~multimodal_ip.solvers.Handover` or ``None``
        The start point as a solve function was given it.

    Returns
    -------
    x : array or ``None``
        The array.
    """
    return x0.take() if isinstance(x0, Handover) else x0


class Solver:
    r"""Base class: owns the loop, timer, stopping rules, history, NaN checks and checkpoints.

    A subclass implements :meth:`setup` (state at ``x0``) and :meth:`step` (one
    iteration; updates ``self.x`` and ``self.lin``), and lists its extra array
    state in :meth:`_state_variable_names` so that a run can be saved and resumed.

    Parameters
    ----------
    problem : :class:`~multimodal_ip.problem.objective.Objective`
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
        if stopping is not None and getattr(stopping, "needs_holdout", True) and not problem.has_holdout:
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
        """Run from ``x0`` (an array, or a :class:`~multimodal_ip.solvers.Handover`: its array becomes the first
        iterate), or continue from a state saved by :meth:`state_dict`."""
        t0 = time.perf_counter()
        if resume_state is not None:
            self.load_state_dict(resume_state)
        else:
            self.setup(take_start(x0))  # a hand-over: the first iterate is the start point, held by no caller
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
                status, message = self.stopping.reason()
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
                arrays[n] = Rows(val, self.x.size)  # written row by row: no stacked copy of the history
            else:
                arrays[n] = to_numpy(val)
        scalars = dict(self._state_scalars(), **{f"align_step_{n}": v for n, v in self.align_steps.items()},
                       packing=list(getattr(self.problem.space, "packing", ())))  # resumed by variable name
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
        arrays = state.get("arrays", {})
        self._check_state_arrays(arrays)
        self._check_state_history(state.get("history", {}))
        try:
            self._restore_state(state, arrays)
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"checkpoint of solver {self.name!r} is incomplete or corrupt ({type(exc).__name__}: {exc})"
            raise SolverError(one_line(msg)) from None
        if not 0 <= self.iteration <= 10**9 or not np.isfinite(self.elapsed):
            msg = f"checkpoint of solver {self.name!r}: iteration {self.iteration} / elapsed {self.elapsed} invalid"
            raise SolverError(msg)
        self.lin = self.problem.linearize(self.x)

    def _check_state_arrays(self, arrays) -> None:
        """Refuse a checkpoint whose ``x`` or state arrays are missing or do not fit the problem's unknowns."""
        size = self.problem.space.size
        for n in ("x", *self._state_variable_names()):
            a = arrays.get(n)
            ok = a is not None and (a.ndim == 2 and a.shape[1] == size if n in self._list_states
                                    else a.shape == (size,) or n != "x")
            if not ok:
                got = "missing" if a is None else f"shape {a.shape}"
                msg = f"checkpoint of solver {self.name!r}: array {n!r} is {got} (the problem has {size} unknowns)"
                raise SolverError(msg)

    def _check_state_history(self, history) -> None:
        """Refuse a checkpoint whose history lacks its main columns or has columns of different lengths."""
        lengths = {len(np.atleast_1d(v)) for v in history.values()}
        if len(lengths) != 1 or 0 in lengths or not {"iteration", "time_s", "objective"} <= set(history):
            msg = (f"checkpoint of solver {self.name!r}: its history lacks iteration/time_s/objective or its "
                   "columns differ in length")
            raise SolverError(msg)

    def _restore_state(self, state, arrays) -> None:
        """Set the counters, history, iterate and state arrays (on the problem's array module) of a checkpoint."""
        self.iteration = int(state["iteration"])
        self.elapsed = float(state["elapsed"])
        self.history = History.from_arrays(state["history"])
        xp = self.problem.xp
        self.x = xp.asarray(arrays["x"])
        for n in self._state_variable_names():
            a = arrays[n]
            if n in self._list_states:  # a state_dict's Rows in memory: copies (the solver writes into its pairs)
                setattr(self, n, [xp.array(r) if isinstance(a, Rows) else xp.asarray(r) for r in a])
            else:
                setattr(self, n, xp.asarray(a))
        self._load_scalars(state["scalars"])
        self.align_steps = {k.removeprefix("align_step_"): float(v) for k, v in state["scalars"].items()
                            if k.startswith("align_step_")}
        if self.stopping is not None and "stopping_best_x" in arrays:
            self.stopping.load({k.removeprefix("stopping_"): v for k, v in state["scalars"].items()
                                if k.startswith("stopping_")}, xp.asarray(arrays["stopping_best_x"]))
