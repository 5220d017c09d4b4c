__all__ = ["ADMMSolver", "solve_admm", "mmip_register_solvers"]

from ..backend import get_array_module
from ..errors import SolverError
from ..hookspecs import hookimpl
from ..problem import Objective
from .base import Solver, stalled


class ADMMSolver(Solver):
    r"""ADMM (pyproximal) splitting the smooth joint misfit :math:`f` from nonsmooth regularizers :math:`g`.

    .. math::
        x^{k+1} = \mathrm{prox}_{\tau f}(z^k - u^k),\quad
        z^{k+1} = \mathrm{prox}_{\tau g}(x^{k+1} + u^k),\quad
        u^{k+1} = u^k + x^{k+1} - z^{k+1}

    The :math:`f`-step is solved inexactly by ``inner_iterations`` warm-started
    L-BFGS (``inner="lbfgs"``) or Gauss-Newton steps. Regularizers with a proximal
    operator (TV, Box, NonNegative, Tikhonov) go into :math:`g`; several on one
    variable are applied in sequence (exact for one, an approximation for more).
    The reported iterate is :math:`z` (feasible for constraints).

    Parameters
    ----------
    tau : :obj:`float`, optional
        ADMM step (penalty :math:`1/\tau`); ``None`` picks :math:`\tau = 100/c` with :math:`c` the
        Gauss-Newton curvature of :math:`f` along :math:`\nabla f(x_0)`.
    inner : :obj:`str`, optional
        ``"lbfgs"`` or ``"gauss-newton"``.
    inner_iterations : :obj:`int`, optional
    """

    name = "admm"
    cannot_align = "its splitting variables and duals would not follow a moved iterate; use lbfgs or gauss-newton"
    progress_state = ("u",)

    def __init__(self, problem: Objective, tau=None, inner="lbfgs", inner_iterations=5, **kw):
        super().__init__(problem, **kw)
        if inner not in ("lbfgs", "gauss-newton"):
            msg = f"admm inner solver must be 'lbfgs' or 'gauss-newton'; got {inner!r}"
            raise SolverError(msg)
        for r in problem.regularizers:
            if not r.has_prox:
                msg = f"solver 'admm' needs regularizers with a proximal operator; {r!r} has none"
                raise SolverError(msg)
        from pyproximal.optimization.cls_primal import ADMM  # pyproximal imports pylops: not at start-up

        from ._admm_prox import _PackedProx, _SmoothProx

        self.smooth_problem = problem.with_regularizers(())
        self.proxf = _SmoothProx(self.smooth_problem, inner, inner_iterations)
        self.proxg = _PackedProx(problem, problem.regularizers)
        self.tau = tau
        self.admm = ADMM()

    def _state_variable_names(self):
        return ("z", "u", "warm")

    def _state_scalars(self):
        return {"tau": self.tau}

    def _load_scalars(self, scalars):
        self.tau = scalars["tau"]
        self.admm.setup(self.proxf, self.proxg, self.x, self.tau, z0=self.z)
        self.admm.u = self.u
        self.proxf.warm = self.warm

    @property
    def warm(self):
        return self.proxf.warm if self.proxf.warm is not None else self.x

    @warm.setter
    def warm(self, value):
        self.proxf.warm = value

    def setup(self, x0):
        ncp = get_array_module(x0)
        if self.tau is None:  # 100 / (Gauss-Newton curvature along the gradient): a mild proximity pull
            lin = self.smooth_problem.linearize(x0)
            g = lin.gradient
            curv = float(ncp.vdot(g, lin.gauss_newton(0.0).matvec(g))) / max(float(ncp.vdot(g, g)), 1e-300)
            self.tau = 100.0 / curv if curv > 0 else 1.0
        _, self.z = self.admm.setup(self.proxf, self.proxg, x0, self.tau, z0=self.proxg.prox(x0, self.tau))
        self.u = self.admm.u
        self.x = self.z
        self.lin = self.problem.linearize(self.x)

    def step(self):
        _, self.z = self.admm.step(self.z, self.z)  # x is recomputed from z - u (gfirst=False)
        self.u = self.admm.u
        self.x = self.z
        self.lin = self.problem.linearize(self.x)
        if self.proxf.stall:
            return stalled(f"the smooth x-step made no progress: its inner {self.proxf.inner} {self.proxf.stall}")
        return None

    def _no_progress(self):
        """``z`` and ``u`` unchanged: zero primal and dual residuals, ADMM's own convergence test (the x-step's
        inner solve did not stall, or :meth:`step` would have said so)."""
        return (f"fixed point: iteration {self.iteration + 1} changed neither z nor u (at "
                f"{self._precision().name} precision)")


def solve_admm(problem: Objective, x0, resume_state=None, **options):
    """ADMM with the problem's regularizers in the proximal step (:class:`ADMMSolver`).

    Parameters
    ----------
    problem : :class:`~multimodal_ip.problem.objective.Objective`
        What is minimised.
    x0 : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Start point (packed); ``None`` for the problem's start.
    resume_state : :obj:`dict`, optional
        State saved by a checkpoint, to continue a run.
    **options
        Options of :class:`ADMMSolver`
        and of :class:`~multimodal_ip.solvers.Solver` (``maxiter``, ``gtol``, ``callback``, ``stopping``, ...).

    Returns
    -------
    result : :class:`~multimodal_ip.solvers.Result`
        The returned iterate, status and history.

    Raises
    ------
    SolverError
        The problem has no regularizer, one without a proximal operator, or an unknown ``inner`` solver.
    """
    if not problem.regularizers:
        msg = "solver 'admm' needs at least one regularizer (e.g. TotalVariation or NonNegative); use 'lbfgs'"
        raise SolverError(msg)
    return ADMMSolver(problem, **options).solve(x0, resume_state=resume_state)


solve_admm.takes_handover = True  # type: ignore[attr-defined]  # Solver.solve takes a Handover's array


@hookimpl
def mmip_register_solvers(register):
    """Register the ``admm`` solver (hook ``mmip_register_solvers``).

    Parameters
    ----------
    register : :obj:`callable`
        ``register(name, solve)``: adds a solve function, its options declared with
        :func:`~multimodal_ip.solvers.declare_options`.
    """
    from . import declare_options

    register("admm", declare_options(solve_admm, ADMMSolver))
