"""No import cycle among the modules of one distribution (the core and each plugin), found by a static AST scan.

An edge ``a -> b`` is an import in ``a`` of a module ``b`` of the same package (imports under ``if TYPE_CHECKING:``
do not run and are skipped). ``from pkg import name`` points at ``pkg.name`` when that is a submodule, else at
``pkg`` itself (the name is then defined by ``pkg/__init__.py``, which must have finished). The core is scanned at
module level: its function-level imports are the deliberate way to break an import-time cycle (``operators/``,
``cli``). Plugin modules are scanned with their function-level imports too, since one lazy edge still makes two
modules depend on each other (``mmip_tomography.plugin`` imported ``.simulate`` inside a hook while ``.simulate``
imported ``.plugin``: issue 29).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [ROOT / "src" / "multimodal_ip", *sorted(p.parent for p in ROOT.glob("plugins/*/src/*/__init__.py"))]


def _is_type_checking(test) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(body, lazy):
    """The import statements of a module body: every nesting level (``try``, ``if``, ``with``, classes) but
    ``if TYPE_CHECKING:``, and function bodies only when ``lazy``."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _import_nodes(node.orelse, lazy)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not lazy:
            continue
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt | ast.ExceptHandler):
                    yield from _import_nodes([child], lazy)


def import_graph(package: Path, lazy: bool) -> dict:
    """``{module: set of modules of the same package it imports}`` for the package folder ``package``."""
    files = {}
    for f in package.rglob("*.py"):
        parts = list(f.relative_to(package.parent).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    graph: dict = {m: set() for m in files}
    for module, f in files.items():
        here = module.split(".") if f.name == "__init__.py" else module.split(".")[:-1]
        for node in _import_nodes(ast.parse(f.read_text(encoding="utf-8")).body, lazy):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else (node.module or "")
                names = [f"{base}.{a.name}" for a in node.names]
                targets = [n for n in names if n in files]
                if len(targets) < len(names):  # a name defined in ``base`` itself
                    targets.append(base)
            graph[module] |= {t for t in targets if t in files and t != module}
    return graph


def cycles(graph: dict) -> list:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict = {}
    low: dict = {}
    stack: list = []
    found = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = [stack.pop()]
            while component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _describe(graph, component) -> str:
    return "; ".join(f"{m} -> {', '.join(sorted(graph[m] & set(component)))}" for m in component)


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_no_import_cycle(package):
    lazy = package.name != "multimodal_ip"
    graph = import_graph(package, lazy=lazy)
    assert len(graph) > 1
    found = cycles(graph)
    assert not found, "import cycles " + ("(function-level imports included)" if lazy else "(module level)") + \
        ": " + " | ".join(_describe(graph, c) for c in found)


def _package(tmp_path, files: dict) -> Path:
    pkg = tmp_path / "pkg"
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    return pkg


def test_scan_finds_the_tomography_cycle(tmp_path):
    """The cycle this test was written for: a hook's lazy import one way, a module-level import the other."""
    pkg = _package(tmp_path, {
        "__init__.py": "from .geometry import Geometry\n",
        "geometry.py": "class Geometry: ...\n",
        "plugin.py": "from .geometry import Geometry\n\ndef attenuation(): ...\n\n"
                     "def register(r):\n    from .simulate import CASES\n",
        "simulate.py": "from .geometry import Geometry\nfrom .plugin import attenuation\nCASES = {}\n",
    })
    assert cycles(import_graph(pkg, lazy=True)) == [["pkg.plugin", "pkg.simulate"]]
    assert cycles(import_graph(pkg, lazy=False)) == []


def test_scan_resolves_package_names_and_skips_type_checking(tmp_path):
    pkg = _package(tmp_path, {
        "__init__.py": "from .sub.a import A\nVERSION = 1\n",
        "sub/__init__.py": "",
        "sub/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..b import B\nclass A: ...\n",
        "b.py": "from .sub import a\nfrom . import VERSION\n",  # VERSION lives in __init__: b -> pkg
        "c.py": "import pkg.b\ntry:\n    from .sub.a import A\nexcept ImportError:\n    A = None\n",
    })
    graph = import_graph(pkg, lazy=False)
    assert graph["pkg.sub.a"] == set()
    assert graph["pkg.b"] == {"pkg.sub.a", "pkg"}
    assert graph["pkg.c"] == {"pkg.b", "pkg.sub.a"}
    assert cycles(graph) == []
    (pkg / "sub" / "a.py").write_text("from pkg import VERSION\nclass A: ...\n")  # pkg -> a -> pkg
    assert cycles(import_graph(pkg, lazy=False)) == [["pkg", "pkg.sub.a"]]
