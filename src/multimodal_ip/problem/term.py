__all__ = ["DataTerm", "Invariance"]

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ShapeError
from ..losses import LeastSquares, Loss
from ..operators import NonlinearOperator, Streamed


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
    curvature : callable, optional
        ``curvature(u) -> {variable: array}``: a block-diagonal estimate of the unweighted term's Gauss-Newton
        matrix at input ``u`` (as :meth:`linearize_input` gets it), per input variable: a diagonal over the
        variable's packed real entries or ``(m // k, k, k)`` blocks (:class:`~multimodal_ip.problem.Curvature`).
        Solvers use it as a preconditioner (option ``precondition``); ``None``: the term offers none.
    estimator : :class:`~multimodal_ip.problem.CalibrationEstimator`, optional
        The term's own estimator of calibration unknowns only it reads, every other variable fixed: the staged
        solver calls it for those unknowns instead of gradient steps (solver option ``calibration``,
        :mod:`multimodal_ip.solvers.alternating`); ``None``: the term offers none.
    photons_per_unit : :obj:`float`, optional
        The noise level of ``data``: counts :math:`\sim` Poisson are ``photons_per_unit * data``. With it the loss
        predicts the misfit the noise leaves (``noise_input``, ``--stop noise``); ``None``: the term offers none.
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
    curvature: Callable[[Any], Any] | None = None
    estimator: Any = None
    photons_per_unit: float | None = None

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
        state = op.stream_prepare_transient(u)  # used within this call only (u unchanged meanwhile)
        del u  # a copy of the joint point when the term's variables are not adjacent: freed here (unless in state)
        acc = op.stream_accumulator(state)
        val, held = 0.0, None
        for rows in op.blocks():
            v, g, h = self._block(op.stream_forward(state, rows), rows)
            val += v
            held = h if held is None else held + h
            op.stream_vjp(state, rows, g, acc)
            del g  # not alive beside the next block's windows
        state = op.stream_release(state)  # e.g. the complex object: freed before the finishing adjoint allocates
        return val, op.stream_finish(state, acc), held

    def objective_input(self, u) -> float:
        """The unweighted fit value at input ``u`` (no gradient; block by block for a streamed operator)."""
        if not self.streamed:
            return self.fit_value(self.operator.forward(u))
        op: Any = self.operator
        state = op.stream_prepare_transient(u)
        return sum(self.fit_value(op.stream_forward(state, rows), rows) for rows in op.blocks())

    def noise_input(self, u) -> tuple:
        """``(fit value, its expectation under the noise)`` of the unweighted loss at input ``u`` over the values not
        held out, from one prediction (block by block for a streamed operator): the expectation is
        the loss's ``noise_misfit`` at that prediction, ``None`` when the term or its loss offers no noise model.

        Parameters
        ----------
        u : array
            The term's input (the joint problem restricts the joint point to it).

        Returns
        -------
        value, expected : :obj:`float`, :obj:`float` or :obj:`None`
            The fit's loss and what the noise alone would leave at this prediction.
        """

        def one(y, rows=slice(None)):
            keep = None if self.holdout is None else ~self.holdout[rows]
            y_fit = y if keep is None else y[keep.reshape(y.shape)]
            expected = None if self.photons_per_unit is None else self.loss.noise_misfit(y_fit, self.photons_per_unit)
            return self.fit_value(y, rows), expected

        if not self.streamed:
            return one(self.operator.forward(u))
        op: Any = self.operator
        state = op.stream_prepare(u)
        parts = [one(op.stream_forward(state, rows), rows) for rows in op.blocks()]
        if any(e is None for _, e in parts):
            return sum(v for v, _ in parts), None
        return sum(v for v, _ in parts), sum(e for _, e in parts)

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
