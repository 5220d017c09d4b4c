"""The plugin manager: built-ins from ``DEFAULT_PLUGINS``, third parties from the entry-point group.

Set ``MMIP_DISABLE_PLUGINS=name1,dist:name2`` to block plugins: an entry-point name (every distribution's entry
point of that name), ``dist:entry`` (one distribution's entry point) or a built-in module path; a name that matches
nothing gets one warning line. Entry points are identified by (distribution, name): a name declared by two
distributions is a conflict, and neither loads until all but one are blocked. Each entry point loads in its own
``try`` (``BaseException``: a plugin's ``sys.exit`` or its own ``KeyboardInterrupt`` is its failure; only a real
Ctrl-C interrupts), with its stdout sent to stderr: a broken plugin is recorded with its error and the others still
load.
"""

__all__ = ["PluginInfo", "Registry", "get_plugin_manager", "get_registry", "reset", "DEFAULT_PLUGINS", "KINDS",
           "build_plugin_manager"]

import importlib
import importlib.metadata
import os
import re
import sys
from dataclasses import asdict, dataclass
from functools import lru_cache, partial

import pluggy

from . import hookspecs
from ._plugin_boundary import failure_line as _failure
from ._plugin_boundary import run_plugin_code as _run_plugin_code
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
    "exporter": "mmip_register_exporters",
    "simulation": "mmip_register_simulations",
    "report": "mmip_register_reports",
    "command": "mmip_register_commands",
}


@dataclass(frozen=True)
class PluginInfo:
    """One row of ``mmip plugins``.

    Parameters
    ----------
    kind : :obj:`str`
        What was registered (a key of :data:`KINDS`), or ``plugin`` for the plugin itself.
    name : :obj:`str`
        The registered name, or the plugin's.
    dist, version : :obj:`str`
        The distribution that registered it.
    status : :obj:`str`
        ``ok``, ``error`` or ``blocked``.
    error : :obj:`str`, optional
        Why, when not ``ok``: one line.
    """

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
    (:func:`~multimodal_ip.modality.check_modality_contract`) is listed with the reason and not used. A script
    gets the process-wide one from :func:`get_registry`.

    Parameters
    ----------
    pm : :class:`pluggy.PluginManager`
        The plugin manager with every plugin loaded (:func:`build_plugin_manager`).
    report : :obj:`list` of :class:`PluginInfo`
        The load report so far (plugins that failed to import).
    dists : :obj:`dict`, optional
        ``{plugin: (distribution, version)}``, to name who registered what.
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

                _, exc = _run_plugin_code(partial(impl.function, register=register))
                if exc is not None:  # isolate a faulty plugin (SystemExit included), record why
                    self.report.append(PluginInfo(kind, impl.plugin_name, dist, version, "error",
                                                  _failure(exc, f"in {hook}()")))
                    continue
                for name, obj in mine:
                    if kind == "modality":
                        info, exc = _run_plugin_code(partial(check_modality_contract, obj))
                        if exc is not None:
                            why = _failure(exc, "checking the modality contract")
                            self.report.append(PluginInfo(kind, name, dist, version, "error", why))
                            self.refused[kind][name] = why
                            continue
                        obj = info.obj
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
        """The object registered as ``name`` of ``kind``; a clear error listing the alternatives otherwise.

        Parameters
        ----------
        kind : :obj:`str`
            One of :data:`KINDS`: ``modality``, ``solver``, ``regularizer``, ``importer``, ...
        name : :obj:`str`
            The registered name, e.g. ``ptychography`` or ``lbfgs``.

        Returns
        -------
        :obj:`object`
            What the plugin registered; an unknown or refused name is an
            :class:`~multimodal_ip.errors.UnknownPluginError` listing the installed ones.
        """
        try:
            return self.items[kind][name][0]
        except KeyError:
            if name in self.refused.get(kind, {}):
                raise UnknownPluginError(self.refused[kind][name]) from None
            have = ", ".join(sorted(self.items.get(kind, {}))) or "(none)"
            msg = f"no {kind} {name!r}; installed: {have} (see `mmip plugins`)"
            raise UnknownPluginError(msg) from None

    def names(self, kind: str) -> list:
        """The registered names of ``kind``, sorted."""
        return sorted(self.items[kind])

    def rows(self) -> list:
        """The load report (:class:`PluginInfo`), sorted by kind and name: the table of ``mmip plugins``."""
        return sorted(self.report, key=lambda r: (r.kind, r.name))

    @property
    def errors(self) -> list:
        """Report rows of plugins that failed to load, were refused, or registered something invalid."""
        return [r for r in self.rows() if r.status == "error"]


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


