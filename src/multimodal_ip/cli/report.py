"""``mmip report``: figures and a summary of a result file, in the output folder."""

__all__ = ["COMMAND"]

import json

from ..errors import MultimodalIPError
from .command import Command
from .common import _report_sections, check_folder

#: bytes per pixel of the largest map matplotlib draws (its float64 RGBA image, the normalised and resampled
#: copies); measured: 44 B/px over 3.2 M and 6.4 M pixel maps, plus 9 MiB (docs/performance.md)
PIXEL_BYTES = 64
#: the plotting library and its figure
PLOTTING = 64 << 20


def figure_bytes(shapes) -> int:
    """The figures' memory: the plotting library, the largest map's drawing and the modulus copy of every complex
    variable (``report._maps``).

    Parameters
    ----------
    shapes : :obj:`dict`
        ``{name: (shape, dtype)}`` of the result's variables.

    Returns
    -------
    nbytes : :obj:`int`
        Bytes the figures add to the result's arrays.
    """
    import numpy as np

    pixels, copies = 0, 0
    for shape, dtype in shapes.values():
        if len(shape) == 2 or (len(shape) == 3 and shape[0] <= 8):
            pixels = max(pixels, int(shape[-2]) * int(shape[-1]))
            if np.dtype(dtype).kind == "c":
                copies += int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize // 2
    return PLOTTING + PIXEL_BYTES * pixels + copies


def add_arguments(s) -> None:
    s.add_argument("result")
    s.add_argument("-o", "--output", required=True)


def run(args) -> int:
    from ..atomic import staged_folder
    from ..io import load_result
    from ..report import plot_histories, plot_reconstructions
    from ..solvers import History

    check_folder(args, [args.result])
    _plan(args.result)  # the whole command within the memory budget, before any array is read
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


def _plan(result) -> None:
    """The result's arrays, their figures' copies and (when it holds start values) the run's data it reads, from
    the files' structure, within the memory budget (``read_plan.ReadPlan``); refused in one line otherwise."""
    from .read_plan import ReadPlan
    from .result_data import named_data_file

    plan = ReadPlan(f"reading {result}")
    info = plan.result(result)
    plan.parts["figures"] = figure_bytes(info["shapes"])
    path = named_data_file(result, info["config"])[1]
    if path is not None and any(k.startswith("start_") for k in info["extra"]):
        terms = info["config"].get("terms")
        plan.command = f"reading {result} and {path}"
        try:
            plan.dataset(path, terms=terms if isinstance(terms, list) else None)
        except (MultimodalIPError, OSError, ValueError):
            pass  # not readable: the report leaves out what needs it, with a note (``_input_dataset``)
    plan.check()


def _input_dataset(result, res):
    """The run's terms of the input file named in the result's configuration (as given, else beside the result:
    ``result_data.named_data_file``), for the report plugins; ``None`` (with a note) when it is gone or
    unreadable."""
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
