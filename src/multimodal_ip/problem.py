__all__ = ["DataTerm", "Invariance", "JointProblem", "Linearization", "balanced_weights"]

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from pylops import LinearOperator

from .backend import get_array_module, real_dtype
from .errors import DtypeError, ShapeError, UnknownVariableError
from .losses import LeastSquares, Loss
from .operators import NonlinearOperator, Streamed
from .variables import VariableSpace

#: how far the solvers' trust region along an invariance may grow over its ``max_step`` (doubling after each move
#: that reached it): a phase 0.77 rad off is turned in 4 iterations from 0.1 rad (docs/validation.md)
ALIGN_GROWTH = 8.0


@dataclass(frozen=True)
class Invariance:
    r"""A one-parameter group of changes of a term's input variables that leaves the term's objective unchanged
    (ptychography: the global phase of the object, :math:`z \to e^{it} z`).

    A gradient method moves slowly along such a direction: this term has no curvature there, only the other terms
    (or regularizers) pin it. With ``align`` on, the solvers minimise the *other* terms along the group after every
    iteration (:meth:`JointProblem.align`; docs/validation.md, "The slow mode").

    Parameters
    ----------
    apply : callable
        ``apply(arrays, t) -> dict``: the input variables (by name, as :meth:`VariableSpace.unpack` gives them) moved
        by the group parameter ``t``; returns the changed variables only; ``t = 0`` changes nothing.
    max_step : :obj:`float`
        Largest ``|t|`` the first alignment may take (a trust region in the group's own unit). The solvers double
        it after a move that reached it, up to ``ALIGN_GROWTH`` times, and halve it back otherwise.
    name : :obj:`str`, optional
        A label for messages (e.g. the conformance kit's, when the term's objective does change along it); the
        history column of the moves is named by the term, ``align_<term>``.
    """

    apply: Callable[[dict, float], dict]
    max_step: float
    name: str = "invariance"


