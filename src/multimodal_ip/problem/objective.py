__all__ = ["Objective", "ProximalObjective"]

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..backend import get_array_module

if TYPE_CHECKING:
    from ..regularizers import Regularizer
    from ..variables import VariableSpace
    from .linearization import Linearization
    from .term import Invariance


@runtime_checkable
class Objective(Protocol):
    r"""What a solver may use of the function it minimises: exactly this, checked by mypy over ``solvers/``.

    A :class:`~multimodal_ip.JointProblem` is one; so are the compositions around any objective: the MPI sum over
    ranks (:class:`~multimodal_ip.distributed.DistributedProblem`) and ADMM's proximal subproblem
    (:class:`ProximalObjective`). Points are packed real vectors of :attr:`space`.
    """

    @property
    def space(self) -> "VariableSpace":
        """The unknowns (packing, slices, bounds, dtype)."""
        ...

    @property
    def xp(self) -> Any:
        """Array module of the data (numpy or cupy)."""
        ...

    @property
    def regularizers(self) -> "Sequence[Regularizer]":
        """Penalties and constraints (proximal solvers split the nonsmooth ones off)."""
        ...

    @property
    def calibration(self) -> Mapping[str, Any]:
        """Start values of the refined calibration unknowns, by name (a staged run freezes them first)."""
        ...

    @property
    def has_holdout(self) -> bool:
        """Whether values are held out for validation (early stopping needs some)."""
        ...

    @property
    def frozen(self) -> "Sequence[str]":
        """The variables held fixed (:meth:`with_frozen`; a staged run adds the calibration unknowns to them)."""
        ...

    def at_precision(self, v: Any) -> Any:
        """``v`` no wider than the unknowns' precision."""
        ...

    def value(self, v: Any) -> float:
        """The objective at ``v``."""
        ...

    def gradient(self, v: Any) -> Any:
        """The packed gradient at ``v``."""
        ...

    def linearize(self, v: Any) -> "Linearization":
        """Objective, per-term objectives, gradient and a lazy Gauss-Newton operator at ``v``. The gradient is a
        fresh array the caller may overwrite once done with the linearization (L-BFGS forms a correction pair in
        it): an objective keeps no reference to it."""
        ...

    def relative_errors(self, v: Any) -> dict:
        """Errors against the truth by variable (and ``total``), ``{}`` without a truth."""
        ...

    def invariances(self) -> "dict[str, Invariance]":
        """``{term: Invariance}`` of the terms that declare one."""
        ...

    def align(self, v: Any, steps: Mapping[str, float] | None = None) -> tuple[Any, dict]:
        """``(v', {term: move})``: ``v`` moved along the invariances (the solvers' ``align`` option)."""
        ...

    def with_frozen(self, names: Sequence[str]) -> "Objective":
        """The same objective with the variables ``names`` held fixed."""
        ...

    def with_regularizers(self, regularizers: "Sequence[Regularizer]") -> "Objective":
        """The same objective with its regularizers replaced."""
        ...


class ProximalObjective:
    r""":math:`f(x) + \|x - v\|^2 / (2\tau)` around any :class:`Objective` :math:`f` (ADMM's :math:`f`-step).

    Built by composition: its linearization is :math:`f`'s with
    :meth:`~multimodal_ip.problem.Linearization.with_proximity`. The subproblem has no invariance (the proximity
    term pins every direction) and reports no errors against the truth (its iterates are not the run's).

    Parameters
    ----------
    inner : :class:`Objective`
        :math:`f`.
    v : array
        The packed centre :math:`v`.
    tau : :obj:`float`
        The step :math:`\tau > 0`.
    """

    def __init__(self, inner: Objective, v: Any, tau: float):
        self.inner, self.v, self.tau = inner, v, float(tau)

    @property
    def space(self) -> "VariableSpace":
        return self.inner.space

    @property
    def xp(self) -> Any:
        return self.inner.xp

    @property
    def regularizers(self) -> "Sequence[Regularizer]":
        return self.inner.regularizers

    @property
    def calibration(self) -> Mapping[str, Any]:
        return self.inner.calibration

    @property
    def has_holdout(self) -> bool:
        return False

    @property
    def frozen(self) -> "Sequence[str]":
        return self.inner.frozen

    def at_precision(self, v: Any) -> Any:
        return self.inner.at_precision(v)

    def linearize(self, v: Any) -> "Linearization":
        return self.inner.linearize(v).with_proximity(self.v, self.tau)

    def value(self, v: Any) -> float:
        d = v - self.v
        return self.inner.value(v) + 0.5 * float(get_array_module(v).vdot(d, d)) / self.tau

    def gradient(self, v: Any) -> Any:
        return self.linearize(v).gradient

    def relative_errors(self, v: Any) -> dict:
        return {}

    def invariances(self) -> "dict[str, Invariance]":
        return {}

    def align(self, v: Any, steps: Mapping[str, float] | None = None) -> tuple[Any, dict]:
        return v, {}

    def with_frozen(self, names: Sequence[str]) -> "ProximalObjective":
        return ProximalObjective(self.inner.with_frozen(names), self.v, self.tau)

    def with_regularizers(self, regularizers: "Sequence[Regularizer]") -> "ProximalObjective":
        return ProximalObjective(self.inner.with_regularizers(regularizers), self.v, self.tau)

    def __repr__(self) -> str:
        return f"ProximalObjective({self.inner!r}, tau={self.tau:.3g})"
