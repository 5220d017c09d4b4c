"""The plugin manager: built-ins from ``DEFAULT_PLUGINS``, third parties from the entry-point group.

Set ``MMIP_DISABLE_PLUGINS=name1,name2`` to block plugins by name (entry-point name or
built-in module path). Each entry point loads in its own ``try``: a broken plugin is
recorded with its error and the others still load.
"""

__all__ = ["PluginInfo", "Registry", "get_plugin_manager", "get_registry", "reset", "DEFAULT_PLUGINS", "KINDS", "build_plugin_manager"]

import importlib
import importlib.metadata
import os
from dataclasses import asdict, dataclass
from functools import lru_cache

import pluggy

from . import hookspecs
from .errors import PluginLoadError, UnknownPluginError

DEFAULT_PLUGINS = (
    "multimodal_ip.solvers.lbfgs",
    "multimodal_ip.solvers.gauss_newton",
    "multimodal_ip.solvers.admm",
    "multimodal_ip.regularizers",
)
ENTRY_POINT_GROUP = "multimodal_ip"
DISABLE_ENV = "MMIP_DISABLE_PLUGINS"
KINDS = {
    "modality": "mmip_register_modalities",
    "solver": "mmip_register_solvers",
    "regularizer": "mmip_register_regularizers",
    "importer": "mmip_register_importers",
    "simulation": "mmip_register_simulations",
}


@dataclass(frozen=True)
class PluginInfo:
    """One row of ``mmip plugins``."""

    kind: str
    name: str
    dist: str
    version: str
    status: str
    error: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


class Registry:
    """What every loaded plugin registered, by kind and name, plus the load report."""

    def __init__(self, pm: pluggy.PluginManager, report: list, dists: dict | None = None):
        self.pm = pm
        dists = dists or {}
        self.items: dict[str, dict] = {kind: {} for kind in KINDS}
        self.report = list(report)
        for kind, hook in KINDS.items():
            caller = getattr(pm.hook, hook)
            for impl in caller.get_hookimpls():
                dist, version = dists.get(impl.plugin_name) or _builtin()

                def register(name, obj, _kind=kind, _impl=impl, _dist=dist, _version=version):
                    if name in self.items[_kind]:
                        prev = self.items[_kind][name][1]
                        msg = f"{_kind} {name!r} registered twice: by {prev} and by {_impl.plugin_name}"
                        raise PluginLoadError(msg)
                    self.items[_kind][name] = (obj, _impl.plugin_name)
                    self.report.append(PluginInfo(_kind, name, _dist, _version, "ok"))

                try:
                    impl.function(register=register)
                except Exception as exc:  # noqa: BLE001 - isolate a faulty plugin, record why
                    self.report.append(PluginInfo(kind, impl.plugin_name, dist, version, "error", _one_line(exc)))

    def get(self, kind: str, name: str):
        """The object registered as ``name`` of ``kind``; a clear error listing the alternatives otherwise."""
        try:
            return self.items[kind][name][0]
        except KeyError:
            have = ", ".join(sorted(self.items.get(kind, {}))) or "(none)"
            msg = f"no {kind} {name!r}; installed: {have} (see `mmip plugins`)"
            raise UnknownPluginError(msg) from None

    def names(self, kind: str) -> list:
        return sorted(self.items[kind])

    def rows(self) -> list:
        return sorted(self.report, key=lambda r: (r.kind, r.name))


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _builtin():
    from . import __version__

    return ("multimodal_ip", __version__)


def _blocked() -> set:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def _load_entry_points(pm, report, dists):
    blocked = _blocked()
    eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    for ep in eps:
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        if ep.name in blocked:
            pm.set_blocked(ep.name)
            report.append(PluginInfo("plugin", ep.name, dist, version, "blocked"))
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
            dists[ep.name] = (dist, version)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not break the others
            report.append(PluginInfo("plugin", ep.name, dist, version, "error", _one_line(exc)))


def build_plugin_manager(extra_plugins=(), load_entry_points=True):
    """A fresh plugin manager, its load report and ``{plugin: (dist, version)}`` (tests use this)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    report, dists = [], {}
    blocked = _blocked()
    for modname in DEFAULT_PLUGINS:
        if modname in blocked:
            pm.set_blocked(modname)
            report.append(PluginInfo("plugin", modname, "multimodal_ip", "", "blocked"))
            continue
        pm.register(importlib.import_module(modname), name=modname)
    if load_entry_points:
        _load_entry_points(pm, report, dists)
    for plugin in extra_plugins:
        pm.register(plugin)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        msg = f"a plugin implements an unknown hook: {exc}"
        raise PluginLoadError(msg) from exc
    return pm, report, dists


@lru_cache(maxsize=1)
def get_registry() -> Registry:
    """The process-wide registry (built on first use, not at import)."""
    return Registry(*build_plugin_manager())


def get_plugin_manager() -> pluggy.PluginManager:
    return get_registry().pm


def reset() -> None:
    """Forget the cached registry (after installing or blocking plugins at run time)."""
    get_registry.cache_clear()
