"""The ``mmip`` argument parser: the built-in commands (one module each) and those plugins add through the
``mmip_register_commands`` hook, loaded only when a command that is not built in is named."""

__all__ = ["BUILTIN", "build_parser", "plugin_commands"]

import argparse
import sys

from .. import __version__
from ..errors import one_line as _one_line
from . import compare, export, import_, plugins, reconstruct, report, simulate, tune

#: the built-in commands, in the order ``mmip --help`` lists them (a new one: its module, then its name here)
BUILTIN = {"plugins": plugins.COMMAND, "simulate": simulate.COMMAND, "reconstruct": reconstruct.COMMAND,
           "compare": compare.COMMAND, "tune": tune.COMMAND, "report": report.COMMAND, "import": import_.COMMAND,
           "export": export.COMMAND}


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``mmip <command>: error: ...``, exit 2), like every other bad input.

    ``plugin_flags(parser)`` (optional; or :meth:`defer`) adds what the registered plugins declare (flags, the list
    of cases); it runs when this parser is used or its help shown, so only the commands that need the plugins load
    them (``mmip --help`` and ``mmip reconstruct`` do not import every plugin's physics)."""

    def __init__(self, *args, plugin_flags=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._plugin_flags = plugin_flags

    def defer(self, plugin_flags) -> None:
        """Run ``plugin_flags(self)`` only when this parser is used or its help shown."""
        self._plugin_flags = plugin_flags

    def _add_plugin_flags(self):
        add, self._plugin_flags = self._plugin_flags, None
        if add is not None:
            add(self)

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self._add_plugin_flags()
        return super().parse_known_args(args, namespace)

    def format_help(self):
        self._add_plugin_flags()
        return super().format_help()

    def error(self, message):
        print(f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


class _Program(_Parser):
    """The top-level parser: the plugins' commands are added (and the plugins loaded) only when the command named
    is not a built-in one, so ``mmip --help`` and the built-in commands start without them."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        argv = sys.argv[1:] if args is None else list(args)
        word = next((a for a in argv if not str(a).startswith("-")), None)  # the top level has no valued options
        if word is not None and word not in BUILTIN:
            self._add_plugin_flags()
            refused = plugin_commands()[1]
            if word in refused:  # claimed by two plugins: why, rather than "invalid choice"
                self.error(refused[word])
        return argparse.ArgumentParser.parse_known_args(self, argv, namespace)

    def format_help(self):
        return argparse.ArgumentParser.format_help(self)


def plugin_commands(registry=None) -> tuple[dict, dict]:
    """``({name: command}, {name: why refused})`` of the commands the plugins register
    (``mmip_register_commands``); one named like a built-in command is refused (the built-in one runs)."""
    if registry is None:
        from ..plugins import get_registry

        registry = get_registry()
    dists = {r.name: r.dist for r in registry.rows() if r.kind == "command"}
    commands, refused = {}, dict(registry.refused["command"])  # claimed by two plugins: refused for both
    for name, (command, plugin) in sorted(registry.items["command"].items()):
        if name in BUILTIN:
            refused[name] = (f"command {name!r} of plugin {plugin!r} ({dists.get(name, '?')}) clashes with the "
                             f"built-in `mmip {name}`: refused; rename it")
        else:
            commands[name] = command
    return commands, refused


def _add_command(sub, name, command) -> None:
    s = sub.add_parser(name, help=command.help)
    command.add_arguments(s)
    s.set_defaults(func=command.run, folder_files=tuple(getattr(command, "folder_files", ())),
                   run_ranks=getattr(command, "ranks", None))


def build_parser(with_plugins: bool = False) -> argparse.ArgumentParser:
    """The ``mmip`` parser; the plugins' commands are added when a command that is not built in is named, or at once
    with ``with_plugins`` (e.g. to list every command)."""
    p = _Program(prog="mmip", description="Joint inverse problems over modalities sharing unknowns.",
                 epilog="Plugins add more commands: `mmip plugins` lists them (kind 'command'); `mmip <command> "
                        "--help` shows their flags.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, command in BUILTIN.items():
        _add_command(sub, name, command)

    def add_plugin_commands(_p):
        for name, command in plugin_commands()[0].items():
            _add_command(sub, name, command)

    p.defer(add_plugin_commands)
    if with_plugins:
        p._add_plugin_flags()
    return p
