__all__ = ["LBFGS", "solve_lbfgs", "mmip_register_solvers"]

import warnings
from typing import TYPE_CHECKING

import numpy as np

from ..backend import get_array_module
from ..errors import SolverError
from ..hookspecs import hookimpl
from ..problem import Objective
from ..problem.curvature import DEFAULT_FLOOR
from ._inplace import blocks, same_blocks, writable, write_step
from ._rows import in_rows
from .base import Handover, Result, Solver, stalled
from .precondition import check_precondition, resolve_precondition

if TYPE_CHECKING:
    from ..problem import Linearization


class _Cache:
    """Remembers the last linearization so value and gradient at one point cost one evaluation."""

    def __init__(self, problem: Objective):
        self.problem: Objective = problem
        self.lin: Linearization | None = None

    def __call__(self, x) -> "Linearization":
        # scipy's trial points may come back in float64: compared in the precision the problem evaluates them in
        x = self.problem.at_precision(x)
        if self.lin is None or self.lin.point is not x and not same_blocks(self.lin.point, x):
            self.lin = self.problem.linearize(x.copy())
        return self.lin


def _check_smooth(problem: Objective, name, allow_constraints=False):
    for r in problem.regularizers:
        if r.is_constraint and allow_constraints:
            continue
        if not r.is_smooth:
            hint = "use method='scipy' (bounds) or the 'admm' solver" if r.is_constraint else "use the 'admm' solver"
            msg = f"solver {name!r} needs smooth regularizers; {r!r} is not ({hint})"
            raise SolverError(msg)


#: unknown-sized vectors a step holds besides its correction pairs: the iterate, its gradient, the direction, the
#: trial point and the trial's gradient (tests/solvers/test_lbfgs_memory.py counts them)
WORK_VECTORS = 5
#: share of the memory budget (``MMIP_MAX_MEMORY``, else 80 % of the available memory) the L-BFGS history may take
HISTORY_BUDGET_FRACTION = 0.5


