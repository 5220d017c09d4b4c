__all__ = ["Linearization"]

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from pylops import LinearOperator

from ..backend import get_array_module, real_dtype

if TYPE_CHECKING:
    from .curvature import Curvature
    from .joint_problem import JointProblem


@dataclass(frozen=True)
class Linearization:
    r"""Everything a solver needs at one point: values, gradient, and a lazy Gauss-Newton operator.

    Frozen: a changed objective is a new linearization, made by a combinator (:meth:`with_proximity`,
    :meth:`reduced`) that composes around this one (SCICO ``FunctionalSum``), never by assignment.

    Parameters
    ----------
    objective : :obj:`float`
        The objective at ``point`` (the sum of ``objectives``).
    objectives : :obj:`dict`
        Weighted value of each data term and regularizer (and added term, e.g. ``proximity``), by name.
    gradient : array
        The packed gradient at ``point``.
    point : array
        The packed point.
    extra_damping : :obj:`float`, optional
        Added to every damping of :meth:`gauss_newton`: a proximity term :math:`\|x - v\|^2 / (2\tau)` contributes
        :math:`1/\tau` (:meth:`with_proximity`).
    reduce : callable, optional
        Applied to every Gauss-Newton product before damping (the MPI sum over ranks, :meth:`reduced`).
    validation : :obj:`dict`, optional
        Weighted held-out loss of each term with a holdout, by name (empty when validation is off).
    """

    objective: float
    objectives: dict
    gradient: Any
    point: Any
    _problem: "JointProblem"
    #: per-term linearizations for the Jacobian, computed on first use (a gradient-only solver never holds them);
    #: shared by the linearizations composed around this one (same problem, same point)
    _memo: dict = field(default_factory=dict, repr=False, compare=False)
    extra_damping: float = 0.0
    reduce: Callable | None = None
    validation: dict = field(default_factory=dict)

    def jacobian(self) -> LinearOperator:
        """Stacked weighted Jacobian :math:`[\\sqrt{w_t} M_t^{1/2} J_t R_t]_t` (real in, real out)."""
        if "parts" not in self._memo:
            self._memo["parts"] = self._problem._linear_parts(self.point)
        return _StackedJacobian(self._problem, self._memo["parts"])

    def curvature(self) -> "Curvature | None":
        """The data terms' block-diagonal curvature estimate at this point
        (:meth:`~multimodal_ip.JointProblem.curvature`), summed by :meth:`reduced`'s ``total`` and with
        :attr:`extra_damping` added; computed on first use. ``None`` when no term offers one."""
        if "curvature" not in self._memo:  # this share's (the memo is shared with the linearizations around it)
            self._memo["curvature"] = self._problem.curvature(self.point)
        curv = self._memo["curvature"]
        if curv is not None and self.reduce is not None:
            key = ("curvature", id(self.reduce))
            if key not in self._memo:
                self._memo[key] = curv.map(self.reduce)
            curv = self._memo[key]
        return curv.damped(self.extra_damping) if curv is not None and self.extra_damping else curv

    def gauss_newton(self, damping: float = 0.0) -> LinearOperator:
        r""":math:`H_{GN} + \lambda I` on the packed space (real symmetric)."""
        return _GaussNewton(self.jacobian(), self._problem, self.point, damping + self.extra_damping, self.reduce)

    def with_proximity(self, v, tau: float) -> "Linearization":
        r"""The linearization of :math:`f(x) + \|x - v\|^2 / (2\tau)` at the same point (ADMM's :math:`f`-step):
        a term ``proximity`` in ``objectives``, :math:`(x - v)/\tau` added to the gradient and :math:`1/\tau` to
        every Gauss-Newton damping.

        Parameters
        ----------
        v : array
            The packed centre of the proximity term.
        tau : :obj:`float`
            Its step :math:`\tau > 0`.

        Returns
        -------
        :class:`Linearization`
            A new linearization; this one is unchanged.
        """
        tau = float(tau)
        ncp = get_array_module(self.point)
        d = self.point - v
        prox = 0.5 * float(ncp.vdot(d, d)) / tau
        d /= tau  # the gradient g + d / tau formed in d (the same rounding, no two more vectors)
        gradient = ncp.add(d, self.gradient, out=d) if d.dtype == np.result_type(d.dtype, self.gradient.dtype) \
            else self.gradient + d
        return replace(self, objective=self.objective + prox, objectives=dict(self.objectives, proximity=prox),
                       gradient=gradient, extra_damping=self.extra_damping + 1.0 / tau)

    def reduced(self, total: Callable) -> "Linearization":
        """The linearization of a sum of objectives of which this is one share (MPI: this rank's data terms).

        Parameters
        ----------
        total : callable
            ``total(a) -> array``: the sum of every share's array ``a`` (an allreduce; every share calls it in the
            same order). Applied to the per-term values (as one float64 array), the held-out values, the gradient
            and every Gauss-Newton product.

        Returns
        -------
        :class:`Linearization`
            A new linearization; this one is unchanged.
        """
        objectives = _total_dict(total, self.objectives)
        validation = _total_dict(total, self.validation) if self.validation else dict(self.validation)
        inner = self.reduce
        return replace(self, objective=float(sum(objectives.values())), objectives=objectives, validation=validation,
                       gradient=total(self.gradient),
                       reduce=total if inner is None else (lambda a: total(inner(a))))


