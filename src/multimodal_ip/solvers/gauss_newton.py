__all__ = ["GaussNewton", "solve_gauss_newton", "mmip_register_solvers"]

from typing import Any

from ..backend import get_array_module
from ..errors import SolverError
from ..hookspecs import hookimpl
from ..problem import Objective
from ..problem.curvature import DEFAULT_FLOOR
from .base import Solver, stalled
from .base import same_point as _same
from .precondition import check_precondition, resolve_precondition


def _cg(op, b, maxiter, rtol, precond=None):
    """Conjugate gradients from zero on a symmetric operator; stops on negative curvature (returning what it has, or
    the (preconditioned) gradient direction). ``precond``: a symmetric positive definite :math:`M^{-1}` (a function
    of a vector): preconditioned CG, stopped on the residual norm all the same."""
    ncp = get_array_module(b)
    x = ncp.zeros_like(b)
    r = b.copy()
    z = r if precond is None else precond(r)
    p = z.copy()
    rz = float(ncp.vdot(r, z))
    stop = rtol**2 * (rz if precond is None else float(ncp.vdot(r, r)))
    for _ in range(maxiter):
        q = op.matvec(p)
        pq = float(ncp.vdot(p, q))
        if pq <= 0:  # negative curvature: keep what we have (or the gradient direction)
            return x if float(ncp.vdot(x, x)) > 0 else z
        a = rz / pq
        x += a * p
        r -= a * q
        rr = float(ncp.vdot(r, r))
        if rr <= stop:
            break
        z = r if precond is None else precond(r)
        rz_new = rr if precond is None else float(ncp.vdot(r, z))
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x


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
    precondition : :obj:`str`, optional
        ``"curvature"``: CG preconditioned by :math:`(D + \delta + \lambda I)^{-1}`, :math:`D` the data terms'
        block-diagonal curvature (:meth:`~multimodal_ip.problem.Linearization.curvature`); ``"auto"``: so when
        every variable that moves has one; ``"none"`` (default): plain CG.
    curvature_floor : :obj:`float`, optional
        :math:`\delta`, a fraction of each variable's largest curvature
        (:meth:`~multimodal_ip.problem.Curvature.solve`).
    """

    name = "gauss-newton"

    def __init__(self, problem: Objective, inner_iterations=20, damping=1e-3, mode="gauss-newton", inner_rtol=1e-2,
                 max_rejections=8, precondition="none", curvature_floor=DEFAULT_FLOOR, **kw):
        super().__init__(problem, **kw)
        self.precondition = check_precondition(self.name, precondition)
        self.curvature_floor = float(curvature_floor)
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
            from ._fd_hessian import _FiniteDifferenceHessian  # a pylops operator: pylops loads with the first one

            return _FiniteDifferenceHessian(self.problem, self.lin, lam)
        return self.lin.gauss_newton(lam)

    def setup(self, x0):
        self.x = self._project(x0)
        self.lin = self.problem.linearize(self.x)
        self.precondition = resolve_precondition(self.name, self.precondition, self.lin)

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.precondition = resolve_precondition(self.name, self.precondition, self.lin)

    def _preconditioner(self, lam):
        r""":math:`(D + \delta + \lambda I)^{-1}` as a function, or ``None`` (plain CG)."""
        curv = self.lin.curvature() if self.precondition == "curvature" else None
        if curv is None:
            return None
        floor = self.curvature_floor
        return curv.inverse(floor, lam)  # the shifted blocks formed once, applied at every CG iteration

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
            p = _cg(h, -g, self.inner_iterations, self.inner_rtol, self._preconditioner(self.lam))
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


solve_gauss_newton.takes_handover = True  # type: ignore[attr-defined]  # Solver.solve takes a Handover's array


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