def _dist_key(dist: str) -> str:
    """A distribution name as packaging compares it (``Mmip_Foo.bar`` -> ``mmip-foo-bar``)."""
    return re.sub(r"[-_.]+", "-", dist).lower()


def _blocked() -> set:
    """The names in ``MMIP_DISABLE_PLUGINS``, ``dist:entry`` ones with the distribution normalised."""
    out = set()
    for item in os.environ.get(DISABLE_ENV, "").split(","):
        dist, sep, entry = item.strip().rpartition(":")
        if entry.strip():
            out.add(f"{_dist_key(dist.strip())}:{entry.strip()}" if sep else entry.strip())
    return out


def _entry_points() -> dict:
    """``{entry-point name: [(entry point, dist, version), ...]}`` in ``sys.path`` order, one row per
    (distribution, name, target)."""
    out: dict = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        rows = out.setdefault(ep.name, [])
        if not any(d == dist and getattr(e, "value", e) == getattr(ep, "value", ep) for e, d, _ in rows):
            rows.append((ep, dist, version))
    return out


def _conflict(name: str, rows: list) -> str:
    """The message of an entry-point name declared by several distributions (the same whatever the path order)."""
    who = sorted(f"{d} {v}" for _, d, v in rows)
    keys = sorted(f"{_dist_key(d)}:{name}" for _, d, _ in rows)
    return (f"entry point {name!r} (group {ENTRY_POINT_GROUP!r}) is declared by {len(rows)} distributions, "
            f"{' and '.join(who)}: none is loaded; keep one by blocking the others, e.g. "
            f"{DISABLE_ENV}={','.join(keys[1:])}")


def _load_entry_points(pm, report, dists, blocked):
    """Load every entry point of the group; return the names ``MMIP_DISABLE_PLUGINS`` could use."""
    known = set()
    for name, rows in _entry_points().items():
        known.add(name)
        live = []
        for ep, dist, version in rows:
            key = f"{_dist_key(dist)}:{name}"
            known.add(key)
            if name in blocked or key in blocked:
                report.append(PluginInfo("plugin", name, dist, version, "blocked"))
            else:
                live.append((ep, dist, version))
        if name in blocked:
            pm.set_blocked(name)
        if len(live) > 1:  # identified by (distribution, name): never load one and drop the other
            why = _conflict(name, live)
            report.extend(PluginInfo("plugin", name, dist, version, "error", why) for _, dist, version in live)
            continue
        for ep, dist, version in live:
            module, exc = _run_plugin_code(partial(_load_checked, ep))
            if exc is None:
                try:
                    pm.register(module, name=name)
                except ValueError as err:  # the same module under two names, or a built-in module's name
                    exc = err
            if exc is not None:
                report.append(PluginInfo("plugin", name, dist, version, "error", _failure(exc, "at import")))
            else:
                dists[name] = (dist, version)
    return known


def _load_checked(ep):
    module = ep.load()
    _check_hooks(module, ep.name)
    return module


def _warn_unknown(blocked: set, known: set) -> None:
    """One warning line per ``MMIP_DISABLE_PLUGINS`` name that blocks nothing, with the closest known name."""
    for item in sorted(blocked - known):
        hint = min(sorted(known), key=lambda k: _distance(k, item)) if known else None
        closest = f" (closest: {hint!r})" if hint else ""
        print(f"mmip: warning: {DISABLE_ENV} names {item!r}, which is no installed plugin{closest}; it blocks nothing",
              file=sys.stderr)


def build_plugin_manager(extra_plugins=(), load_entry_points=True):
    """A fresh plugin manager, its load report and ``{plugin: (dist, version)}`` (tests use this).

    Parameters
    ----------
    extra_plugins : iterable of module or :obj:`object`, optional
        Plugins registered besides the built-in ones and the entry points (a test's plugin module); one whose
        hooks are misspelled is reported, not registered.
    load_entry_points : :obj:`bool`, optional
        Load the installed distributions' ``multimodal_ip`` entry points.

    Returns
    -------
    :obj:`tuple`
        ``(pm, report, dists)``, the arguments of :class:`Registry`.
    """
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
        known = _load_entry_points(pm, report, dists, blocked)
        _warn_unknown(blocked, known | set(DEFAULT_PLUGINS))
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
    """The pluggy manager of the process-wide registry.

    Returns
    -------
    pm : :obj:`pluggy.PluginManager`
        The manager holding the loaded plugins.
    """
    return get_registry().pm


def reset() -> None:
    """Forget the cached registry (after installing or blocking plugins at run time)."""
    get_registry.cache_clear()
