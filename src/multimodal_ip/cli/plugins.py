"""``mmip plugins``: the table of installed plugins and what they registered."""

__all__ = ["COMMAND"]

import json
import sys

from .command import Command


def add_arguments(s) -> None:
    s.add_argument("--json", action="store_true")


def run(args) -> int:
    """The plugin table; exit 2 when any plugin failed to load or was refused (its row says why, file:line)."""
    from dataclasses import replace

    from ..plugins import get_registry
    from .parser import plugin_commands

    registry = get_registry()
    _, refused = plugin_commands(registry)  # a command named like a built-in one: refused, its row says why
    rows = [replace(r, status="error", error=refused[r.name]) if r.kind == "command" and r.name in refused
            and r.status == "ok" else r for r in registry.rows()]
    errors = [r for r in rows if r.status == "error"]
    code = 2 if errors else 0
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return code
    header = ("kind", "name", "dist", "version", "status")
    table = [header] + [(r.kind, r.name, r.dist, r.version, r.status + (f": {r.error}" if r.error else ""))
                        for r in rows]
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    if code:
        print(f"mmip plugins: {len(errors)} plugin problem(s); the others work", file=sys.stderr)
    return code


COMMAND = Command(help="list installed plugins (kind, name, dist, version, status)", add_arguments=add_arguments,
                  run=run)
