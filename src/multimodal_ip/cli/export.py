"""``mmip export``: a result file in a facility format, written by the exporter a plugin registers for it
(``mmip_register_exporters``; ``mmip plugins`` lists them, kind ``exporter``)."""

__all__ = ["COMMAND"]

import os
from pathlib import Path

from ..errors import ConfigError
from .command import Command


def _exporters() -> dict:
    """``{name: exporter}`` of the registered exporters."""
    from ..plugins import get_registry

    registry = get_registry()
    return {name: registry.get("exporter", name) for name in registry.names("exporter")}


def _export_flags(s) -> None:
    """``--format``: one of the registered exporters, each with its help line."""
    exporters = _exporters()
    lines = "; ".join(f"{n}: {getattr(e, 'help', 'registered by a plugin')}" for n, e in exporters.items())
    s.add_argument("--format", required=True, choices=sorted(exporters), help=lines or "(no exporter installed)")


def add_arguments(s) -> None:
    s.add_argument("result", help="a result file of `mmip reconstruct`")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--data", help="the run's data file (default: the one the result names, as given, else beside "
                                  "the result)")
    s.add_argument("--allow-external-links", action="store_true",
                   help="follow HDF5 external links and virtual datasets of the data file (trusted layouts only)")
    s.defer(_export_flags)  # the exporters' names: the plugins load only when this command is used


def _data_path(args, res) -> Path | None:
    """The run's data file: ``--data``, else the one the result's configuration names (as given, else beside the
    result: ``result_data.named_data_file``); ``None`` when there is none."""
    from .result_data import named_data_file

    return Path(args.data) if args.data else named_data_file(args.result, res["config"])[1]


#: copies of the result's variables an exporter without its own ``copies`` is counted to make (the largest the
#: registered ones need: their format's dtype and layout, grids, the term they build)
COPIES = 12


def _plan(args) -> None:
    """The result's arrays, the exporter's copies of its variables and the run's data, from the files' structure,
    within the memory budget (``read_plan.ReadPlan``); refused in one line otherwise."""
    from ..safety import regular_input
    from .read_plan import ReadPlan

    plan = ReadPlan(f"exporting {args.result}")
    info = plan.result(args.result)
    copies = getattr(_exporters().get(args.format), "copies", COPIES)  # the exporter's offer (docs/plugins.md)
    plan.parts["exporter's copies"] = int(copies * sum(info["variables"].values()))
    data = _data_path(args, info)
    if data is not None:
        regular_input(data, "data file")
        plan.command = f"exporting {args.result} with {data}"
        plan.dataset(data, terms=info["config"].get("terms"), allow_external=args.allow_external_links)
    plan.check()


def run(args) -> int:
    """Read the result (and the run's data file when found), check ``-o`` against both, then let the exporter
    write a temporary beside ``-o``, renamed over it once complete."""
    from ..atomic import discarded_on_failure, new_temporary
    from ..io import load_dataset, load_result
    from ..safety import check_outputs, regular_input

    regular_input(args.result, "result file")
    check_outputs([args.output], [args.result, args.data])
    _plan(args)  # the whole command within the memory budget, before any array is read
    res = load_result(args.result)
    data = _data_path(args, res)
    if data is not None:
        regular_input(data, "data file")
        check_outputs([args.output], [args.result, data])
    dataset = None if data is None else load_dataset(data, terms=res["config"].get("terms"),
                                                     allow_external=args.allow_external_links)
    exporter = _exporters().get(args.format)
    if exporter is None:  # pragma: no cover - argparse's choices refuse it first
        msg = f"no exporter {args.format!r}"
        raise ConfigError(msg)
    context = {"result": str(args.result), "dataset": dataset, "data": None if data is None else str(data),
               "allow_external": args.allow_external_links}
    out = Path(args.output)
    size = sum(getattr(a, "nbytes", 0) for a in res["variables"].values())
    fd, tmp = new_temporary(out, need_bytes=2 * size)
    os.close(fd)
    with discarded_on_failure(tmp, out):  # removed when the exporter fails (one line, or re-raised)
        exporter(res, context, tmp)
        os.replace(tmp, out)
    print(f"wrote {out} ({args.format}) from {args.result}" + ("" if data is None else f" and {data}"))
    return 0


COMMAND = Command(help="a result file in a facility format (--format: the registered exporters)",
                  add_arguments=add_arguments, run=run)
