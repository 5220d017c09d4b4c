"""Lazy package exports (PEP 562): a package's public names imported on first use, so that importing the package
(a plugin's entry point, ``mmip --help``, ``mmip plugins``) does not pay for pylops, scipy or JAX
(docs/architecture.md, "Start-up time")."""

__all__ = ["lazy_exports"]

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping


def lazy_exports(package: str, where: Mapping[str, str], public: Iterable[str]) -> tuple[Callable, Callable]:
    """The module-level ``__getattr__`` and ``__dir__`` of a package whose names live in its submodules.

    Parameters
    ----------
    package : :obj:`str`
        The package's ``__name__``.
    where : :obj:`dict`
        Public name -> the submodule (relative, without the dot) that defines it.
    public : iterable of :obj:`str`
        The package's ``__all__``.

    Returns
    -------
    getattr, dir : callable
        ``__getattr__(name)`` imports the name's submodule on first use and keeps the value in the package (later
        lookups are plain attribute reads; an unknown name raises :class:`AttributeError`); ``__dir__()`` lists the
        package's globals and its public names.
    """
    public = tuple(public)

    def __getattr__(name: str):
        if name in where:
            value = getattr(importlib.import_module(f".{where[name]}", package), name)
            vars(sys.modules[package])[name] = value
            return value
        msg = f"module {package!r} has no attribute {name!r}"
        raise AttributeError(msg)

    def __dir__() -> list:
        return sorted(set(vars(sys.modules[package])) | set(public))

    return __getattr__, __dir__
