__all__ = ["Solver", "Result", "History", "SolverState", "solve", "solve_staged", "get_solver"]

from .base import History, Result, Solver, SolverState
from .staged import solve_staged


def get_solver(name: str):
    """The ``solve`` function registered as ``name`` (built-in or third-party plugin)."""
    from ..plugins import get_registry

    return get_registry().get("solver", name)


def solve(problem, x0, solver: str = "lbfgs", **options) -> Result:
    """Solve ``problem`` from ``x0`` with the solver plugin ``solver``; one argument swaps solvers."""
    return get_solver(solver)(problem, x0, **options)