def fit_memory(memory: int, vector_bytes: int, budget: int | None = None) -> int:
    """The number of L-BFGS correction pairs to keep: ``memory``, or fewer when ``2 x memory`` vectors of
    ``vector_bytes`` would take more than :data:`HISTORY_BUDGET_FRACTION` of the memory budget (then with a warning
    naming both numbers; at least 1)."""
    from ..safety import memory_budget_bytes

    budget = memory_budget_bytes() if budget is None else int(budget)
    room = int(HISTORY_BUDGET_FRACTION * budget // max(2 * int(vector_bytes), 1))
    if memory <= room:
        return memory
    fitted = max(1, room)
    need = 2 * memory * vector_bytes / 2**30
    warnings.warn(f"L-BFGS keeps {fitted} correction pair(s) instead of {memory}: {memory} pairs of "
                  f"{vector_bytes / 2**30:.2f} GiB vectors would take {need:.1f} GiB, more than half the memory "
                  f"budget ({budget / 2**30:.1f} GiB; MMIP_MAX_MEMORY)", stacklevel=3)
    return fitted


def two_loop(g, s_list, y_list, h0=None, out=None):
    r"""The L-BFGS direction :math:`-H g` from the correction pairs (two-loop recursion); without pairs, the unit
    steepest-descent direction. ``h0``: a preconditioner :math:`D^{-1}` (a function of a packed vector); the initial
    inverse Hessian is then :math:`\gamma D^{-1}`, :math:`\gamma = s^T y / y^T D^{-1} y` of the newest pair
    (without pairs :math:`D^{-1}` itself: a Gauss-Newton step of the block-diagonal model). ``out``: a buffer of
    ``g``'s shape and dtype the direction is computed in (else a new one); without ``h0`` nothing else of ``g``'s
    size is allocated (the updates go a block at a time, with the rounding of whole-vector ones)."""
    ncp = get_array_module(g)
    q = g.copy() if out is None else out
    if out is not None:
        ncp.copyto(q, g)
    alphas = []
    for s, y in zip(reversed(s_list), reversed(y_list)):
        rho = 1.0 / float(ncp.vdot(y, s))
        a = rho * float(ncp.vdot(s, q))
        for k in blocks(q.size):
            q[k] -= a * y[k]
        alphas.append((a, rho))
    if h0 is not None:
        q = h0(q)
        if s_list:
            s, y = s_list[-1], y_list[-1]
            yhy = float(ncp.vdot(y, h0(y)))
            if yhy > 0:
                q *= float(ncp.vdot(s, y)) / yhy
    elif s_list:
        s, y = s_list[-1], y_list[-1]
        q *= float(ncp.vdot(s, y)) / float(ncp.vdot(y, y))
    else:
        q *= 1.0 / max(float(ncp.linalg.norm(g)), 1e-300)
    for (s, y), (a, rho) in zip(zip(s_list, y_list), reversed(alphas)):
        b = rho * float(ncp.vdot(y, q))
        for k in blocks(q.size):
            q[k] += (a - b) * s[k]
    return ncp.negative(q, out=q)


class LBFGS(Solver):
    r"""Backend-agnostic L-BFGS: two-loop recursion and a strong-Wolfe line search.

    Runs on numpy and cupy arrays alike (only scalars cross to the host). Its
    state (iterate and memory pairs) is saved in checkpoints, so a resumed run
    continues exactly. A step holds its pairs and ``WORK_VECTORS`` unknown-sized vectors: the recursion runs in
    a direction buffer, trial points are written into one buffer, and a new pair is formed in the spent direction's
    and the old gradient's buffers (docs/performance.md, "Lean L-BFGS").

    Parameters
    ----------
    memory : :obj:`int`, optional
        Number of stored correction pairs (fewer, with a warning, when they would take more than half the memory
        budget: :func:`fit_memory`).
    c1, c2 : :obj:`float`, optional
        Wolfe constants.
    precondition : :obj:`str`, optional
        ``"none"``: the initial inverse Hessian is the scaled identity; ``"curvature"``: the inverse of the data
        terms' block-diagonal curvature (:meth:`~multimodal_ip.problem.Linearization.curvature`, recomputed at every
        iterate; every variable that moves needs one, else :class:`~multimodal_ip.errors.SolverError`); ``"auto"``:
        ``"curvature"`` when every variable that moves has one, else ``"none"``.
    curvature_floor : :obj:`float`, optional
        Added to each variable's curvature before it is inverted, as a fraction of its largest entry
        (:meth:`~multimodal_ip.problem.Curvature.solve`).
    release_last : :obj:`bool`, optional
        The last step (``maxiter``) lets its correction pairs go once its direction is made: no later direction
        uses them, so its line search holds two vectors per pair fewer (the iterates are the same), but its final
        state cannot be continued exactly (a state saved after an earlier iteration can). ``mmip``'s run commands
        set it: they save checkpoints before the last iteration only.
    """

    name = "lbfgs"
    _list_states = ("s_list", "y_list")

    def __init__(self, problem: Objective, memory=10, c1=1e-4, c2=0.9, precondition="none",
                 curvature_floor=DEFAULT_FLOOR, release_last=False, **kw):
        super().__init__(problem, **kw)
        self.release_last = bool(release_last)
        _check_smooth(problem, self.name)
        self.memory, self.c1, self.c2 = int(memory), float(c1), float(c2)
        self.precondition = check_precondition(self.name, precondition)
        self.curvature_floor = float(curvature_floor)
        self.s_list: list = []
        self.y_list: list = []
        self._trial_x = None  # the trial point's buffer (``x + alpha p``), reused along a line
        self._trial_lin: Linearization | None = None  # the linearization at the point in that buffer
        self._spare: list = []  # the buffers of a correction pair that left the memory, for the next step

    def _state_variable_names(self):
        return ("s_list", "y_list")

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.memory = fit_memory(self.memory, self.x.nbytes)  # as the interrupted run fitted it
        self.precondition = resolve_precondition(self.name, self.precondition, self.lin)

    def setup(self, x0):
        self.x = x0
        self.memory = fit_memory(self.memory, x0.nbytes)
        self.lin = self.problem.linearize(x0)
        self.precondition = resolve_precondition(self.name, self.precondition, self.lin)

    def _snapshot(self) -> tuple:
        # the iterate without a copy: a step replaces it and never writes into its buffer
        return (self.lin.objective, self.x)

    def _buffer(self, like):
        """A buffer of ``like``'s shape and dtype: a spare one (a pair that left the memory) or a new one."""
        for i, b in enumerate(self._spare):
            if b.shape == like.shape and b.dtype == like.dtype:
                return self._spare.pop(i)
        return get_array_module(like).empty_like(like)

    def _direction(self, g, out=None):
        curv = self.lin.curvature() if self.precondition == "curvature" else None
        out = self._buffer(g) if out is None else out
        if curv is not None:
            floor = self.curvature_floor
            return two_loop(g, self.s_list, self.y_list, lambda q: curv.solve(q, floor), out=out)
        return two_loop(g, self.s_list, self.y_list, out=out)

    def _at(self, alpha, p) -> "Linearization":
        """The linearization at ``x + alpha p``, written into the trial buffer; evaluated unless the buffer held
        that point already. The previous trial's linearization goes first: one trial point and gradient at a time."""
        self._write(alpha, p)
        return self._at_trial()

    def _write(self, alpha, p) -> None:
        if self._trial_x is None:
            self._trial_x = self._buffer(self.x)
        if write_step(self._trial_x, self.x, alpha, p):
            self._trial_lin = None

    def _line_search(self, p, g):
        """The strong-Wolfe step along ``p`` (scipy's ``line_search``, its scalar search on this solver's trial
        buffer: no point or gradient of a trial outlives the next), ``None`` when it fails."""
        from scipy.optimize._linesearch import LineSearchWarning, scalar_search_wolfe2

        ncp = get_array_module(p)

        def phi(alpha):
            return self._at(alpha, p).objective

        def derphi(alpha):
            return ncp.dot(self._at(alpha, p).gradient, p)

        with warnings.catch_warnings():  # a failed search is handled below, not warned about
            warnings.simplefilter("ignore", LineSearchWarning)
            alpha, *_ = scalar_search_wolfe2(phi, derphi, self.lin.objective, None, ncp.dot(g, p), self.c1, self.c2,
                                             None, None, maxiter=20)
        return alpha

    def step(self):
        ncp = get_array_module(self.x)
        g = self.lin.gradient
        p = self._direction(g)
        if float(ncp.vdot(p, g)) >= 0:  # not a descent direction: reset memory
            self.s_list, self.y_list = [], []
            p = self._direction(g, out=p)
        steepest = not self.s_list  # p: the unit steepest-descent direction
        if self.release_last and self.iteration + 1 >= self.maxiter:  # the last step: no direction follows that
            self.s_list, self.y_list = [], []  # would use the pairs; its search runs without them (same iterates)
        p = self._finite_reach(p)
        x_new = self._trial(self._line_search(p, g), p)
        if x_new is None or not self._at_trial().objective < self.lin.objective:  # no step, one too short to
            x_new = self._trial(self._backtrack(p, g), p)  # change the iterate, or one that left the objective
        decrease, step = -float(ncp.vdot(p, g)), p  # as it was (round-off)
        if x_new is None and steepest:
            # p is the unit steepest-descent direction, maybe far longer than a small gradient warrants: its model
            # step needs the curvature, and is tried before giving up
            decrease, step = self._steepest_model(p, g, decrease)
            if step is not None:
                x_new = self._trial(self._backtrack(step, g), step)
        if x_new is None:
            # no step along p that decreases the objective and changes the iterate (at its precision): converged
            # when the model step is below round-off, else stalled; the memory is cleared either way
            self.s_list, self.y_list = [], []
            why = self._unresolved(decrease, step)
            if why:
                return why  # a convergence test, not a stall
            return stalled("line search found no step that decreases the objective and moves the iterate "
                           f"(at {self._precision().name} precision)")
        lin_new = self._at_trial()
        self._trial_x = self._trial_lin = None  # the trial is the new iterate
        # the pair in place: s in the spent direction's buffer, y in the old gradient's (the caller's by the
        # Objective contract; its linearization goes with this step)
        s = ncp.subtract(x_new, self.x, out=writable(p, x_new, self.x))
        y = ncp.subtract(lin_new.gradient, g, out=writable(g, lin_new.gradient, g))
        del p, step
        if float(ncp.vdot(s, y)) > 1e-12 * float(ncp.vdot(y, y)):
            self.s_list.append(s)
            self.y_list.append(y)
            if len(self.s_list) > self.memory:  # its buffers serve the next direction and trial point
                self._spare = [b for b in (self.s_list.pop(0), self.y_list.pop(0))
                               if b.base is None and not in_rows(b)]  # not a kept state_dict's
        self.x, self.lin = x_new, lin_new
        return None

    def _at_trial(self) -> "Linearization":
        """The linearization at the point in the trial buffer (evaluated once)."""
        self._trial_lin = self._trial_lin or self.problem.linearize(self._trial_x)
        return self._trial_lin

    def _steepest_model(self, p, g, slope) -> tuple:
        """``(first-order decrease, step)`` of the quadratic model along the unit direction ``p``, its curvature
        from one gradient difference over a step of sqrt(eps) of the iterate; ``(slope, None)`` (no step length)
        when that curvature is not positive, as along a wrong gradient. The step is ``p`` scaled in place."""
        ncp = get_array_module(p)
        h = float(np.sqrt(np.finfo(self._precision()).eps)) * max(float(ncp.linalg.norm(self.x)), 1.0)
        curvature = float(ncp.vdot(p, self._at(h, p).gradient - g)) / h
        if not (np.isfinite(curvature) and curvature > 0 and slope > 0):
            return slope, None
        p *= slope / curvature
        return slope**2 / curvature, p

    def _trial(self, alpha, p):
        """``x + alpha p`` in the iterate's precision (in the trial buffer); ``None`` without a step or when it
        leaves ``x`` unchanged."""
        if alpha is None or not np.isfinite(alpha):
            return None
        self._write(alpha, p)
        return None if same_blocks(self._trial_x, self.x) else self._trial_x

    def _finite_reach(self, p):
        """``p`` halved (in place) until the objective at ``x + p`` is finite (a model such as exp(-mu) may
        overflow far from the iterate): the Wolfe search starts at step 1 and cannot interpolate through inf or
        nan."""
        for _ in range(60):
            if np.isfinite(self._at(1.0, p).objective):
                break
            p *= 0.5
        return p

    def _backtrack(self, p, g):
        """Armijo backtracking from step 1 (halving, 40 tries) where the Wolfe search failed or left a non-finite
        point or one that did not lower the objective; ``None`` when no step that changes the iterate (at its
        precision) decreases the objective enough."""
        slope = float(get_array_module(p).vdot(p, g))
        if slope >= 0:  # not a descent direction: no step can satisfy the Armijo condition
            return None
        alpha = 1.0
        for _ in range(40):
            if self._trial(alpha, p) is None:  # shorter steps no longer change the iterate at its precision
                return None
            value = self._at_trial().objective
            # strictly lower: where c1 alpha slope is below the objective's ulp, Armijo alone accepts no decrease
            if np.isfinite(value) and value <= self.lin.objective + self.c1 * alpha * slope \
                    and value < self.lin.objective:
                return alpha
            alpha *= 0.5
        return None


def solve_lbfgs(problem: Objective, x0, method="auto", resume_state=None, **options) -> Result:
    """L-BFGS. ``method``: ``native`` (backend-agnostic, exact resume), ``scipy`` (L-BFGS-B with bounds),
    or ``auto`` (scipy when the problem has bounds or box constraints on numpy, else native).

    Parameters
    ----------
    problem : :class:`~multimodal_ip.problem.objective.Objective`
        What is minimised.
    x0 : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Start point (packed), or a :class:`~multimodal_ip.solvers.Handover` of one (the solver's first
        iterate, held by no caller); ``None`` for the problem's start.
    method : :obj:`str`, optional
        ``"auto"``, ``"native"`` (:class:`LBFGS`) or ``"scipy"`` (:class:`ScipyLBFGSB`).
    resume_state : :obj:`dict`, optional
        State saved by a checkpoint, to continue a run.
    **options
        Options of :class:`LBFGS` or :class:`ScipyLBFGSB`
        and of :class:`~multimodal_ip.solvers.Solver` (``maxiter``, ``gtol``, ``callback``, ``stopping``, ...).

    Returns
    -------
    result : :class:`~multimodal_ip.solvers.Result`
        The returned iterate, status and history.

    Raises
    ------
    SolverError
        ``method`` is unknown, or a regularizer is not smooth.
    """
    if method not in ("auto", "native", "scipy"):
        msg = f"lbfgs method must be 'auto', 'native' or 'scipy'; got {method!r}"
        raise SolverError(msg)
    if method == "auto":
        constrained = problem.space.bounds() is not None or any(r.is_constraint for r in problem.regularizers)
        start = x0.array if isinstance(x0, Handover) else x0  # looked at, not taken
        xp = problem.xp if start is None else get_array_module(start)
        del start
        method = "scipy" if constrained and xp is np else "native"
    if method == "scipy":  # L-BFGS-B keeps its own initial Hessian
        if options.get("precondition", "none") not in ("none", "auto"):
            msg = ("lbfgs precondition=curvature needs the native method (L-BFGS-B, taken for bounds and box "
                   "constraints, has its own initial Hessian)")
            raise SolverError(msg)
        options.pop("precondition", None)
        options.pop("curvature_floor", None)
        options.pop("release_last", None)  # L-BFGS-B keeps its own history
    from .scipy_lbfgsb import ScipyLBFGSB

    cls = ScipyLBFGSB if method == "scipy" else LBFGS
    return cls(problem, **options).solve(x0, resume_state=resume_state)


solve_lbfgs.takes_handover = True  # type: ignore[attr-defined]


@hookimpl
def mmip_register_solvers(register):
    """Register the ``lbfgs`` solver (hook ``mmip_register_solvers``).

    Parameters
    ----------
    register : :obj:`callable`
        ``register(name, solve)``: adds a solve function, its options declared with
        :func:`~multimodal_ip.solvers.declare_options`.
    """
    from . import declare_options
    from .scipy_lbfgsb import ScipyLBFGSB

    register("lbfgs", declare_options(solve_lbfgs, ScipyLBFGSB, LBFGS, method="auto"))