@dataclass
class DataTerm:
    r"""One measurement: :math:`w \cdot L(A(v_{\text{inputs}}), d)`.

    Parameters
    ----------
    operator : :class:`~multimodal_ip.operators.NonlinearOperator`
        Forward model. With one input it reads that variable's array; with several,
        the packed real vector of those variables (compose a linear coupling in front).
    data : array
        Measurements, shape ``operator.dimsd``.
    loss : :class:`~multimodal_ip.losses.Loss`, optional
        Misfit (default least squares).
    weight : :obj:`float`, optional
        Multiplier of the term in the joint objective.
    inputs : sequence of :obj:`str`
        Names of the variables the operator reads.
    name : :obj:`str`, optional
        Term name (history columns ``objective_<name>``); defaults to the operator's name.
    part : :obj:`int`, optional
        Index of this chunk when one term is evaluated as several parts (chunks of its split data, see
        :func:`~multimodal_ip.modality.split_term`): parts share the name, their objectives are summed and they
        are weighted, selected and reported together.
    holdout : bool array, optional
        Measured values held out for validation (``True``; shaped like ``data``): left out of the objective and
        its gradient, their loss reported as the term's validation loss (:mod:`multimodal_ip.validation`).
    invariance : :class:`Invariance`, optional
        A change of the input variables that leaves this term's objective unchanged (solvers' ``align`` option).
    """

    operator: NonlinearOperator
    data: Any
    loss: Loss = field(default_factory=LeastSquares)
    weight: float = 1.0
    inputs: Sequence[str] = ("x",)
    name: str | None = None
    part: int = 0
    holdout: Any = None
    invariance: Invariance | None = None

    def __post_init__(self):
        self.inputs = tuple([self.inputs] if isinstance(self.inputs, str) else self.inputs)
        self.name = self.name or self.operator.name
        if tuple(self.data.shape) != self.operator.dimsd:
            msg = f"term {self.name!r}: data must have shape {self.operator.dimsd}; got {tuple(self.data.shape)}"
            raise ShapeError(msg)
        if self.holdout is not None and tuple(self.holdout.shape) != tuple(self.data.shape):
            msg = (f"term {self.name!r}: holdout mask must have the data's shape {tuple(self.data.shape)}; "
                   f"got {tuple(self.holdout.shape)}")
            raise ShapeError(msg)
        self.weight = float(self.weight)

    def measured(self, y, rows=slice(None)):
        """The data of output ``rows`` as the losses see them beside prediction ``y``: integer counts (kept compact
        in memory) converted to ``y``'s real precision here, one block at a time; floats as they are."""
        data = self.data[rows]
        if data.dtype.kind in "iub":
            data = data.astype(y.real.dtype)
        return data

    def evaluate(self, y):
        """``(fit value, gradient in y, held-out value or None)`` of the unweighted loss at prediction ``y``."""
        if self.holdout is None:
            return (*self.loss.value_and_gradient(y, self.measured(y)), None)
        return self.loss.split(y, self.measured(y), self.holdout)

    def fit_value(self, y, rows=slice(None)) -> float:
        """The unweighted loss at ``y`` (the prediction of output ``rows``, default all) over the values not held out
        (no gradient computed when nothing is)."""
        data = self.measured(y, rows)
        return self.loss.value(y, data) if self.holdout is None else self.loss.split(y, data, self.holdout[rows])[0]

    @property
    def streamed(self) -> bool:
        """Whether the term is evaluated block by block (its operator is :class:`~multimodal_ip.operators.Streamed`)."""
        return isinstance(self.operator, Streamed)

    def _block(self, y, rows):
        """``(fit value, gradient, held-out value or None)`` of the loss on output block ``rows``."""
        data = self.measured(y, rows)
        if self.holdout is None:  # y is this block's fresh prediction: the loss may write its gradient into it
            return (*self.loss.value_and_gradient_(y, data), None)
        return self.loss.split(y, data, self.holdout[rows])

    def linearize_input(self, u):
        """``(fit value, gradient in the input u, held-out value or None)`` of the unweighted loss at input ``u``;
        block by block for a streamed operator (no whole-output array)."""
        if not self.streamed:
            y, jac = self.operator.linearize(u)
            val, gy, held = self.evaluate(y)
            del y
            return val, jac.rmatvec(gy.ravel()), held
        op: Any = self.operator
        state = op.stream_prepare(u)
        acc = op.stream_accumulator(state)
        val, held = 0.0, None
        for rows in op.blocks():
            v, g, h = self._block(op.stream_forward(state, rows), rows)
            val += v
            held = h if held is None else held + h
            op.stream_vjp(state, rows, g, acc)
        state = op.stream_release(state)  # e.g. the complex object: freed before the finishing adjoint allocates
        return val, op.stream_finish(state, acc), held

    def objective_input(self, u) -> float:
        """The unweighted fit value at input ``u`` (no gradient; block by block for a streamed operator)."""
        if not self.streamed:
            return self.fit_value(self.operator.forward(u))
        op: Any = self.operator
        state = op.stream_prepare(u)
        return sum(self.fit_value(op.stream_forward(state, rows), rows) for rows in op.blocks())

    def gauss_newton_input(self, state, du):
        r""":math:`J^H M J\,du` of a streamed term at ``state`` (from ``operator.stream_prepare``), block by block:
        each block's prediction is recomputed for its curvature (nothing output-sized is kept between products)."""
        op: Any = self.operator
        tangent = op.stream_tangent(state, du)
        acc = op.stream_accumulator(state)
        for rows in op.blocks():
            msqrt = _LazyCurvature(self, op.stream_forward(state, rows), rows)
            dy = op.stream_jvp(state, tangent, rows)
            op.stream_vjp(state, rows, msqrt(msqrt(dy.ravel())).reshape(dy.shape), acc)
        return op.stream_finish(state, acc)


