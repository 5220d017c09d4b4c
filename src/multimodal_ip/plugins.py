"""The plugin manager: built-ins from ``DEFAULT_PLUGINS``, third parties from the entry-point group.

Set ``MMIP_DISABLE_PLUGINS=name1,name2`` to block plugins by name (entry-point name or
built-in module path). Each entry point loads in its own ``try``: a broken plugin is
recorded with its error and the others still load.
"""

__all__ = ["PluginInfo", "Registry", "get_plugin_manager", "get_registry", "reset", "DEFAULT_PLUGINS", "KINDS",
           "build_plugin_manager"]

import importlib
import importlib.metadata
import os
from dataclasses import asdict, dataclass
from functools import lru_cache

import pluggy

from . import hookspecs
from .errors import PluginLoadError, UnknownPluginError, one_line

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
    "report": "mmip_register_reports",
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
    """What every loaded plugin registered, by kind and name, plus the load report.

    A name claimed by two plugins is refused for both (the report names both distributions; block one with
    ``MMIP_DISABLE_PLUGINS``). A modality that does not satisfy the contract
    (:func:`~multimodal_ip.modality.check_modality_contract`) is listed with the reason and not used.
    """

    def __init__(self, pm: pluggy.PluginManager, report: list, dists: dict | None = None):
        from .modality import check_modality_contract

        self.pm = pm
        dists = dists or {}
        self.items: dict[str, dict] = {kind: {} for kind in KINDS}
        self.report = list(report)
        self.refused: dict[str, dict] = {kind: {} for kind in KINDS}
        claims: dict[tuple, list] = {}
        for kind, hook in KINDS.items():
            caller = getattr(pm.hook, hook)
            for impl in caller.get_hookimpls():
                dist, version = dists.get(impl.plugin_name) or _builtin()
                mine: list = []

                def register(name, obj, _mine=mine):
                    _mine.append((str(name), obj))

                try:
                    impl.function(register=register)
                except Exception as exc:  # noqa: BLE001 - isolate a faulty plugin, record why
                    self.report.append(PluginInfo(kind, impl.plugin_name, dist, version, "error", _where(exc)))
                    continue
                for name, obj in mine:
                    if kind == "modality":
                        try:
                            obj = check_modality_contract(obj).obj
                        except PluginLoadError as exc:
                            self.report.append(PluginInfo(kind, name, dist, version, "error", str(exc)))
                            self.refused[kind][name] = str(exc)
                            continue
                    claims.setdefault((kind, name), []).append((obj, impl.plugin_name, dist, version))
        for (kind, name), who in claims.items():
            if len(who) == 1:
                obj, plugin, dist, version = who[0]
                self.items[kind][name] = (obj, plugin)
                self.report.append(PluginInfo(kind, name, dist, version, "ok"))
                continue
            names = " and ".join(f"{d} ({p})" for _, p, d, _ in who)
            why = (f"{kind} {name!r} is claimed by {names}: refused for all; block all but one with "
                   f"{DISABLE_ENV}=<plugin>")
            self.refused[kind][name] = why
            for _, _, dist, version in who:
                self.report.append(PluginInfo(kind, name, dist, version, "error", why))

    def get(self, kind: str, name: str):
        """The object registered as ``name`` of ``kind``; a clear error listing the alternatives otherwise."""
        try:
            return self.items[kind][name][0]
        except KeyError:
            if name in self.refused.get(kind, {}):
                raise UnknownPluginError(self.refused[kind][name]) from None
            have = ", ".join(sorted(self.items.get(kind, {}))) or "(none)"
            msg = f"no {kind} {name!r}; installed: {have} (see `mmip plugins`)"
            raise UnknownPluginError(msg) from None

    def names(self, kind: str) -> list:
        return sorted(self.items[kind])

    def rows(self) -> list:
        return sorted(self.report, key=lambda r: (r.kind, r.name))

    @property
    def errors(self) -> list:
        """Report rows of plugins that failed to load, were refused, or registered something invalid."""
        return [r for r in self.rows() if r.status == "error"]


def _one_line(exc: BaseException) -> str:
    return one_line(f"{type(exc).__name__}: {exc}")


def _where(exc: BaseException) -> str:
    """``file:line: Type: message`` of where an exception was raised (the innermost frame)."""
    import traceback

    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}: {_one_line(exc)}"
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return _one_line(exc)
    inner = [f for f in frames if "importlib" not in f.filename] or frames
    return f"{inner[-1].filename}:{inner[-1].lineno}: {_one_line(exc)}"


def _check_hooks(module, name):
    """Refuse a plugin module with a misspelled hook or a hook function without ``@hookimpl`` (its own error,
    not every command's)."""
    known = set(KINDS.values())
    for attr in dir(module):
        fn = getattr(module, attr, None)
        marked = callable(fn) and hasattr(fn, f"{hookspecs.PROJECT}_impl")
        if marked and attr not in known:
            hint = min(known, key=lambda k: _distance(k, attr))
            msg = f"{name}: unknown hook {attr!r} (did you mean {hint!r}?); hooks: {', '.join(sorted(known))}"
            raise PluginLoadError(msg)
        if callable(fn) and attr in known and not marked:
            msg = f"{name}: {attr}() is not decorated with @hookimpl (from multimodal_ip import hookimpl)"
            raise PluginLoadError(msg)


def _distance(a: str, b: str) -> int:
    import difflib

    return -int(1000 * difflib.SequenceMatcher(None, a, b).ratio())


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
            _check_hooks(module, ep.name)
            pm.register(module, name=ep.name)
            dists[ep.name] = (dist, version)
        except PluginLoadError as exc:
            report.append(PluginInfo("plugin", ep.name, dist, version, "error", str(exc)))
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not break the others
            report.append(PluginInfo("plugin", ep.name, dist, version, "error", _where(exc)))


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
        name = getattr(plugin, "__name__", repr(plugin))
        try:
            _check_hooks(plugin, name)
            pm.register(plugin)
        except (PluginLoadError, ValueError) as exc:
            report.append(PluginInfo("plugin", name, "?", "?", "error", str(exc)))
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
