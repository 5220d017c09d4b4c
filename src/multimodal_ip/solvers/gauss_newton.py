__all__ = ["GaussNewton", "solve_gauss_newton", "mmip_register_solvers"]

from typing import Any

from pylops import LinearOperator

from ..backend import get_array_module
from ..errors import SolverError
from ..hookspecs import hookimpl
from ..problem import Linearization, Objective
from .base import Solver, stalled
from .base import same_point as _same


def _cg(op, b, maxiter, rtol):
    """Conjugate gradients from zero on a symmetric operator; stops on negative curvature."""
    ncp = get_array_module(b)
    x = ncp.zeros_like(b)
    r = b.copy()
    p = r.copy()
    rr = float(ncp.vdot(r, r))
    stop = rtol**2 * rr
    for _ in range(maxiter):
        q = op.matvec(p)
        pq = float(ncp.vdot(p, q))
        if pq <= 0:  # negative curvature: keep what we have (or the gradient direction)
            return x if float(ncp.vdot(x, x)) > 0 else b
        a = rr / pq
        x += a * p
        r -= a * q
        rr_new = float(ncp.vdot(r, r))
        if rr_new <= stop:
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


class _FiniteDifferenceHessian(LinearOperator):
    """Hessian-vector products from gradient differences: ``(g(x + e v) - g(x)) / e``."""

    def __init__(self, problem: Objective, lin: Linearization, damping):
        self.problem, self.lin, self.damping = problem, lin, damping
        ncp = get_array_module(lin.point)
        self.xnorm = float(ncp.linalg.norm(lin.point))
        super().__init__(dtype=lin.point.dtype, shape=(lin.point.size, lin.point.size))

    def _matvec(self, v):
        ncp = get_array_module(v)
        vn = float(ncp.linalg.norm(v))
        if vn == 0:
            return ncp.zeros_like(v)
        eps = 1e-7 * max(1.0, self.xnorm) / vn
        g = self.problem.gradient(self.lin.point + eps * v)
        return (g - self.lin.gradient) / eps + self.damping * v

    _rmatvec = _matvec


