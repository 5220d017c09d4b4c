"""Solvers see an objective only through the typed ``Objective`` protocol (issue 29), checked by mypy; the MPI and
ADMM objectives are compositions around an Objective, not subclasses of a problem; nothing outside its module
assigns to a linearization's fields."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOLVERS = ROOT / "src/multimodal_ip/solvers"
SOURCES = [ROOT / "src", *sorted(ROOT.glob("plugins/*/src")), ROOT / "examples", ROOT / "benchmarks"]

CONFORMS = '''
from multimodal_ip import JointProblem
from multimodal_ip.distributed import DistributedProblem
from multimodal_ip.problem import Objective, ProximalObjective


def objectives(a: JointProblem, b: DistributedProblem, c: ProximalObjective) -> list[Objective]:
    return [a, b, c, a.with_frozen(()), b.with_regularizers(()), c.with_frozen(())]
'''

PEEKING = '''
from multimodal_ip.solvers.base import Solver


class Peeking(Solver):
    """A solver that reaches past the protocol (into the terms of a JointProblem)."""

    def step(self):
        return self.problem.terms
'''


def _mypy(*paths):
    api = pytest.importorskip("mypy.api", reason="mypy is in the test extras (make test installs it)")
    out, err, code = api.run(["--config-file", str(ROOT / "pyproject.toml"), "--check-untyped-defs",
                              *map(str, paths)])
    return code, out + err


def test_solvers_use_only_the_objective_protocol(tmp_path):
    """mypy over solvers/ with the bodies of untyped methods checked: every use of ``self.problem`` is a member of
    ``Objective``; and the problem classes and compositions are Objectives to mypy."""
    (tmp_path / "conforms.py").write_text(CONFORMS)
    code, out = _mypy(SOLVERS, tmp_path / "conforms.py")
    assert code == 0, out


def test_mypy_refuses_a_solver_that_reaches_past_the_protocol(tmp_path):
    (tmp_path / "peeking.py").write_text(PEEKING)
    code, out = _mypy(tmp_path / "peeking.py")
    assert code == 1 and '"Objective" has no attribute "terms"' in out, out


def _modules():
    for base in SOURCES:
        for path in sorted(base.rglob("*.py")):
            yield path, ast.parse(path.read_text(), str(path))


def test_no_subclass_of_a_problem_class():
    problems = {"JointProblem", "DistributedProblem", "ProximalObjective"}
    found = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name}" for path, tree in _modules()
             for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
             for b in node.bases if (b.id if isinstance(b, ast.Name) else getattr(b, "attr", None)) in problems]
    assert found == []


def test_no_assignment_to_a_linearization_outside_its_module():
    """``lin.<field> = ...`` (or ``+=``) on a name holding a linearization (``lin``, ``lin_new``, ``self.lin``)
    anywhere but the module that defines ``Linearization``; the dataclass is frozen besides."""
    from multimodal_ip.problem import Linearization

    home = Path(__import__(Linearization.__module__, fromlist=["_"]).__file__).resolve()
    fields = set(Linearization.__dataclass_fields__)

    def holder(node):
        name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")
        return "lin" in name.split("_")

    found = []
    for path, tree in _modules():
        if path.resolve() == home:
            continue
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign) else []
            found += [f"{path.relative_to(ROOT)}:{node.lineno}" for t in targets
                      if isinstance(t, ast.Attribute) and t.attr in fields and holder(t.value)]
    assert found == []


def test_solver_init_does_not_reach_into_a_share():
    """``Solver.__init__`` asks the protocol (``has_holdout``), not ``problem.local`` or ``problem.terms``."""
    import inspect

    from multimodal_ip.solvers.base import Solver

    src = inspect.getsource(Solver.__init__)
    assert ".local" not in src and "terms" not in src and "getattr(problem" not in src
