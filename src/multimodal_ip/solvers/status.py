__all__ = ["STATUSES", "Stop", "stalled", "same_point", "ROUNDOFF_ULPS", "STEP_ULPS", "machine_epsilon",
           "unresolved"]

from dataclasses import dataclass

import numpy as np

from ..backend import get_array_module

#: Every ``Result.status`` a solver may return, and what it means.
STATUSES = {
    "converged": "a stopping test on the gradient or the objective change was met (gtol, ftol, zero gradient), "
                 "or no step changes the iterate and the objective while the model step is below the precision's "
                 "round-off (see unresolved)",
    "maxiter": "the iteration budget was used up; the last iterate is returned",
    "max_time": "the time budget (max_time_s) was used up; the last iterate is returned",
    "stalled": "the solver could not make progress (a failed line search, no acceptable damped step, an "
               "iteration that changed neither the iterate nor the objective) while its model promised a "
               "resolvable decrease: not a convergence test, often a wrong gradient",
    "failed": "the objective or gradient is not finite (at the start or during the run)",
    "noise": "the data misfit reached the misfit the noise alone leaves, as the terms' losses predict it from "
             "their noise level (--stop noise, multimodal_ip.validation.StopOnNoise); the last iterate is returned",
    "validation": "the held-out validation loss did not improve for `patience` iterations; the iterate with the "
                  "lowest validation loss is returned (see multimodal_ip.validation)",
}


@dataclass(frozen=True)
class Stop:
    """What :meth:`Solver.step` returns to end a run: a status of :data:`STATUSES` and a message.

    A plain string returned by ``step`` still means ``converged`` (a convergence test of the solver's own).

    Parameters
    ----------
    status : :obj:`str`
        One of :data:`STATUSES`; any other is a ``ValueError``.
    message : :obj:`str`
        Why the run ends, in words.
    """

    status: str
    message: str

    def __post_init__(self):
        if self.status not in STATUSES:
            msg = f"unknown solver status {self.status!r}; one of {', '.join(STATUSES)}"
            raise ValueError(msg)


def stalled(message: str) -> Stop:
    """A step that found no progress: never reported as convergence.

    Parameters
    ----------
    message : :obj:`str`
        What the step found.

    Returns
    -------
    :class:`Stop`
        ``Stop("stalled", message)``, for :meth:`Solver.step` to return.
    """
    return Stop("stalled", message)


def same_point(a, b) -> bool:
    """``a`` and ``b`` hold the same values (a step too short to change an iterate at its precision).

    Parameters
    ----------
    a, b : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Arrays of the same module.

    Returns
    -------
    flag : :obj:`bool`
        ``True`` when the shapes and every value are equal.
    """
    return a.shape == b.shape and bool(get_array_module(a).array_equal(a, b))


#: what a run's precision resolves, in units of its machine epsilon: a predicted decrease below ``ROUNDOFF_ULPS``
#: ulps of the objective (1.4e-14 relative in float64, 7.6e-6 in float32) cannot be told from round-off
ROUNDOFF_ULPS = 64
#: a model step shorter than ``STEP_ULPS`` ulps of the iterate (in norm) hardly changes it at its precision
STEP_ULPS = 4


def machine_epsilon(dtype) -> float:
    """Machine epsilon of ``dtype`` (of its real part when complex).

    Parameters
    ----------
    dtype : :obj:`numpy.dtype` or :obj:`str`
        A floating-point or complex dtype.

    Returns
    -------
    eps : :obj:`float`
        ``numpy.finfo(real dtype).eps``.
    """
    return float(np.finfo(np.ones(1, dtype).real.dtype).eps)


def unresolved(decrease: float, step_norm: float, objective: float, x_norm: float, dtype,
               largest_objective: float = 0.0) -> str:
    r"""Why a solver's model step at an iterate is below what precision ``dtype`` resolves, or ``""``.

    A solver that finds no step changing the iterate and decreasing the objective has then converged at round-off;
    otherwise it has stalled (often a wrong gradient: the model promises a decrease the objective does not show).
    With :math:`\epsilon` = :func:`machine_epsilon` (``dtype``), the step is unresolved when

    * its predicted ``decrease`` is at most ``ROUNDOFF_ULPS`` :math:`\epsilon\,|\Phi|`, or
    * its length ``step_norm`` is at most ``STEP_ULPS`` :math:`\epsilon\,\|x\|` (``inf``: not tested), or
    * the objective is at most ``ROUNDOFF_ULPS`` :math:`\epsilon^2` times ``largest_objective``, the largest
      value of the run: a zero-residual fit ends at the square of its residuals' round-off, where a predicted
      decrease is as large as the objective itself.

    Parameters
    ----------
    decrease : :obj:`float`
        Decrease of the objective the model predicts for the step (negative: none predicted; not tested).
    step_norm : :obj:`float`
        Norm of the step.
    objective : :obj:`float`
        Objective :math:`\Phi` at the iterate.
    x_norm : :obj:`float`
        Norm of the iterate.
    dtype : :obj:`numpy.dtype` or :obj:`str`
        Precision the run evaluates in.
    largest_objective : :obj:`float`, optional
        Largest objective value of the run (``0``: not tested).

    Returns
    -------
    reason : :obj:`str`
        One line saying which test the step fails, or ``""`` when the precision resolves it.
    """
    eps = machine_epsilon(dtype)
    name = np.dtype(np.ones(1, dtype).real.dtype).name
    if 0 <= decrease <= ROUNDOFF_ULPS * eps * abs(objective):
        return f"predicted decrease {decrease:.3g} below {name} round-off of the objective {objective:.6g}"
    if step_norm <= STEP_ULPS * eps * x_norm:
        return f"model step {step_norm:.3g} below {name} round-off of the iterate (norm {x_norm:.6g})"
    if abs(objective) <= ROUNDOFF_ULPS * eps**2 * largest_objective:
        return (f"objective {objective:.3g} at the {name} round-off floor of its largest value in the run "
                f"({largest_objective:.6g})")
    return ""
