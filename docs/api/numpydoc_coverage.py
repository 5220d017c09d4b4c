"""How many public classes and functions have a numpydoc ``Parameters`` section (and functions a ``Returns``).

Public: every class or function named in the ``__all__`` of a module of ``multimodal_ip`` or of a plugin
distribution (``mmip_*``), counted once where it is defined. A class's parameters are those of ``__init__``; one that
takes none (besides ``self``) needs no section and is counted apart. ``--reference``: only the modules the API
reference documents (the ``.. apimodule::`` lines of ``docs/api/*.rst``). Run::

    .venv/bin/python docs/api/numpydoc_coverage.py [--reference] [--list]
"""

import importlib
import inspect
import pkgutil
import re
import sys
from pathlib import Path

PACKAGES = ["multimodal_ip", "mmip_ptychography", "mmip_fluorescence", "mmip_tomography", "mmip_scanprobe",
            "mmip_paper"]
SKIP = ("multimodal_ip.cli", "multimodal_ip._entry", "multimodal_ip.__main__")  # the command line, not an API


def section(doc: str, name: str) -> bool:
    return re.search(rf"^\s*{name}\s*\n\s*-{{3,}}\s*$", doc or "", re.M) is not None


def takes_parameters(obj) -> bool:
    if inspect.isclass(obj):
        if getattr(obj, "_is_protocol", False):  # a typing.Protocol is never instantiated
            return False
        owner = next(k for k in obj.__mro__ if "__init__" in vars(k))
        if owner.__module__ == "builtins":  # object, Exception: nothing of its own to document
            return False
    try:
        sig = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)
    except (TypeError, ValueError):
        return True
    return any(p.name not in ("self", "cls") for p in sig.parameters.values())


def reference_modules() -> list:
    pages = sorted(Path(__file__).parent.glob("*.rst"))
    return [m for p in pages for m in re.findall(r"^\.\. apimodule:: (\S+)", p.read_text(), re.M)]


def all_modules() -> list:
    names = []
    for top in PACKAGES:
        pkg = importlib.import_module(top)
        names += [top] + [m.name for m in pkgutil.walk_packages(pkg.__path__, top + ".")]
    return names


def public_objects(names):
    seen = {}
    for modname in names:
        if modname.startswith(SKIP) or any(part.startswith("_") for part in modname.split(".")[1:]):
            continue
        mod = importlib.import_module(modname)
        for n in getattr(mod, "__all__", ()):
            obj = getattr(mod, n, None)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__.split(".")[0] in PACKAGES:
                seen.setdefault(id(obj), (f"{obj.__module__}.{obj.__qualname__}", obj))
    return sorted(seen.values(), key=lambda t: t[0])


def main(argv) -> int:
    modules = reference_modules() if "--reference" in argv else all_modules()
    objects = public_objects(modules)
    rows = []
    for qualname, obj in objects:
        doc = inspect.getdoc(obj) or ""
        if inspect.isclass(obj) and not section(doc, "Parameters"):
            doc += "\n" + ((inspect.getdoc(obj.__init__) if "__init__" in vars(obj) else "") or "")
        rows.append((qualname, inspect.isclass(obj), takes_parameters(obj), section(doc, "Parameters"),
                     section(doc, "Returns") or section(doc, "Yields")))
    with_params = [r for r in rows if r[2]]
    documented = [r for r in with_params if r[3]]
    functions = [r for r in rows if not r[1]]
    returns = [r for r in functions if r[4]]
    print(f"public classes and functions: {len(rows)} ({sum(r[1] for r in rows)} classes, {len(functions)} functions)")
    print(f"  in {len(modules)} modules; with any docstring: {sum(bool(inspect.getdoc(o)) for _, o in objects)}")
    print(f"  taking parameters: {len(with_params)}; with a numpydoc Parameters section: {len(documented)} "
          f"({100 * len(documented) / max(len(with_params), 1):.0f} %)")
    print(f"  functions with a Returns section: {len(returns)} of {len(functions)} "
          f"({100 * len(returns) / max(len(functions), 1):.0f} %)")
    if "--list" in argv:
        for qualname, _, params, has_p, _ in rows:
            print(f"{'ok ' if has_p or not params else '-- '} {qualname}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
