"""``mmip report``: figures and a summary of a result file, in the output folder."""

__all__ = ["COMMAND"]

import json

from .command import Command
from .common import _report_sections, check_folder


def add_arguments(s) -> None:
    s.add_argument("result")
    s.add_argument("-o", "--output", required=True)


def run(args) -> int:
    from ..atomic import staged_folder
    from ..io import load_result
    from ..report import plot_histories, plot_reconstructions
    from ..solvers import History

    check_folder(args, [args.result])
    res = load_result(args.result)
    hist = History.from_arrays(res["history"])
    with staged_folder(args.output, [args.result]) as outdir:  # never through a link already there
        plot_histories({"run": hist}, outdir / "convergence.png")
        start = {k.removeprefix("start_"): v for k, v in res["extra"].items() if k.startswith("start_")}
        objects = [n for n in res["variables"] if n not in start]
        maps = plot_reconstructions({"result": res["variables"]}, None, outdir / "reconstructions.png", objects)
        last = hist.last()
        lines = [f"# mmip report: {args.result}", "", f"status: {res['status']} ({res['message']})", "",
                 "| quantity | final value |", "|---|---|"]
        lines += [f"| {k} | {v:.6g} |" for k, v in last.items()]
        lines += ["", "configuration: `" + json.dumps(res["config"]) + "`", "", "![convergence](convergence.png)"]
        if maps:
            lines += ["", "![reconstructions](reconstructions.png)"]
        print("\n".join(lines[4:4 + 2 + len(last)]))
        extra_lines, _ = _report_sections({"result": res["variables"]}, start, None, outdir,
                                          dataset=_input_dataset(args.result, res) if start else None)
        lines += ["", *extra_lines]
        (outdir / "report.md").write_text("\n".join(lines))
    print(f"wrote {args.output}/report.md")
    return 0


def _input_dataset(result, res):
    """The run's terms of the input file named in the result's configuration (as given, else beside the result:
    ``result_data.named_data_file``), for the report plugins; ``None`` (with a note) when it is gone or
    unreadable."""
    from ..errors import MultimodalIPError
    from ..io import load_dataset
    from .result_data import named_data_file

    name, path = named_data_file(result, res["config"])
    if name is None:
        return None
    if path is None:
        print(f"note: the input {name} named in {result} was not found: reports that need the data are left out")
        return None
    terms = res["config"].get("terms")
    try:
        return load_dataset(path, terms=terms if isinstance(terms, list) else None)
    except (MultimodalIPError, OSError, ValueError) as exc:
        print(f"note: the input {path} is not readable for the report ({exc})")
        return None


COMMAND = Command(help="figures and a summary from a result file", add_arguments=add_arguments, run=run,
                  folder_files=("report.md", "convergence.png", "reconstructions.png"))
