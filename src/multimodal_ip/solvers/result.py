__all__ = ["Result", "SolverState", "Checkpointable"]

from dataclasses import dataclass, field
from typing import Protocol

from .history import History


@dataclass
class Result:
    """What a solver returns: the packed solution, the history and why it stopped.

    Parameters
    ----------
    x : :obj:`numpy.ndarray`
        The returned iterate, packed (numpy or cupy).
    history : :class:`History`
        One row per iteration.
    status : :obj:`str`
        One of :data:`STATUSES` (``converged``, ``maxiter``, ``max_time``, ``stalled``, ``failed``).
    message : :obj:`str`
        Why it stopped, in words.
    arrays : :obj:`dict`, optional
        ``{variable: array}``: ``x`` unpacked.
    returned_iteration : :obj:`int`, optional
        The iteration whose iterate ``x`` is (``None``: the last).
    """

    x: object
    history: History
    status: str
    message: str
    arrays: dict = field(default_factory=dict)
    #: the iteration whose iterate ``x`` is (``None``: the last; with early stopping, the best-validation one)
    returned_iteration: int | None = None

    def returned_row(self) -> dict:
        """The history row of the returned iterate."""
        if self.returned_iteration is None:
            return self.history.last()
        return next((r for r in self.history.rows if int(r["iteration"]) == self.returned_iteration),
                    self.history.last())


class Checkpointable(Protocol):
    """What ``SolverState.solver`` offers: a :class:`Solver`, or a staged run's view of its running stage."""

    def state_dict(self) -> dict: ...


@dataclass
class SolverState:
    """What a callback sees, and what a checkpoint stores.

    Parameters
    ----------
    iteration : :obj:`int`
        The iteration just completed.
    x : :obj:`numpy.ndarray`
        The packed iterate.
    history : :class:`History`
        The rows so far.
    solver : :class:`Solver`
        The running solver (``state_dict()`` is its checkpoint), or a staged run's view of its running stage.
    """

    iteration: int
    x: object
    history: History
    solver: "Checkpointable"
