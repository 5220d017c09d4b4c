"""Hessian-vector products by gradient differences for :class:`~multimodal_ip.solvers.gauss_newton.GaussNewton`
(a pylops operator, imported when one is built, so that ``multimodal_ip.solvers.gauss_newton`` loads without
pylops)."""

__all__ = ["_FiniteDifferenceHessian"]

from pylops import LinearOperator

from ..backend import get_array_module
from ..problem import Linearization, Objective


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