class _Restriction(LinearOperator):
    """Packed joint vector -> a term's input (one variable's array, or the packed sub-vector)."""

    def __init__(self, space: VariableSpace, names, dtype):
        self.space, self.names = space, tuple(names)
        single = space[names[0]] if len(names) == 1 else None
        self.complex_single = single is not None and single.is_complex
        nout = space.subspace(names).size
        self.cdtype = np.result_type(dtype, np.complex64)
        dimsd = single.shape if single is not None else (nout,)
        super().__init__(dtype=self.cdtype if self.complex_single else dtype, dims=(space.size,), dimsd=dimsd)
        self.slices = [space.slice(n) for n in self.names]

    def _matvec(self, v):
        ncp = get_array_module(v)
        contiguous = all(a.stop == b.start for a, b in zip(self.slices, self.slices[1:]))
        # adjacent variables in packing order are one view (no copy of the term's whole input)
        out = v[self.slices[0].start : self.slices[-1].stop] if contiguous else \
            ncp.concatenate([v[s] for s in self.slices])
        if self.complex_single:
            out = ncp.ascontiguousarray(out).view(self.cdtype)
        return out

    def _rmatvec(self, u):
        out = get_array_module(u).zeros(self.space.size, dtype=u.real.dtype)
        self.add_rmatvec(out, u)
        return out

    def add_rmatvec(self, out, u) -> None:
        """``out += R^T u`` in place (no joint-sized temporary)."""
        if self.complex_single:
            ncp = get_array_module(u)
            u = ncp.ascontiguousarray(u.astype(self.cdtype, copy=False)).view(real_dtype(self.cdtype))
        u = u.ravel()
        start = 0
        for s in self.slices:
            n = s.stop - s.start
            out[s] += u[start : start + n].real
            start += n


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
        d = self.point - v
        prox = 0.5 * float(get_array_module(d).vdot(d, d)) / tau
        return replace(self, objective=self.objective + prox, objectives=dict(self.objectives, proximity=prox),
                       gradient=self.gradient + d / tau, extra_damping=self.extra_damping + 1.0 / tau)

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


