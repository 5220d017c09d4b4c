"""A data term's own estimator of calibration unknowns that only it reads (``DataTerm(estimator=...)``): given every
other variable, the term's best estimate of those unknowns. The staged solver calls it instead of moving them by
gradient steps (:mod:`multimodal_ip.solvers.alternating`; the contract in docs/plugins.md)."""

__all__ = ["CalibrationEstimator", "CalibrationEstimate"]

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CalibrationEstimate:
    """What a :class:`~multimodal_ip.problem.CalibrationEstimator` returns.

    Parameters
    ----------
    values : :obj:`dict`
        ``{name: array}``: the estimate of every unknown the call named, each in its variable's shape.
    iterations : :obj:`int`
        The estimator's own iterations taken (at most the ``iterations`` it was given).
    converged : :obj:`bool`
        Whether the estimator met its own convergence test (else it ran out of iterations).
    message : :obj:`str`, optional
        Why it stopped, in words (the run's message when the estimator is the whole run).
    """

    values: dict
    iterations: int
    converged: bool
    message: str = ""


@dataclass(frozen=True)
class CalibrationEstimator:
    r"""A block solver a data term offers for some of its calibration unknowns (the others held fixed).

    The staged solver calls ``estimate(values, names, *, iterations, bounds, search)`` and uses what it returns for
    ``names`` (:class:`~multimodal_ip.problem.CalibrationEstimate`). What the core guarantees:

    * it calls the estimator only when the run refines ``names`` (a subset of :attr:`unknowns`), no other data term
      reads them, no regularizer but a constraint (``--refine-bound``) reads them, the term is whole (one part, no
      MPI ranks: the estimator sees all its data), and every other variable is held fixed during the call;
    * ``values`` holds every input variable of the term, by name, at the current iterate (``names`` at their
      current values: the start), in each variable's shape and dtype; the estimator must not change them;
    * ``iterations`` (>= 1) bounds the estimator's own iterations in this call;
    * ``bounds`` is ``{name: (lower, upper)}`` for the unknowns with a constraint (numbers or per-entry arrays);
      the core projects what is returned onto them too;
    * ``search`` is ``True`` on the first call of a run (the current values may be far from the answer: an
      estimator with a coarse global search runs it) and ``False`` on later calls (start from the current values).

    The estimate may use a better model or likelihood than the term's objective (ptychography: band-limited windows
    and the Poisson likelihood), so the run's objective need not decrease at the estimate; the history shows it.

    Parameters
    ----------
    estimate : callable
        ``estimate(values, names, *, iterations, bounds, search) -> CalibrationEstimate``.
    unknowns : :obj:`tuple` of :obj:`str`
        The calibration unknowns it can estimate.
    name : :obj:`str`, optional
        A label for messages.
    """

    estimate: Callable[..., CalibrationEstimate]
    unknowns: tuple = field(default_factory=tuple)
    name: str = "estimator"

    def __call__(self, values: dict, names, *, iterations: int, bounds: dict | None = None,
                 search: bool = False) -> Any:
        """``estimate(values, names, iterations=, bounds=, search=)``.

        Parameters
        ----------
        values : :obj:`dict`
            Every input of the term at the current iterate.
        names : sequence of :obj:`str`
            The unknowns to estimate.
        iterations : :obj:`int`
            Largest number of the estimator's iterations.
        bounds : :obj:`dict`, optional
            ``{name: (lower, upper)}``.
        search : :obj:`bool`, optional
            Whether a coarse search may run first.

        Returns
        -------
        :class:`~multimodal_ip.problem.CalibrationEstimate`
        """
        return self.estimate(values, tuple(names), iterations=int(iterations), bounds=dict(bounds or {}),
                             search=bool(search))
