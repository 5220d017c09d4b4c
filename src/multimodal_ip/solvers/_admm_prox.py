"""The proximal operators of :class:`~multimodal_ip.solvers.admm.ADMMSolver` (pyproximal subclasses, imported
when a solver is built, so that ``multimodal_ip.solvers.admm`` loads without pyproximal and pylops)."""

__all__ = ["_SmoothProx", "_PackedProx"]

from typing import Any

from pyproximal import ProxOperator

from ..problem import Objective, ProximalObjective
from .base import same_point


class _SmoothProx(ProxOperator):
    r"""Inexact :math:`\mathrm{prox}_{\tau f}` of the smooth part (data terms + smooth regularizers):
    a few warm-started inner L-BFGS or Gauss-Newton iterations on
    :math:`f(x) + \tfrac{1}{2\tau}\|x - v\|^2`."""

    def __init__(self, problem: Objective, inner, inner_iterations):
        super().__init__(None, False)
        self.problem, self.inner, self.inner_iterations = problem, inner, int(inner_iterations)
        self.warm: Any = None
        self.stall = ""  # why the last inner solve stalled where it started ("" when it did not)

    def __call__(self, x):
        return self.problem.value(x)

    def prox(self, v, tau):
        from .gauss_newton import GaussNewton
        from .lbfgs import LBFGS

        prox_problem = ProximalObjective(self.problem, v, tau)
        x0 = v if self.warm is None else self.warm
        cls = LBFGS if self.inner == "lbfgs" else GaussNewton
        res = cls(prox_problem, maxiter=self.inner_iterations).solve(x0)
        # an inner solve that stalled without moving: this x-step made no progress (often a wrong gradient)
        self.stall = res.message if res.status == "stalled" and same_point(res.x, x0) else ""
        self.warm = res.x
        return res.x


class _PackedProx(ProxOperator):
    """Proximal operator of the nonsmooth regularizers, applied variable by variable on the packed vector."""

    def __init__(self, problem: Objective, regularizers):
        super().__init__(None, False)
        self.problem, self.regularizers = problem, regularizers

    def __call__(self, x):
        arrays = self.problem.space.unpack(x)
        return float(sum(r.value(arrays) for r in self.regularizers if not r.is_constraint))

    def prox(self, x, tau):
        out = x.copy()
        arrays = self.problem.space.unpack(out)
        for r in self.regularizers:
            for n in r.variables:
                arrays[n][...] = r.prox(arrays[n], tau)
        return out