class JointProblem:
    r"""Weighted sum of data terms and regularizers over shared named variables.

    .. math:: \Phi(v) = \sum_t w_t L_t(A_t(R_t v), d_t) + \sum_r \rho_r(v)

    where :math:`R_t` picks the variables term :math:`t` reads. Solvers see the
    packed real vector of :class:`~multimodal_ip.VariableSpace`.

    Parameters
    ----------
    space : :class:`~multimodal_ip.VariableSpace`
        The unknowns.
    terms : sequence of :class:`DataTerm`
        Data terms; their ``inputs`` must name variables of ``space``.
    regularizers : sequence of :class:`~multimodal_ip.regularizers.Regularizer`, optional
    truth : mapping, optional
        Ground-truth arrays by variable name (simulations), used for error columns in histories.
    calibration : mapping, optional
        Start values of calibration unknowns by variable name:
        :meth:`start` puts them there, and the ``total`` of :meth:`relative_errors` leaves them out.
    """

    def __init__(self, space: VariableSpace, terms, regularizers=(), truth: Mapping | None = None,
                 calibration: Mapping | None = None, frozen=()):
        self.space = space
        self.calibration = dict(calibration or {})
        self.frozen = tuple(frozen)
        for name in (*self.calibration, *self.frozen):
            space[name]
        self.terms = tuple(terms)
        self.regularizers = tuple(regularizers)
        keys = [(t.name, t.part) for t in self.terms]
        if len(set(keys)) != len(keys):
            msg = f"data term names (and parts) must be unique; got {[t.name for t in self.terms]}"
            raise ValueError(msg)
        self._restrictions = []
        for t in self.terms:
            for n in t.inputs:
                if n not in space:
                    msg = f"term {t.name!r} reads unknown variable {n!r}; the space has: {', '.join(space.names)}"
                    raise UnknownVariableError(msg)
            restr = _Restriction(space, t.inputs, space.dtype)
            if tuple(restr.dimsd) != t.operator.dims:
                msg = (
                    f"term {t.name!r}: operator {t.operator.name} expects input shape {t.operator.dims}, "
                    f"but its inputs {list(t.inputs)} give shape {tuple(restr.dimsd)}"
                )
                raise ShapeError(msg)
            if t.operator.dtype.kind == "f" and restr.complex_single:
                msg = f"term {t.name!r}: operator {t.operator.name} takes real input but {t.inputs[0]!r} is complex"
                raise DtypeError(msg)
            self._restrictions.append(restr)
        for r in self.regularizers:
            for n in r.variables:
                space[n]
        self.truth = None
        if truth is not None:
            self.truth = {k: v for k, v in truth.items() if k in space}

    # ---- construction helpers --------------------------------------------------
    def with_terms(self, names) -> "JointProblem":
        """The problem restricted to the data terms ``names`` (same space, regularizers, truth)."""
        keep = [t for t in self.terms if t.name in names]
        missing = set(names) - {t.name for t in keep}
        if missing:
            msg = f"unknown term(s) {sorted(missing)}; this problem has: {', '.join(self.term_names)}"
            raise UnknownVariableError(msg)
        return JointProblem(self.space, keep, self.regularizers, self.truth, self.calibration, self.frozen)

    def alone(self, name) -> "JointProblem":
        """The separate inversion of one data term: that term alone, weight 1, same regularizers and truth."""
        return self.with_terms([name]).with_weights({name: 1.0})

    def with_weights(self, weights: Mapping) -> "JointProblem":
        """A copy whose term weights are replaced by ``weights`` (by term name).

        Parameters
        ----------
        weights : :obj:`dict`
            ``{term name: weight}``; terms not named keep their weight (e.g. :func:`~multimodal_ip.balanced_weights`).

        Returns
        -------
        :class:`~multimodal_ip.JointProblem`
            The same terms, variables and regularizers with the new weights.
        """
        terms = [replace(t, weight=weights.get(t.name, t.weight)) for t in self.terms]
        return JointProblem(self.space, terms, self.regularizers, self.truth, self.calibration, self.frozen)

    def with_regularizers(self, regularizers) -> "JointProblem":
        """A copy with its regularizers replaced.

        Parameters
        ----------
        regularizers : :obj:`list` of :class:`~multimodal_ip.regularizers.Regularizer`
            The new penalties and constraints (``()``: none), e.g.
            ``[TotalVariation("x", weight=1e-3), NonNegative("w")]``.

        Returns
        -------
        :class:`~multimodal_ip.JointProblem`
            The same terms and variables with these regularizers.
        """
        return JointProblem(self.space, self.terms, regularizers, self.truth, self.calibration, self.frozen)

    def with_frozen(self, names) -> "JointProblem":
        """A copy in which the variables ``names`` do not move: their gradient is zero and the Gauss-Newton
        operator acts on the others only (e.g. the calibration unknowns during the first iterations)."""
        return JointProblem(self.space, self.terms, self.regularizers, self.truth, self.calibration, tuple(names))

    def _freeze(self, g):
        for name in self.frozen:
            g[self.space.slice(name)] = 0
        return g

    def start(self, fill_value=1.0, xp=None):
        """The start point: ``fill_value`` in every variable (the paper's all-ones), calibration unknowns at
        their start values."""
        xp = xp or self.xp
        return self.space.pack({v.name: xp.asarray(self.calibration[v.name]) if v.name in self.calibration
                                else xp.full(v.shape, fill_value, dtype=v.dtype) for v in self.space.variables})

    @property
    def xp(self):
        """Array module of the data (numpy or cupy)."""
        return get_array_module(self.terms[0].data) if self.terms else np

    @property
    def term_names(self) -> tuple:
        return tuple(dict.fromkeys(t.name for t in self.terms))

    @property
    def has_holdout(self) -> bool:
        """Whether some term holds values out for validation (a solver's early stopping needs one)."""
        return any(t.holdout is not None for t in self.terms)

    @property
    def weights(self) -> dict:
        return {t.name: t.weight for t in self.terms}

    @property
    def parts(self) -> dict:
        """Number of parts (chunks) of each data term, by name."""
        out: dict = {}
        for t in self.terms:
            out[t.name] = out.get(t.name, 0) + 1
        return out

    def __repr__(self) -> str:
        counts = self.parts
        terms = ", ".join(f"{n}*{w:.3g}" + (f" in {counts[n]} parts" if counts[n] > 1 else "")
                          for n, w in self.weights.items())
        return f"JointProblem({self.space!r}, terms=[{terms}], regularizers={list(self.regularizers)})"

    # ---- evaluation ------------------------------------------------------------
    def _term_input(self, i, v):
        return self._restrictions[i].matvec(v).reshape(self.terms[i].operator.dims)

    def at_precision(self, v):
        """``v`` no wider than the unknowns' precision: a solver's trial point ``x + alpha * p`` with a numpy float64
        ``alpha`` is float64 (NEP 50) and would silently run a float32 problem in float64. (A narrower ``v`` is
        kept: a float32 point of a float64 space evaluates in float32, as its terms were built for.)"""
        return v.astype(self.space.dtype) if v.dtype.itemsize > self.space.dtype.itemsize else v

    def objectives(self, v) -> dict:
        """Weighted value of each data term and regularizer, by name."""
        v = self.at_precision(v)
        out: dict = {}
        for i, t in enumerate(self.terms):
            out[t.name] = out.get(t.name, 0.0) + t.weight * t.objective_input(self._term_input(i, v))
        arrays = self.space.unpack(v) if self.regularizers else None
        for r in self.regularizers:
            if not r.is_constraint:
                out[r.name] = r.value(arrays)
        return out

    def value(self, v) -> float:
        return float(sum(self.objectives(v).values()))

    __call__ = value

    def linearize(self, v) -> Linearization:
        """Objective, per-term objectives and gradient at ``v``, with a lazy Jacobian/GN operator."""
        v = self.at_precision(v)
        ncp = get_array_module(v)
        grad = ncp.zeros_like(v)
        objectives: dict = {}
        validation: dict = {}
        for i, t in enumerate(self.terms):
            val, gu, held = t.linearize_input(self._term_input(i, v))
            objectives[t.name] = objectives.get(t.name, 0.0) + t.weight * val
            if held is not None:
                validation[t.name] = validation.get(t.name, 0.0) + t.weight * held
            gu = gu.ravel()
            if t.weight != 1.0:  # scaled in place when the gradient is a fresh array (not a view of the input)
                gu = gu * t.weight if ncp.may_share_memory(gu, v) or not getattr(gu.flags, "writeable", True) \
                    else _scale(gu, t.weight)
            self._restrictions[i].add_rmatvec(grad, gu)
            del gu  # nothing of a part is kept: memory holds one part's temporaries at a time
        if self.regularizers:
            arrays = self.space.unpack(v)
            for r in self.regularizers:
                if r.is_constraint:
                    continue
                if not r.is_smooth:
                    objectives[r.name] = r.value(arrays)
                    continue
                val, g = r.value_and_gradient(arrays)
                objectives[r.name] = val
                for name, gi in g.items():
                    self._add_packed(grad, name, gi)
        return Linearization(float(sum(objectives.values())), objectives, self._freeze(grad), v, self,
                             validation=validation)

    def _linear_parts(self, v) -> list:
        """Per-term ``(term, restriction, J, M^(1/2), sqrt(w), complex?, n_real_out)`` at ``v`` (Gauss-Newton)."""
        ncp = get_array_module(v)
        parts = []
        for i, t in enumerate(self.terms):
            u = self._term_input(i, v)
            cplx = t.operator.dtyped.kind == "c"
            n_out = int(np.prod(t.operator.dimsd)) * (2 if cplx else 1)
            if t.streamed:  # the state only: products go block by block (the whole prediction only if asked)
                state = _StreamState(t.operator, t.operator.stream_prepare(u))
                parts.append((t, self._restrictions[i], state, _LazyCurvature(t, state.forward), t.weight**0.5, cplx,
                              n_out))
                continue
            y, jac = t.operator.linearize(u)
            cplx = ncp.iscomplexobj(y)
            n_out = y.size * (2 if cplx else 1)
            parts.append((t, self._restrictions[i], jac, _LazyCurvature(t, y),
                          t.weight**0.5, cplx, n_out))
        return parts

    def value_and_gradient(self, v):
        lin = self.linearize(v)
        return lin.objective, lin.gradient

    def gradient(self, v):
        return self.linearize(v).gradient

    def term_gradients(self, v) -> dict:
        """Gradient of each weighted data term alone (packed), by name."""
        return {name: self.with_terms([name]).with_regularizers(()).gradient(v) for name in self.term_names}

    def _reg_hvp(self, reg, v, dv):
        arrays = self.space.unpack(v)
        darrays = self.space.unpack(dv)
        hv = reg.hessian_vector(arrays, darrays)
        out = get_array_module(v).zeros_like(v)
        for name, h in hv.items():
            self._add_packed(out, name, h)
        return out

    def _add_packed(self, out, name, a) -> None:
        """``out[variable] += a`` in the packed real layout (complex variables as interleaved real pairs)."""
        part = out[self.space.slice(name)]
        if self.space[name].is_complex:
            part[0::2] += a.real.ravel()
            part[1::2] += a.imag.ravel()
        else:
            part += a.ravel()

    # ---- invariances -------------------------------------------------------------
    def align(self, v, steps=None):
        r"""``(v', {term: t})``: ``v`` moved along every term's :class:`Invariance` to the minimum of the *other*
        terms and the regularizers (:func:`align`, which see)."""
        return align(self, v, steps)

    def invariances(self) -> dict:
        """``{term: Invariance}`` of the terms that declare one (a split term's parts share their first part's)."""
        out: dict = {}
        for t in self.terms:
            if t.invariance is not None:
                out.setdefault(t.name, t.invariance)
        return out

    # ---- errors vs truth ---------------------------------------------------------
    def relative_errors(self, v) -> dict:
        r"""``{"total": ||v - v*|| / ||v*||, <var>: per variable}`` over the variables with a truth (the total
        leaves calibration unknowns out: their units differ)."""
        if not self.truth:
            return {}
        ncp = get_array_module(v)
        arrays = self.space.unpack(v)
        num = den = 0.0
        out = {}
        for name, t in self.truth.items():
            t = ncp.asarray(t)
            e = float(ncp.linalg.norm((arrays[name] - t).ravel()))
            n = float(ncp.linalg.norm(t.ravel()))
            out[name] = e / n if n else e
            if name not in self.calibration:
                num, den = num + e**2, den + n**2
        out["total"] = (num / den) ** 0.5 if den else num**0.5
        return out


