__all__ = ["ScipyLBFGSB"]

from typing import Any

import numpy as np

from ..backend import get_array_module, to_numpy
from ..errors import SolverError
from ..problem import Objective
from .base import Result, Solver, take_start
from .base import same_point as _same
from .lbfgs import _Cache, _check_smooth, fit_memory, two_loop


class ScipyLBFGSB(Solver):
    """scipy's L-BFGS-B (numpy only), with bounds from the variable space and :class:`Box` regularizers.

    scipy owns its loop, so :meth:`solve` drives it and records history from its
    callback; a resumed run restarts the L-BFGS memory from the saved iterate.

    Parameters
    ----------
    problem : :class:`~multimodal_ip.problem.objective.Objective`
        What is minimised (numpy arrays).
    memory : :obj:`int`, optional
        Number of stored correction pairs (scipy's ``maxcor``).
    **kw
        Options of :class:`~multimodal_ip.solvers.Solver` (``maxiter``, ``gtol``, ``ftol``, ``callback``, ...).

    Raises
    ------
    SolverError
        A regularizer is neither smooth nor a constraint.
    """

    name = "lbfgs-b"
    cannot_align = ("scipy owns its loop, so the iterate cannot be moved between iterations (bounds select it; "
                    "method='native' without bounds can)")

    def __init__(self, problem: Objective, memory=10, **kw):
        super().__init__(problem, **kw)
        _check_smooth(problem, self.name, allow_constraints=True)
        self.memory = int(memory)
        self.cache = _Cache(problem)
        self.pair: tuple | None = None

    def _bounds(self):
        space = self.problem.space
        b = space.bounds()
        lo, hi = b if b is not None else (np.full(space.size, -np.inf), np.full(space.size, np.inf))
        constraints: list[Any] = [r for r in self.problem.regularizers if r.is_constraint]  # Box and the like
        for r in constraints:
            for n in r.variables:
                sl = space.slice(n)
                lo[sl] = np.maximum(lo[sl], np.ravel(r.lower))  # a number, or one bound per entry
                hi[sl] = np.minimum(hi[sl], np.ravel(r.upper))
        if np.all(np.isinf(lo)) and np.all(np.isinf(hi)):
            return None
        import scipy.optimize  # here, not at the top: ``mmip plugins`` loads this module (docs/architecture.md)

        return scipy.optimize.Bounds(lo, hi)

    def solve(self, x0=None, resume_state=None) -> Result:
        import time

        self._start(x0, resume_state)
        remaining = self.maxiter - self.iteration
        if remaining <= 0:
            return self._result("maxiter", "nothing to do")
        t_start = [time.perf_counter()]
        early, idle = [], []
        bounds = self._bounds()

        def fun(x):
            lin = self.cache(x)
            return lin.objective, to_numpy(lin.gradient)

        def callback(intermediate_result):
            self.elapsed += time.perf_counter() - t_start[0]
            self.iteration += 1
            before = self.lin
            self.x = intermediate_result.x.copy()
            self.lin = self.cache(self.x)
            self._remember(before, self.lin)
            row = self.record()
            if self.callback is not None:
                from .base import SolverState

                self.callback(SolverState(self.iteration, self.x, self.history, self))
            t_start[0] = time.perf_counter()
            if self._early_stop(row):
                early.append(self.iteration)
                raise StopIteration
            if self.max_time_s is not None and self.elapsed >= self.max_time_s:
                raise StopIteration
            if _same(self.lin.point, before.point) and self.lin.objective == before.objective:
                idle.append(self.iteration)  # the iterate (at the problem's precision) and the objective stayed
                raise StopIteration
            return row

        import scipy.optimize

        res = scipy.optimize.minimize(
            fun, self.x, jac=True, method="L-BFGS-B", bounds=bounds, callback=callback,
            options={"maxiter": remaining, "maxcor": self.memory, "gtol": self.gtol,
                     "ftol": self.ftol if self.ftol > 0 else 1e3 * np.finfo(float).eps, "maxfun": 20 * remaining},
        )
        return self._result(*self._outcome(res, bool(early), bool(idle), bounds))

    def _start(self, x0, resume_state) -> None:
        """Set the start iterate: from ``resume_state``, else ``x0`` (numpy only), recorded as iteration 0."""
        import time

        if resume_state is not None:
            self.load_state_dict(resume_state)
            return
        x0 = take_start(x0)  # a Handover's array (solve_lbfgs passes one on)
        if get_array_module(x0) is not np:
            msg = "lbfgs-b runs on numpy arrays only; use method='native' for cupy"
            raise SolverError(msg)
        self.x = np.asarray(x0, dtype=np.float64)
        self.memory = fit_memory(self.memory, self.x.nbytes)
        t0 = time.perf_counter()
        self.lin = self.cache(self.x)
        self.elapsed = time.perf_counter() - t0
        self._early_stop(self.record())

    def _outcome(self, res, early: bool, idle: bool, bounds) -> tuple[str, str]:
        """``(status, message)`` of a finished scipy run ``res``; ``early``: stopped by the validation loss,
        ``idle``: stopped on an iteration that changed neither the iterate nor the objective."""
        message = str(res.message)
        objectives = self.history["objective"]
        # scipy's relative-reduction test passes on an iteration that left the objective as it was: no progress
        same_f = res.success and "GRADIENT" not in message.upper() and len(objectives) > 1 \
            and objectives[-1] == objectives[-2]
        budget = self.iteration >= self.maxiter or res.status == 1  # 1: iteration or evaluation budget
        timed = self.max_time_s is not None and self.elapsed >= self.max_time_s
        if early:
            status, message = self.stopping.reason()
        elif not np.isfinite(self.lin.objective):
            status = "failed"
        elif res.success and not same_f:
            status = "converged"
        elif idle or same_f or not (budget or timed):  # no progress, or ABNORMAL_TERMINATION_IN_LNSRCH and the like
            why = self._unresolved(*self._model_step(bounds))
            what = (f"iteration {self.iteration} changed neither the iterate nor the objective (at "
                    f"{self._precision().name} precision)" if idle or same_f
                    else f"line search found no acceptable step (scipy: {message.strip().rstrip(':')})")
            status, message = ("converged", f"{what}: {why}") if why else ("stalled", what)
        elif budget:
            status = "maxiter"
        else:
            status = "max_time"
        return status, message

    def _remember(self, before, after) -> None:
        """Keep the last correction pair (at the problem's precision): enough for a model step at the end."""
        s, y = after.point - before.point, after.gradient - before.gradient
        if float(np.vdot(s, y)) > 1e-12 * float(np.vdot(y, y)):
            self.pair = (s, y)

    def _model_step(self, bounds) -> tuple:
        """``(predicted first-order decrease, step or None)`` of an L-BFGS step from the last pair, on the gradient
        projected onto the bounds (zero where a bound blocks descent)."""
        g = np.array(to_numpy(self.lin.gradient))
        if bounds is not None:
            x = np.asarray(to_numpy(self.lin.point), dtype=float)
            g[((x <= bounds.lb) & (g > 0)) | ((x >= bounds.ub) & (g < 0))] = 0
        pair = self.pair
        p = two_loop(g, [pair[0]] if pair else [], [pair[1]] if pair else [])
        return -float(np.vdot(p, g)), (p if pair else None)