class GaussNewton(Solver):
    r"""Truncated Gauss-Newton / Levenberg-Marquardt with inner CG, or truncated Newton.

    Each outer step solves :math:`(H + \lambda I)p = -\nabla\Phi` by at most
    ``inner_iterations`` CG steps, where :math:`H` is the Gauss-Newton matrix
    :math:`\sum_t w_t J_t^H M_t J_t` (``mode="gauss-newton"``) or the Hessian from
    gradient differences (``mode="newton"``, the paper's truncated Newton). The
    damping :math:`\lambda` follows the ratio :math:`\rho` of actual to predicted
    reduction: :math:`\rho<1/4 \Rightarrow \lambda \times 4`, :math:`\rho>3/4
    \Rightarrow \lambda / 3`; steps with :math:`\rho \le 10^{-4}` are rejected.
    :class:`~multimodal_ip.regularizers.Box` constraints are enforced by projection.

    Parameters
    ----------
    inner_iterations : :obj:`int`, optional
        CG cap per outer step (the paper uses 20).
    damping : :obj:`float`, optional
        Initial :math:`\lambda`, relative to the curvature along the gradient.
    mode : :obj:`str`, optional
        ``"gauss-newton"`` or ``"newton"``.
    """

    name = "gauss-newton"

    def __init__(self, problem: Objective, inner_iterations=20, damping=1e-3, mode="gauss-newton", inner_rtol=1e-2,
                 max_rejections=8, **kw):
        super().__init__(problem, **kw)
        if mode not in ("gauss-newton", "newton"):
            msg = f"gauss-newton mode must be 'gauss-newton' or 'newton'; got {mode!r}"
            raise SolverError(msg)
        for r in problem.regularizers:
            if not (r.is_smooth or r.is_constraint):
                msg = f"solver 'gauss-newton' needs smooth regularizers; {r!r} is not (use the 'admm' solver)"
                raise SolverError(msg)
        self.inner_iterations = int(inner_iterations)
        self.inner_rtol = float(inner_rtol)
        self.mode = mode
        self.max_rejections = int(max_rejections)
        self.damping0 = float(damping)
        self.lam: float | None = None

    def _state_scalars(self):
        return {"lam": self.lam}

    def _load_scalars(self, scalars):
        self.lam = scalars["lam"]

    def _project(self, x):
        constraints: list[Any] = [r for r in self.problem.regularizers if r.is_constraint]  # Box and the like
        if not constraints:
            return x
        x = x.copy()
        for r in constraints:
            for n in r.variables:
                sl = self.problem.space.slice(n)
                x[sl] = r.project(x[sl], 1.0)
        return x

    def _hessian(self, lam):
        if self.mode == "newton":
            return _FiniteDifferenceHessian(self.problem, self.lin, lam)
        return self.lin.gauss_newton(lam)

    def setup(self, x0):
        self.x = self._project(x0)
        self.lin = self.problem.linearize(self.x)

    def step(self):
        ncp = get_array_module(self.x)
        g = self.lin.gradient
        gg = float(ncp.vdot(g, g))
        if gg == 0:
            return "zero gradient"
        if self.lam is None:  # scale the damping to the curvature along g
            self.lam = self.damping0 * float(ncp.vdot(g, self._hessian(0.0).matvec(g))) / gg
        for attempt in range(self.max_rejections):
            h = self._hessian(self.lam)
            p = _cg(h, -g, self.inner_iterations, self.inner_rtol)
            x_new = self._project(self.x + p).astype(self.x.dtype, copy=False)  # the iterate keeps its precision
            p = x_new - self.x
            pred = -(float(ncp.vdot(g, p)) + 0.5 * float(ncp.vdot(p, self._hessian(0.0).matvec(p))))
            if attempt == 0:
                # the least damped step decides convergence at round-off: more damping only shrinks the step and
                # its predicted decrease, and would pass a wrong gradient's model off as converged
                why = self._unresolved(pred, p)
            if _same(x_new, self.x):  # more damping cannot change the iterate either
                return why or stalled(f"the damped step no longer changes the iterate (at {self._precision().name} "
                                      f"precision) after {attempt} damping increase(s)")
            lin_new = self.problem.linearize(x_new)
            actual = self.lin.objective - lin_new.objective
            rho = actual / pred if pred > 0 else -1.0
            if rho < 0.25:
                self.lam *= 4.0
            elif rho > 0.75:
                self.lam /= 3.0
            if rho > 1e-4:
                self.x, self.lin = x_new, lin_new
                return None
            if why:  # rejected, and what it promised is below round-off: converged, not worth more damping
                return why
        return stalled(f"no acceptable step after {self.max_rejections} damping increases")


def solve_gauss_newton(problem: Objective, x0, resume_state=None, **options):
    """Damped Gauss-Newton (or Newton) with CG inner solves (:class:`GaussNewton`).

    Parameters
    ----------
    problem : :class:`~multimodal_ip.problem.objective.Objective`
        What is minimised.
    x0 : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Start point (packed); ``None`` for the problem's start.
    resume_state : :obj:`dict`, optional
        State saved by a checkpoint, to continue a run.
    **options
        Options of :class:`GaussNewton`
        and of :class:`~multimodal_ip.solvers.Solver` (``maxiter``, ``gtol``, ``callback``, ``stopping``, ...).

    Returns
    -------
    result : :class:`~multimodal_ip.solvers.Result`
        The returned iterate, status and history.

    Raises
    ------
    SolverError
        A regularizer is neither smooth nor a constraint, or ``mode`` is unknown.
    """
    return GaussNewton(problem, **options).solve(x0, resume_state=resume_state)


@hookimpl
def mmip_register_solvers(register):
    """Register the ``gauss-newton`` solver (hook ``mmip_register_solvers``).

    Parameters
    ----------
    register : :obj:`callable`
        ``register(name, solve)``: adds a solve function, its options declared with
        :func:`~multimodal_ip.solvers.declare_options`.
    """
    from . import declare_options

    register("gauss-newton", declare_options(solve_gauss_newton, GaussNewton))