def align(problem, v, steps=None) -> tuple:
    r"""``(v', {term: t})``: ``v`` moved along every term's :class:`Invariance` to the minimum of the *other*
    terms and the regularizers over ``|t| <= step`` (``steps[term]``, default its ``max_step``; bounded Brent
    search to 1 % of the step, about ten evaluations of the other terms, none of the invariant term). The term
    itself does not change along its group, so the objective never rises. A group that touches a frozen
    variable, or that nothing else pins (the term alone, no regularizer), is left alone.

    ``problem`` is a :class:`JointProblem` or a composition around one with the same construction helpers
    (``with_terms``, ``value``, ``invariances``, ``term_names``, ``space``, ``regularizers``, ``frozen``), such
    as the MPI :class:`~multimodal_ip.distributed.DistributedProblem`, whose values are summed over ranks.
    """
    from scipy.optimize import minimize_scalar

    moves: dict = {}
    for name, inv in problem.invariances().items():
        others = [n for n in problem.term_names if n != name]
        arrays = problem.space.unpack(v)
        if not others and not problem.regularizers or set(inv.apply(arrays, 0.0)) & set(problem.frozen):
            continue
        pinned = problem.with_terms(others)

        def moved(t, arrays=arrays, inv=inv):
            return problem.space.pack({**arrays, **inv.apply(arrays, t)})

        m = float((steps or {}).get(name, inv.max_step))
        res = minimize_scalar(lambda t, pinned=pinned, moved=moved: pinned.value(moved(t)), bounds=(-m, m),
                              method="bounded", options={"xatol": 1e-2 * m})
        moves[name] = 0.0
        if np.isfinite(res.fun) and res.fun < pinned.value(v):
            v, moves[name] = moved(float(res.x)), float(res.x)
    return v, moves


