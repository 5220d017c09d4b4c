"""``mmip compare``: the joint reconstruction against each modality alone; error table, figures and a report in
the output folder."""

__all__ = ["COMMAND"]

import json
import warnings

import numpy as np

from ..config import run_config
from .command import Command
from .common import (
    _final_status,
    _report_sections,
    _solve_with_progress,
    add_run_flags,
    build,
    check_folder,
    resolve_stop,
    start_values,
)


def add_arguments(s) -> None:
    s.add_argument("data")
    s.add_argument("-o", "--output", required=True)
    add_run_flags(s)
    s.add_argument("--no-refit", dest="no_refit", action="store_true",
                   help="with --stop validation: keep each method's held-out fit (default: refit it on all the data "
                        "to the iteration its held-out run chose, as mmip reconstruct does)")


def _methods(joint) -> dict:
    """The compared methods: the joint problem and each of its terms alone."""
    return {"joint": joint, **{f"{t} alone": joint.alone(t) for t in joint.term_names}}


def _refit_methods(cfg, ds, held, start) -> tuple[dict, dict]:
    """After ``--stop validation``: every method refitted on all the data (the dataset already read) to the iteration
    its own held-out run chose, as ``mmip reconstruct`` does; ``(methods, results)``. A method whose held-out run
    failed or returned no iterate keeps its held-out result."""
    from .common import _refit, _whole_data_problem

    methods = _methods(_whole_data_problem(ds, cfg))
    results = {}
    for name, problem in methods.items():
        res = held[name]
        if res.returned_iteration is None or res.status == "failed":
            results[name] = res
            continue
        results[name] = _refit(problem, cfg, res.returned_iteration, desc=f"{name} refit", start=start)[1]
    return methods, results


def _error_rows(results, truth, objects, extras) -> tuple[list, list]:
    """The error table's header and rows, with the columns the report plugins add before the last (time) one."""
    from ..report import error_table

    header, rows = error_table(results, truth, objects)
    extra_cols = sorted({c for cols in extras["columns"].values() for c in cols})
    header = header[:-1] + extra_cols + header[-1:]
    rows = [r[:-1] + [extras["columns"].get(r[0], {}).get(c, np.nan) for c in extra_cols] + r[-1:] for r in rows]
    return header, rows


def _json_key(h: str) -> str:
    """A column of the error table as a key of ``errors.json`` (``time (s)`` -> ``time_s``)."""
    return h.replace(" (s)", "_s").replace(" ", "_").replace("(", "").replace(")", "")


def _write(outdir, args, cfg, ds, joint, methods, results) -> list:
    """Table, figures, ``report.md`` and ``errors.json`` into ``outdir``; the names of the files written."""
    from ..backend import to_numpy
    from ..report import markdown_table, plot_histories, plot_reconstructions

    objects = [n for n in joint.space.names if n not in joint.calibration]
    truth = {k: v for k, v in ds.truth.items() if k in joint.space} or None
    arrays = {k: {n: to_numpy(a) for n, a in r.arrays.items()} for k, r in results.items()}
    start = {k: to_numpy(v) for k, v in joint.calibration.items()}
    extras_lines, extras = _report_sections(arrays, start, ds.truth or None, outdir, problems=methods)
    header, rows = _error_rows(results, truth, objects, extras)
    fmt = [[r[0]] + [f"{v:.4f}" for v in r[1:-1]] + [f"{r[-1]:.1f}"] for r in rows]
    table = markdown_table(header, fmt)
    print(table)
    plot_histories({k: r.history for k, r in results.items()}, outdir / "convergence.png")
    maps = plot_reconstructions(arrays, truth, outdir / "reconstructions.png", objects)
    report = [f"# mmip compare: {args.data}", "",
              f"solver `{cfg['solver']}` {json.dumps(cfg['solver_options'] or {})}, {cfg['iterations']} iterations, "
              f"weights {joint.weights}, chunk memory {cfg['chunk_memory'] or 'default'}", "", table, "",
              "![convergence](convergence.png)", ""]
    report += ["![reconstructions](reconstructions.png)", ""] if maps else []
    report += extras_lines
    (outdir / "report.md").write_text("\n".join(report))
    with open(outdir / "errors.json", "w") as fh:
        json.dump({r[0]: {_json_key(h): v for h, v in zip(header[1:], r[1:])} for r in rows}, fh, indent=2)
    return ["report.md", "convergence.png", *(["reconstructions.png"] if maps else []),
            *(n for _, n in extras["figures"]), "errors.json"]


def run(args) -> int:
    from ..atomic import staged_folder
    from ..run_budget import run_planner
    from ..start import start_file
    from .reconstruct import _refit_setting

    cfg = run_config(args)
    check_folder(args, [args.data, args.config, start_file(cfg["start"])])
    if (cfg["stopping"] or {}).get("refit_from", "start") != "start":  # a run file's: mmip reconstruct's rule
        warnings.warn("mmip compare refits every method from its start ([stopping] refit_from = 'best' is mmip "
                      "reconstruct's)", stacklevel=2)
    if (cfg["stopping"] or {}).get("rule") == "auto":  # only --stop auto: compare's default is iterations
        resolve_stop(args.data, cfg, cfg["terms"], args.allow_external_links)
    cfg["stopping"] = {k: v for k, v in (cfg["stopping"] or {}).items() if k not in ("refit_from", "refit_iterations")}
    refit = _refit_setting(args, cfg)

    def kept(space, terms, vector):  # the other methods' results beside the one running (and the held-out ones)
        return {"results kept": (len(terms) + (len(terms) + 1 if refit else 0)) * vector}

    ds, joint = build(args.data, cfg, terms=None, allow_external=args.allow_external_links,
                      plan=run_planner(cfg, extra=kept, release_last=True))
    start = start_values(cfg, ds, joint, args.allow_external_links)  # every method from the same start
    methods = _methods(joint)
    results = {name: _solve_with_progress(problem, cfg, name, start=start) for name, problem in methods.items()}
    if refit:
        del methods, joint  # the held-out problems go before the whole-data ones are built (one problem's memory)
        methods, results = _refit_methods(cfg, ds, results, start)
        joint = methods["joint"]
    with staged_folder(args.output, [args.data, args.config]) as outdir:  # never through a link already there
        written = _write(outdir, args, cfg, ds, joint, methods, results)
    print(f"wrote {args.output}/" + ", ".join(written))
    codes = [_final_status(args, methods[k], r, label=f"{k}: ") for k, r in results.items()]
    return max(codes)


COMMAND = Command(help="joint versus each modality alone: error table, figures, report", add_arguments=add_arguments,
                  run=run, folder_files=("report.md", "errors.json", "convergence.png", "reconstructions.png"))