def _total_dict(total: Callable, d: dict) -> dict:
    """``{key: sum over shares}`` of a dict of floats, by ``total`` of one float64 array (keys sorted: every share
    sends them in the same order)."""
    keys = sorted(d)
    vals = total(np.array([d[k] for k in keys], dtype=np.float64))
    return {k: float(v) for k, v in zip(keys, vals)}


class _StackedJacobian(LinearOperator):
    def __init__(self, problem, parts):
        self.parts = parts  # list of (term, restriction, J, Msqrt, sqrt_w, is_complex_out, n_real_out)
        self.problem = problem
        n_out = sum(p[-1] for p in parts)
        super().__init__(dtype=problem.space.dtype, shape=(n_out, problem.space.size))

    def _matvec(self, v):
        ncp = get_array_module(v)
        if self.problem.frozen:
            v = self.problem._freeze(v.copy())
        outs = []
        for _term, restr, jac, msqrt, sw, cplx, _ in self.parts:
            y = sw * msqrt(jac.matvec(restr.matvec(v)))
            outs.append(ncp.ascontiguousarray(y).view(real_dtype(y.dtype)) if cplx else y.real)
        return ncp.concatenate(outs)

    def _rmatvec(self, r):
        ncp = get_array_module(r)
        out = ncp.zeros(self.shape[1], dtype=r.dtype)
        start = 0
        for _term, restr, jac, msqrt, sw, cplx, n in self.parts:
            block = r[start : start + n]
            start += n
            if cplx:
                block = ncp.ascontiguousarray(block).view(np.result_type(block.dtype, np.complex64))
            out += restr.rmatvec(jac.rmatvec(sw * msqrt(block))).real
        return self.problem._freeze(out)


class _GaussNewton(LinearOperator):
    def __init__(self, jac, problem, point, damping, reduce=None):
        self.jac, self.problem, self.point, self.damping = jac, problem, point, float(damping)
        self.reduce = reduce
        super().__init__(dtype=jac.dtype, shape=(jac.shape[1], jac.shape[1]))

    def _matvec(self, v):
        ncp = get_array_module(v)
        out = ncp.zeros_like(v)
        vf = self.problem._freeze(v.copy()) if self.problem.frozen else v
        for term, restr, jac, msqrt, sw, _cplx, _n in self.jac.parts:
            du = restr.matvec(vf)
            if isinstance(jac, _StreamState):  # block by block: no output-sized array
                hu = term.gauss_newton_input(jac.state, du.reshape(term.operator.dims))
            else:
                hu = jac.rmatvec(msqrt(msqrt(jac.matvec(du))))
            restr.add_rmatvec(out, sw**2 * hu.ravel())
        out = self.problem._freeze(out)
        for reg in self.problem.regularizers:
            if reg.is_smooth:
                out = out + self.problem._reg_hvp(reg, self.point, v)
        if self.reduce is not None:
            out = self.reduce(out)
        return out + self.damping * v

    _rmatvec = _matvec


class _StreamState(LinearOperator):
    """A streamed term's Jacobian at one point, kept as the operator's shared state: Gauss-Newton products go
    block by block (:meth:`DataTerm.gauss_newton_input`); as a LinearOperator (the stacked Jacobian) it gives the
    whole output."""

    def __init__(self, op, state):
        from ..operators.streamed import _StreamedJacobian

        self.op, self.state = op, state
        self.whole = _StreamedJacobian(op, state)
        super().__init__(dtype=self.whole.dtype, shape=self.whole.shape)

    def forward(self):
        return self.op.stream_whole(self.state)

    def _matvec(self, du):
        return self.whole.matvec(du)

    def _rmatvec(self, g):
        return self.whole.rmatvec(g)