class _StreamState(LinearOperator):
    """A streamed term's Jacobian at one point, kept as the operator's shared state: Gauss-Newton products go
    block by block (:meth:`DataTerm.gauss_newton_input`); as a LinearOperator (the stacked Jacobian) it gives the
    whole output."""

    def __init__(self, op, state):
        from .operators.streamed import _StreamedJacobian

        self.op, self.state = op, state
        self.whole = _StreamedJacobian(op, state)
        super().__init__(dtype=self.whole.dtype, shape=self.whole.shape)

    def forward(self):
        return self.op.stream_whole(self.state)

    def _matvec(self, du):
        return self.whole.matvec(du)

    def _rmatvec(self, g):
        return self.whole.rmatvec(g)


def _scale(a, w):
    a *= w
    return a


class _LazyCurvature:
    """:math:`M^{1/2}` of a term's loss at ``y`` (the prediction of output ``rows``: an array, or a function giving
    it), built on first use (a gradient alone never needs it)."""

    def __init__(self, term, y, rows=slice(None)):
        self.term, self.y, self.rows, self.fn = term, y, rows, None
        holdout = term.holdout
        self.keep = None if holdout is None else ~holdout[rows].ravel()  # held-out values carry no curvature

    def __call__(self, delta):
        if self.fn is None:
            y = self.y() if callable(self.y) else self.y
            self.fn = self.term.loss.curvature_sqrt(y.ravel(), self.term.measured(y, self.rows).ravel())
        out = self.fn(delta).ravel()
        return out if self.keep is None else out * self.keep


