"""Every public class and function of the core and the plugins is documented the numpydoc way (issue 29): a
``Parameters`` section when it takes any, a ``Returns`` (or ``Yields``) section when a function returns a value.
The counting is the one of ``docs/api/numpydoc_coverage.py``."""

import ast
import importlib.util
import inspect
import textwrap
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "api" / "numpydoc_coverage.py"


def _coverage():
    spec = importlib.util.spec_from_file_location("numpydoc_coverage", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _returns_a_value(fn) -> bool:
    """A ``return <value>`` or ``yield <value>`` (not ``None``) in the function's own body (nested functions
    excluded): a context manager's bare ``yield`` gives nothing to document."""
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):  # made at run time (e.g. a numba dispatcher's wrapper): judged by its docstring
        return False
    tree = ast.parse(textwrap.dedent(source))
    body = tree.body[0]
    nodes = [body]
    while nodes:
        node = nodes.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                continue
            if isinstance(child, ast.YieldFrom) or (isinstance(child, ast.Yield) and child.value is not None):
                return True
            if isinstance(child, ast.Return) and child.value is not None and not (
                    isinstance(child.value, ast.Constant) and child.value.value is None):
                return True
            nodes.append(child)
    return False


def test_every_public_object_has_its_numpydoc_sections():
    cov = _coverage()
    missing = []
    for name, obj in cov.public_objects(cov.all_modules()):
        doc = inspect.getdoc(obj) or ""
        if cov.takes_parameters(obj) and not cov.section(doc, "Parameters"):
            missing.append(f"{name}: no Parameters section")
        if inspect.isfunction(obj) and _returns_a_value(obj) and not (
                cov.section(doc, "Returns") or cov.section(doc, "Yields")):
            missing.append(f"{name}: returns a value but has no Returns section")
    assert not missing, "\n".join(missing)
