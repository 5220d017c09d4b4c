__all__ = ["Solver", "Result", "History", "SolverState", "Stop", "STATUSES", "stalled", "solve", "solve_staged",
           "get_solver",
           "declare_options", "check_solver_options", "Handover"]

from .base import STATUSES, Handover, History, Result, Solver, SolverState, Stop, stalled
from .staged import solve_staged


def declare_options(fn, *classes, **extra):
    """Attach to a solve function the ``{option: default}`` it accepts (from the ``__init__`` of ``classes``), so
    that options can be checked by name and type before a run.

    Parameters
    ----------
    fn : callable
        The solve function a plugin registers.
    *classes : :obj:`type`
        Solver classes whose ``__init__`` keywords (after ``problem``) are the options, defaults included.
    **extra
        Further ``option=default`` pairs.

    Returns
    -------
    callable
        ``fn``, with the attribute ``options``.
    """
    import inspect

    opts: dict = {}
    for cls in classes:
        for klass in reversed(cls.__mro__):
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            for p in list(inspect.signature(init).parameters.values())[2:]:  # self, problem
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                    opts[p.name] = p.default
    opts.pop("callback", None)
    opts.pop("stopping", None)  # given by the run (--stop validation), not a solver option
    opts.update(extra)
    fn.options = opts
    return fn


def check_solver_options(name: str, fn, options: dict) -> None:
    """Refuse, with one line, an option the solver does not take or a value of the wrong type or sign.

    Parameters
    ----------
    name : :obj:`str`
        The solver's registered name, for the message.
    fn : callable
        Its solve function; one without ``options`` (:func:`declare_options`) checks its own.
    options : :obj:`dict`
        The options of the run.

    Raises
    ------
    ConfigError
        An unknown option, or a value of the wrong type or sign.
    """
    from ..errors import ConfigError
    from .alternating import STAGED_OPTIONS, check_staged_options

    check_staged_options(options)  # the staged run's own options (calibration by a term's estimator)
    known = getattr(fn, "options", None)
    if known is None:  # a third-party solver that declares nothing: it checks its own options
        return
    known = dict(STAGED_OPTIONS, **known)
    for k, v in options.items():
        if k not in known:
            msg = f"solver {name!r} has no option {k!r}; it takes: {', '.join(sorted(known))}"
            raise ConfigError(msg)
        default = known[k]
        if not _option_value_ok(default, v):
            msg = f"solver {name!r} option {k}={v!r}: expected {_option_kind(default)}"
            raise ConfigError(msg)


def _option_value_ok(default, v) -> bool:
    """Whether ``v`` fits an option whose default is ``default`` (its type, and its sign for numbers)."""
    import math

    if isinstance(default, bool) or isinstance(v, bool):
        return isinstance(v, bool) and (default is None or isinstance(default, bool))
    if isinstance(default, int):
        return isinstance(v, int) and v >= 1
    if isinstance(default, float) or default is None and isinstance(v, (int, float)):
        return isinstance(v, (int, float)) and math.isfinite(v) and v >= 0
    if isinstance(default, str):
        return isinstance(v, str)
    return True


def _option_kind(default) -> str:
    """What an option whose default is ``default`` expects, for a message."""
    if isinstance(default, int) and not isinstance(default, bool):
        return "a positive integer"
    if isinstance(default, float) or default is None:
        return "a finite number >= 0"
    return type(default).__name__


def get_solver(name: str):
    """The ``solve`` function registered as ``name`` (built-in or third-party plugin).

    Parameters
    ----------
    name : :obj:`str`
        The solver's registered name; an unknown one is an :class:`~multimodal_ip.errors.UnknownPluginError`.

    Returns
    -------
    callable
        ``solve(problem, x0, **options) -> Result``.
    """
    from ..plugins import get_registry

    return get_registry().get("solver", name)


def solve(problem, x0, solver: str = "lbfgs", **options) -> Result:
    """Solve ``problem`` from ``x0`` with the solver plugin ``solver``; one argument swaps solvers (BLAS on
    ``MMIP_BLAS_THREADS`` threads meanwhile, see ``multimodal_ip.backend.solver_threads``).

    Parameters
    ----------
    problem : :class:`~multimodal_ip.problem.objective.Objective`
        The objective to minimise (a :class:`~multimodal_ip.JointProblem`, or a composition around one).
    x0 : :obj:`numpy.ndarray`
        The start point, packed by ``problem.space`` (:meth:`~multimodal_ip.VariableSpace.pack`).
    solver : :obj:`str`, optional
        A registered solver: ``lbfgs``, ``gauss-newton``, ``admm`` or a plugin's.
    **options
        The solver's options (``maxiter``, ``callback``, ...; a solver's ``options`` attribute lists them).

    Returns
    -------
    :class:`Result`
        The solution (packed ``x`` and unpacked ``arrays``), the history and the status.
    """
    from ..backend import solver_threads

    with solver_threads():
        return get_solver(solver)(problem, x0, **options)