def balanced_weights(problem: JointProblem, v0, reference: str, c: float) -> dict:
    r"""The paper's gradient-norm balancing, fixed at the initial point :math:`v_0`.

    Every term but ``reference`` gets weight
    :math:`c\,\|\nabla f_{\text{ref}}(v_0)\| / \|\nabla f_t(v_0)\|` (the reference keeps weight 1).

    Parameters
    ----------
    problem : :class:`JointProblem`
        The problem whose terms are weighted.
    v0 : :obj:`numpy.ndarray`
        The initial point, packed.
    reference : :obj:`str`
        The term kept at weight 1 (the modality with ``balance_role = "reference"``).
    c : :obj:`float`
        The balance factor :math:`c`.

    Returns
    -------
    :obj:`dict`
        ``{term name: weight}``, for :meth:`JointProblem.with_weights`.
    """
    if reference not in problem.term_names:
        msg = f"reference term {reference!r} not in problem; terms: {', '.join(problem.term_names)}"
        raise UnknownVariableError(msg)
    unit = problem.with_weights(dict.fromkeys(problem.term_names, 1.0)).with_regularizers(())
    ncp = get_array_module(v0)
    # one term's gradient at a time (each is as large as the unknowns): only its norm is kept
    norms = {name: float(ncp.linalg.norm(unit.with_terms([name]).gradient(v0))) for name in unit.term_names}
    gref = norms[reference]
    return {name: 1.0 if name == reference else (c * gref / gn if gn > 0 else 1.0) for name, gn in norms.items()}
