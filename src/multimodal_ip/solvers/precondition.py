"""The solvers' ``precondition`` option: which values it takes, and what ``"auto"`` becomes for a problem."""

__all__ = ["PRECONDITIONERS", "check_precondition", "resolve_precondition"]

from ..errors import SolverError

#: values of the ``precondition`` option of L-BFGS and Gauss-Newton
PRECONDITIONERS = ("none", "curvature", "auto")


def check_precondition(solver: str, value: str) -> str:
    """``value`` when it is one of :data:`PRECONDITIONERS`, else :class:`~multimodal_ip.errors.SolverError`.

    Parameters
    ----------
    solver : :obj:`str`
        The solver's name, for the message.
    value : :obj:`str`
        The option's value.

    Returns
    -------
    :obj:`str`
    """
    if value not in PRECONDITIONERS:
        msg = f"{solver} precondition must be one of {', '.join(PRECONDITIONERS)}; got {value!r}"
        raise SolverError(msg)
    return value


def resolve_precondition(solver: str, value: str, lin) -> str:
    """``"curvature"`` or ``"none"`` for the problem linearized as ``lin``: ``"auto"`` is ``"curvature"`` when every
    data term offers a curvature and every variable that moves has one; ``"curvature"`` refuses a problem where
    some variable that moves has none (a term that offers none then adds nothing to the others').

    Parameters
    ----------
    solver : :obj:`str`
        The solver's name, for the message.
    value : :obj:`str`
        The option's value (:data:`PRECONDITIONERS`).
    lin : :class:`~multimodal_ip.problem.Linearization`
        The problem at the start point.

    Returns
    -------
    :obj:`str`
        ``"curvature"`` or ``"none"``.
    """
    if value == "none":
        return value
    curv = lin.curvature()
    missing = curv.missing() if curv is not None else list(lin._problem.space.names)
    if value == "auto":
        return "curvature" if not missing and curv is not None and curv.complete else "none"
    if not missing:
        return "curvature"
    msg = (f"{solver} precondition=curvature: variable(s) {', '.join(missing)} have no curvature (no data term "
           "offers one, docs/plugins.md); freeze them or use precondition=none")
    raise SolverError(msg)
