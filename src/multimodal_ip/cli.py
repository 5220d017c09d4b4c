"""The ``mmip`` command: plugins, simulate, reconstruct, compare, report, hessian, import.

Exit codes (:data:`~multimodal_ip.errors.EXIT_CODES`): 0 success, 1 internal error (one line, the traceback in a
log file), 2 bad input (one line naming file/dataset/flag), 3 stalled solve, 4 failed solve, 130 interrupted.
"""

__all__ = ["main"]

import argparse
import contextlib
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from .config import run_config, validation_settings
from .errors import ConfigError, MultimodalIPError, exit_code
from .errors import one_line as _one_line


def _xp(backend):
    if backend == "numpy":
        return np
    try:
        import cupy

        cupy.zeros(1)
    except Exception as exc:  # noqa: BLE001 - any failure means no usable GPU
        msg = f"backend 'cupy' is not available here ({type(exc).__name__}: {exc}); use --backend numpy"
        raise ConfigError(msg) from None
    return cupy


def _progress(total, initial, desc):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, initial=initial, desc=desc, unit="it", file=sys.stderr, leave=False,
                disable=None)  # None: tqdm hides itself when stderr is not a terminal


def refine_after(cfg) -> int:
    """Iterations before the calibration unknowns move: the run's setting, else a third of the iterations."""
    return cfg["refine_after"] if cfg["refine_after"] is not None else cfg["iterations"] // 3


def _solve_with_progress(problem, cfg, desc, resume_state=None, on_iteration=None, show=True):
    from .solvers import solve_staged

    bar = _progress(cfg["iterations"], 0 if resume_state is None else resume_state["iteration"], desc) if show else None

    def callback(state):
        if bar is not None:
            row = state.history.last()
            bar.set_postfix({k.removeprefix("objective_"): f"{v:.3g}" for k, v in row.items()
                             if k.startswith("objective_")}, refresh=False)
            bar.update(1)
        if on_iteration is not None:
            on_iteration(state)

    from .solvers import check_solver_options, get_solver

    opts = dict(cfg["solver_options"])
    check_solver_options(cfg["solver"], get_solver(cfg["solver"]), opts)
    _, _, rule, patience, min_delta = validation_settings(cfg)
    if rule == "validation":
        from .validation import StopOnValidation

        opts["stopping"] = StopOnValidation(patience, min_delta)
    if resume_state is None:
        _check_start(problem, desc)
    _HELD.release()  # the inputs are read and checked: the run's warnings now, before its progress
    try:
        return solve_staged(problem, problem.start(), solver=cfg["solver"], maxiter=cfg["iterations"],
                            refine_after=refine_after(cfg), callback=callback, resume_state=resume_state, **opts)
    finally:
        if bar is not None:
            bar.close()


def _refit_config(cfg, best_iteration) -> dict:
    """The run configuration of a refit: ``cfg`` on all the data (no stopping rule, nothing held out) for the
    iteration count a held-out run chose, with the calibration refined after as many iterations as in that run."""
    out = dict(cfg, iterations=max(int(best_iteration), 1), stopping={})
    if cfg["refine"]:
        out["refine_after"] = refine_after(cfg)
    return out


def _refit(problem, cfg, best_iteration, desc="refit", show=True):
    """Refit on all the data (``problem``, built without a holdout) to the iteration a run on held-out data chose
    (``mmip reconstruct --stop validation`` and ``mmip tune --refit``): ``(refit configuration, result, seconds)``."""
    import time

    refit_cfg = _refit_config(cfg, best_iteration)
    t0 = time.perf_counter()
    res = _solve_with_progress(problem, refit_cfg, desc, show=show)
    return refit_cfg, res, time.perf_counter() - t0


def _chunk_bytes(text):
    from .safety import parse_size

    return None if text is None else parse_size(text, allow_zero=True)


def _regularizers(specs) -> list:
    """Regularizer objects from run-file/flag specs ``{"name", "variables", "strength"?, other keyword options}``."""
    import inspect

    from .plugins import get_registry

    out = []
    for spec in specs:
        cls = get_registry().get("regularizer", spec["name"])
        kwargs = {k: v for k, v in spec.items() if k not in ("name", "variables", "strength")}
        if "strength" in spec:
            kwargs["weight"] = spec["strength"]
        known = set(inspect.signature(cls).parameters) - {"variables", "name"}
        bad = sorted(set(kwargs) - known)
        if bad:
            shown = ["strength" if b == "weight" else b for b in bad]
            msg = f"regularizer {spec['name']!r} takes no setting {shown}; it takes: {', '.join(sorted(known))}"
            raise ConfigError(msg)
        out.append(cls(tuple(spec["variables"]), **kwargs))
    return out


def _check_start(problem, desc) -> None:
    """Refuse, before iterating, a start point where a term's objective or the gradient is not finite."""
    with np.errstate(all="ignore"):
        lin = problem.linearize(problem.start())  # objectives and gradient in one evaluation
    bad = {k: v for k, v in lin.objectives.items() if not np.isfinite(v)}
    if not bad and not bool(problem.xp.all(problem.xp.isfinite(lin.gradient))):
        bad = {"gradient": "non-finite entries"}
    if bad:
        shown = ", ".join(f"{k}: {v}" for k, v in bad.items())
        msg = (f"{desc}: the objective is not finite at the start point ({shown}); check the data, weights and "
               "likelihood settings (e.g. photons_per_unit, balance_c)")
        raise ConfigError(msg)


def _build_options(cfg) -> dict:
    """The keyword options of ``build_problem`` a run configuration gives."""
    options = {"balance_c": cfg["balance_c"], "term_options": cfg["term_options"], "xp": _xp(cfg["backend"]),
               "dtype": cfg["dtype"], "refine": cfg["refine"], "likelihood": cfg["likelihood"],
               "coupling": cfg["coupling"], "reference": cfg["balance_reference"],
               "chunk_bytes": _chunk_bytes(cfg["chunk_memory"]), "refine_bounds": cfg["refine_bound"],
               "regularizers": _regularizers(cfg["regularizers"])}
    options["validation"], options["validation_seed"] = validation_settings(cfg)[:2]
    return options


def _build(args_data, cfg, terms=None, comm=None, allow_external=False):
    from .io import build_problem, load_dataset

    terms = terms if terms is not None else cfg["terms"]
    options = _build_options(cfg)
    if comm is not None:  # each rank reads only its share of the split data
        from .distributed import build_distributed_problem

        return build_distributed_problem(args_data, comm, terms=terms, allow_external=allow_external, **options)
    ds = load_dataset(args_data, terms=terms, allow_external=allow_external, precision=cfg["dtype"])
    return ds, build_problem(ds, **options)


# ---- subcommands -------------------------------------------------------------------
def cmd_plugins(args) -> int:
    """The plugin table; exit 2 when any plugin failed to load or was refused (its row says why, file:line)."""
    from .plugins import get_registry

    registry = get_registry()
    rows = registry.rows()
    code = 2 if registry.errors else 0
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
        print(f"mmip plugins: {len(registry.errors)} plugin problem(s); the others work", file=sys.stderr)
    return code


def _simulation_parameters() -> dict:
    """``{keyword: spec}`` over every registered simulation (``parameters`` of each); the first spec of a name wins."""
    from .plugins import get_registry

    registry = get_registry()
    out: dict = {}
    for name in registry.names("simulation"):
        for k, spec in (getattr(registry.get("simulation", name), "parameters", None) or {}).items():
            out.setdefault(k, spec)
    return out


def cmd_simulate(args) -> int:
    """Run a registered simulation with the flags it declares; numbers are checked (counts >= 1, finite >= 0)."""
    import math

    from .io import save_dataset
    from .plugins import get_registry
    from .safety import check_outputs

    simulate = get_registry().get("simulation", args.case)
    declared = getattr(simulate, "parameters", None) or {}
    overrides = {}
    for k, spec in _simulation_parameters().items():
        value = getattr(args, f"sim_{k}", None)
        if value is None:
            continue
        flag = "--" + spec.get("flag", k.replace("_", "-"))
        if k not in declared:
            msg = f"{flag}: simulation {args.case!r} has no such parameter"
            raise ConfigError(msg)
        if spec.get("type") is list:
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif spec.get("type") is int and value < 1:
            msg = f"{flag} must be >= 1, got {value}"
            raise ConfigError(msg)
        elif spec.get("type") is float and not (math.isfinite(value) and value >= 0):
            msg = f"{flag} must be a finite number >= 0, got {value}"
            raise ConfigError(msg)
        overrides[k] = value
    if not (math.isfinite(args.noise) and args.noise >= 0):
        msg = f"--noise must be a finite number >= 0, got {args.noise}"
        raise ConfigError(msg)
    if args.seed < 0:
        msg = f"--seed must be >= 0, got {args.seed}"
        raise ConfigError(msg)
    check_outputs([args.output], [])
    try:
        ds = simulate(seed=args.seed, noise=args.noise, **overrides)
    except (ValueError, MemoryError) as exc:  # the case's own parameter checks; sizes it cannot hold
        msg = f"simulate {args.case}: {exc or 'the requested size does not fit in memory'}"
        raise ConfigError(_one_line(msg)) from None
    save_dataset(args.output, ds)
    v = ds.space
    print(f"wrote {args.output}: case {args.case}, noise {args.noise:g}, seed {args.seed}, variables "
          + ", ".join(f"{x.name}{list(x.shape)}" for x in v.variables) + ", terms " + ", ".join(ds.terms))
    return 0


def cmd_reconstruct(args) -> int:
    from .backend import to_numpy
    from .distributed import get_comm, mpi_world_size
    from .io import save_result
    from .io.results import load_checkpoint, save_checkpoint
    from .safety import check_outputs, deferred_interrupts, file_fingerprint, regular_input

    cfg = run_config(args)
    refit = _refit_setting(args, cfg)
    regular_input(args.data, "data file")
    check_outputs([args.output], [args.data, args.config])
    out = Path(args.output)
    ckpt = out.with_name(out.name + ".ckpt.h5")
    check_outputs([ckpt], [args.data, args.config])
    comm = None
    if args.mpi or mpi_world_size() > 1:
        comm = get_comm()
    lead = comm is None or comm.Get_rank() == 0
    ds, problem = _build(args.data, cfg, comm=comm, allow_external=args.allow_external_links)
    resume_state = None
    every = max(int(cfg["checkpoint_every"]), 0)
    fingerprint = file_fingerprint(args.data) if args.resume or (lead and every) else ""
    if args.resume:
        if not ckpt.exists():
            msg = f"--resume: no checkpoint {ckpt} (was the run started with this -o?)"
            raise ConfigError(msg)
        resume_state, saved = load_checkpoint(ckpt)
        if saved.get("fingerprint") != fingerprint:
            msg = f"--resume: {ckpt} was made from another input than {args.data} (fingerprints differ); start anew"
            raise ConfigError(msg)
        if resume_state["arrays"]["x"].shape != (problem.space.size,):
            msg = (f"--resume: {ckpt} holds x of shape {resume_state['arrays']['x'].shape}, the problem has "
                   f"{problem.space.size} unknowns")
            raise ConfigError(msg)
        for k in ("solver", "terms", "dtype", "solver_options", "term_options", "balance_c", "refine",
                  "refine_after", "likelihood", "coupling", "stopping", "refine_bound"):
            mine, theirs = cfg.get(k), saved.get(k)
            if k == "stopping":  # the checkpoint is of the held-out run, the same with or without a refit after it
                mine, theirs = ({n: v for n, v in (d or {}).items() if n != "refit"} for d in (mine, theirs))
            if json.dumps(theirs, sort_keys=True) != json.dumps(mine, sort_keys=True):
                msg = f"--resume: setting {k!r} differs from the checkpoint ({saved.get(k)!r} vs {cfg.get(k)!r})"
                raise ConfigError(msg)
    failed_writes: list[int] = []

    def on_iteration(state):
        if lead and every and state.iteration % every == 0 and state.iteration < cfg["iterations"]:
            try:
                with deferred_interrupts():
                    save_checkpoint(ckpt, state.solver.state_dict(), cfg, fingerprint)
            except MultimodalIPError as exc:  # a full disk must not end a long run: warn once, go on
                if not failed_writes:
                    print(f"mmip reconstruct: warning: checkpoint not written ({_one_line(exc)}); the run goes on",
                          file=sys.stderr)
                failed_writes.append(state.iteration)

    res = _solve_with_progress(problem, cfg, "reconstruct", resume_state, on_iteration, show=lead)
    meta = {"returned_iteration": res.returned_iteration}
    held = None
    if refit and res.returned_iteration is not None and res.status != "failed":
        # the whole data from the dataset already read (each MPI rank rereads its share); no checkpoints are
        # written during the refit: the held-out run's last one stays until the result is written, and --resume
        # replays from it and refits again
        held, problem = res, None  # the held-out problem's memory is freed before the whole data are built
        if comm is None:
            from .io import build_problem

            problem = build_problem(ds, **_build_options(dict(cfg, stopping={})))
        else:
            ds, problem = _build(args.data, dict(cfg, stopping={}), comm=comm,
                                 allow_external=args.allow_external_links)
        refit_cfg, res, wall = _refit(problem, cfg, held.returned_iteration, show=lead)
        meta = _refit_record(held, refit_cfg, res, wall)
    if not lead:
        return 0
    arrays = {k: to_numpy(v) for k, v in res.arrays.items()}
    ranks = 1 if comm is None else comm.Get_size()
    extra = {f"start_{k}": to_numpy(v) for k, v in problem.calibration.items()}
    if held is not None:  # the held-out run's history beside the refit's
        extra.update({f"validation_run/history/{k}": v for k, v in held.history.as_arrays().items()})
    with deferred_interrupts():
        save_result(out, arrays, res.history, dict(cfg, data=str(args.data), mpi_ranks=ranks, **meta), res.status,
                    res.message, extra=extra)
        if ckpt.is_file():
            ckpt.unlink()
    last = res.history.last()
    kept = res.returned_row()
    summary = ", ".join(f"{k}={v:.4g}" for k, v in kept.items() if k.startswith(("objective", "error", "validation")))
    which = "" if res.returned_iteration is None else f"; iterate {res.returned_iteration} returned (best validation)"
    if held is not None:
        run = meta["validation_run"]
        which = (f"; refit on all the data to iteration {held.returned_iteration}, the best validation of the "
                 f"held-out run ({run['status']} after {run['iterations']} iterations, {run['wall_s']:.1f} s)")
    print(f"wrote {out}: {res.status} after {last['iteration']:.0f} iterations ({last['time_s']:.1f} s){which}; "
          f"{summary}")
    return _final_status(args, problem, res, label="refit: " if held is not None else "")


def _refit_setting(args, cfg) -> bool:
    """Whether ``--stop validation`` refits on all the data (default; ``--no-refit`` or ``[stopping] refit = false``
    keep the held-out fit); records ``--no-refit`` in ``cfg``."""
    if getattr(args, "no_refit", False):
        cfg["stopping"] = dict(cfg["stopping"] or {}, refit=False)
    spec = cfg["stopping"] or {}
    if spec.get("rule", "iterations") != "validation":
        if "refit" in spec:
            warnings.warn("--no-refit / [stopping] refit does nothing without --stop validation", stacklevel=2)
        return False
    return bool(spec.get("refit", True))


def _refit_record(held, refit_cfg, res, wall) -> dict:
    """What a result file records of a held-out run and the refit after it (its ``config``)."""
    return {"returned_iteration": None,
            "validation_run": {"status": held.status, "message": held.message,
                               "returned_iteration": held.returned_iteration,
                               "iterations": int(held.history.last()["iteration"]),
                               "wall_s": float(held.history.last()["time_s"])},
            "refit": {"iterations": refit_cfg["iterations"], "refine_after": refit_cfg["refine_after"],
                      "status": res.status, "wall_s": wall}}


def _final_status(args, problem, res, label="") -> int:
    """The exit code of a solve; for a stall, the last line names a term whose gradient fails a Taylor test."""
    code = exit_code(res.status, getattr(args, "accept_stall", False))
    if res.status == "stalled":
        from .diagnose import check_term_gradients

        bad = {k: v for k, v in check_term_gradients(problem, res.x).items() if v}
        why = ("; ".join(f"term {k!r} fails the gradient Taylor test ({v.split(': ', 1)[-1]})" for k, v in bad.items())
               if bad else "every term's gradient passes the Taylor test (likely a round-off limit: the iterate is "
                           "usable; --accept-stall exits 0)")
        print(f"mmip {args.command}: {label}stalled: {res.message}; {why}", file=sys.stderr)
    elif res.status == "failed":
        print(f"mmip {args.command}: {label}failed: {res.message}", file=sys.stderr)
    return code


def _report_sections(arrays, start, truth, outdir, problems=None) -> tuple[list, dict]:
    """Markdown for what the report plugins add (tables printed too, figures written under ``outdir``)."""
    from .report import markdown_table, plugin_reports

    extras = plugin_reports(arrays, start, truth, outdir, problems=problems)
    lines = []
    for title, header, rows in extras["tables"]:
        table = markdown_table(header, rows)
        print(table)
        lines += [f"## {title}", "", table, ""]
    for title, name in extras["figures"]:
        lines += [f"![{title}]({name})", ""]
    return lines, extras


#: the files a command writes into its output folder: each is checked like ``-o`` before any work (figures that
#: report plugins add are checked before they are moved in; see :func:`~multimodal_ip.atomic.staged_folder`)
FOLDER_FILES = {"compare": ("report.md", "errors.json", "convergence.png", "reconstructions.png"),
                "report": ("report.md", "convergence.png", "reconstructions.png"),
                "tune": ("table.md", "tune.png", "chosen.toml", "chosen_validation.toml", "refit.h5"),
                "hessian": ("eigenvalues.png", "landscapes.png", "hessian.json")}


def _check_folder(args, inputs) -> None:
    """The output folder of ``args.command`` and every file it writes there are no input, at any spelling."""
    from .safety import check_outputs

    check_outputs([args.output], inputs, folder=True)
    check_outputs([Path(args.output) / n for n in FOLDER_FILES[args.command]], inputs)


def cmd_compare(args) -> int:
    from .atomic import staged_folder
    from .backend import to_numpy
    from .report import error_table, markdown_table, plot_histories, plot_reconstructions

    cfg = run_config(args)
    _check_folder(args, [args.data, args.config])
    ds, joint = _build(args.data, cfg, terms=None, allow_external=args.allow_external_links)
    methods = {"joint": joint}
    for t in joint.term_names:
        methods[f"{t} alone"] = joint.alone(t)
    results = {}
    for name, problem in methods.items():
        results[name] = _solve_with_progress(problem, cfg, name)
    with staged_folder(args.output, [args.data, args.config]) as outdir:  # never through a link already there
        objects = [n for n in joint.space.names if n not in joint.calibration]
        truth = {k: v for k, v in ds.truth.items() if k in joint.space} or None
        arrays = {k: {n: to_numpy(a) for n, a in r.arrays.items()} for k, r in results.items()}
        start = {k: to_numpy(v) for k, v in joint.calibration.items()}
        extras_lines, extras = _report_sections(arrays, start, ds.truth or None, outdir, problems=methods)
        header, rows = error_table(results, truth, objects)
        extra_cols = sorted({c for cols in extras["columns"].values() for c in cols})
        header = header[:-1] + extra_cols + header[-1:]
        rows = [r[:-1] + [extras["columns"].get(r[0], {}).get(c, np.nan) for c in extra_cols] + r[-1:]
                for r in rows]
        fmt = [[r[0]] + [f"{v:.4f}" for v in r[1:-1]] + [f"{r[-1]:.1f}"] for r in rows]
        table = markdown_table(header, fmt)
        print(table)
        plot_histories({k: r.history for k, r in results.items()}, outdir / "convergence.png")
        maps = plot_reconstructions(arrays, truth, outdir / "reconstructions.png", objects)
        report = [f"# mmip compare: {args.data}", "",
                  f"solver `{cfg['solver']}`, {cfg['iterations']} iterations, weights {joint.weights}", "", table, "",
                  "![convergence](convergence.png)", ""]
        report += ["![reconstructions](reconstructions.png)", ""] if maps else []
        report += extras_lines
        (outdir / "report.md").write_text("\n".join(report))
        with open(outdir / "errors.json", "w") as fh:
            json.dump({r[0]: {h.replace(" (s)", "_s").replace(" ", "_").replace("(", "").replace(")", ""): v
                              for h, v in zip(header[1:], r[1:])} for r in rows}, fh, indent=2)
    written = ["report.md", "convergence.png", *(["reconstructions.png"] if maps else []),
               *(n for _, n in extras["figures"]), "errors.json"]
    print(f"wrote {args.output}/" + ", ".join(written))
    codes = [_final_status(args, methods[k], r, label=f"{k}: ") for k, r in results.items()]
    return max(codes)


def _number_list(text, what, positive=True) -> list:
    try:
        values = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) and (v > 0 if positive else v >= 0) for v in values):
        msg = f"{what} takes comma-separated finite numbers {'> 0' if positive else '>= 0'}; got {text!r}"
        raise ConfigError(msg)
    return _distinct(values, what)


def _distinct(values, what) -> list:
    """``values`` without repeats (in their order), with a warning naming the repeats: each setting runs once."""
    out = list(dict.fromkeys(values))
    if len(out) < len(values):
        repeats = sorted({v for v in values if values.count(v) > 1}, key=values.index)
        warnings.warn(f"{what}: {', '.join(f'{v:g}' if isinstance(v, float) else str(v) for v in repeats)} "
                      "given more than once; each setting is tried once", UserWarning, stacklevel=2)
    return out


def cmd_tune(args) -> int:
    """Search balance c, likelihood and regularizer strengths by held-out validation; table, figure, run file."""
    from .atomic import staged_folder
    from .backend import to_numpy
    from .io import build_problem, load_dataset
    from .io.problem_builder import LIKELIHOODS
    from .solvers import check_solver_options, get_solver, solve_staged
    from .tune import choose, settings_grid, tune
    from .validation import DEFAULT_FRACTION

    cfg = run_config(args)
    _check_folder(args, [args.data, args.config])
    fraction, seed, _, patience, _ = validation_settings(cfg)
    fraction = fraction if fraction is not None else DEFAULT_FRACTION
    if not (math.isfinite(args.tolerance) and 0 <= args.tolerance < 1):
        msg = f"--tolerance must be in [0, 1); got {args.tolerance}"
        raise ConfigError(msg)
    likelihoods = _distinct([v.strip() for v in args.likelihoods.split(",") if v.strip()], "--likelihoods")
    bad = [v for v in likelihoods if v not in LIKELIHOODS]
    if bad or not likelihoods:
        msg = f"--likelihoods takes a comma-separated subset of {', '.join(LIKELIHOODS)}; got {args.likelihoods!r}"
        raise ConfigError(msg)
    grids: dict = {}
    for item in args.strength or []:
        index, _, values = item.partition(":")
        if not index.strip().isdigit() or int(index) >= len(cfg["regularizers"]):
            msg = (f"--strength {item!r}: expected INDEX:v1,v2,... with INDEX the position (0, 1, ...) of a "
                   f"--regularizer among the {len(cfg['regularizers'])} given")
            raise ConfigError(msg)
        grids[int(index)] = _number_list(values, f"--strength {index}", positive=False)
    grid = settings_grid(_number_list(args.c, "--c"), likelihoods, grids)
    opts = dict(cfg["solver_options"])
    check_solver_options(cfg["solver"], get_solver(cfg["solver"]), opts)
    ds = load_dataset(args.data, terms=cfg["terms"], allow_external=args.allow_external_links, precision=cfg["dtype"])
    names = [spec["name"] for spec in cfg["regularizers"]]
    common = _build_options(cfg)

    def setting_cfg(setting):
        """The run configuration of one setting (its c, likelihood and regularizer strengths)."""
        specs = [dict(spec) for spec in cfg["regularizers"]]
        for i, v in setting.strengths:
            specs[i]["strength"] = v
        return dict(cfg, balance_c=setting.balance_c, likelihood=setting.likelihood, regularizers=specs)

    def build(setting, validation, vseed, score=False):
        if score:  # default losses, unit weights, no regularizer: only the held-out values matter
            return build_problem(ds, balance=False, **dict(common, likelihood="balanced", regularizers=(),
                                                             validation=validation, validation_seed=vseed))
        own = setting_cfg(setting)
        return build_problem(ds, **dict(common, balance_c=own["balance_c"], likelihood=own["likelihood"],
                                        regularizers=_regularizers(own["regularizers"]), validation=validation,
                                        validation_seed=vseed))

    def solve(problem, x0, stop):
        return solve_staged(problem, x0, solver=cfg["solver"], maxiter=cfg["iterations"],
                            refine_after=refine_after(cfg), stopping=stop, **opts)

    def progress(trial):
        print(f"{trial.setting.label(names)}: score {trial.score:.4f} at iteration {trial.best_iteration} "
              f"({trial.status}, {trial.wall_s:.1f} s)" + ("" if np.isnan(trial.error) else
                                                            f", true error {trial.error:.4f}"), flush=True)

    _HELD.release()
    trials = tune(build, solve, grid, fraction, seed, patience, progress, args.budget)
    best = choose(trials, args.tolerance)
    outdir = Path(args.output)
    chosen = setting_cfg(best.setting)
    with staged_folder(outdir, [args.data, args.config]) as stage:  # never through a link already there
        _write_tune(stage, trials, best, names, chosen, fraction, seed, patience, ds, shown=outdir)
    if args.refit:  # what chosen.toml runs: all the data, the chosen iteration count
        problem = build(best.setting, None, seed)
        refit_cfg, res, _ = _refit(problem, chosen, best.best_iteration, show=False)
        err = problem.relative_errors(res.x).get("total", np.nan)
        print(f"refit on all the data, {refit_cfg['iterations']} iterations: {res.status}"
              + ("" if np.isnan(err) else f", true error {err:.4f} (tuned fit: {best.error:.4f})"))
        from .io import save_result

        save_result(outdir / "refit.h5", {k: to_numpy(v) for k, v in res.arrays.items()}, res.history,
                    dict(refit_cfg, data=str(args.data)), res.status, res.message)
    return 0


def _write_run_file(path, cfg, stopping) -> None:
    """A TOML run file of the chosen settings (``mmip reconstruct --config``): every run key of ``cfg`` (solver and
    term options, refinement, coupling, regularizers, ...) and the ``[stopping]`` table ``stopping``."""
    from .config import to_toml

    Path(path).write_text(to_toml(dict(cfg, stopping=stopping)))


def _write_tune(outdir, trials, best, names, chosen, fraction, seed, patience, ds, shown=None) -> None:
    from .report import _plt, markdown_table

    truth = bool(ds.truth)
    header = ["setting", "score", *(f"held-out {t}" for t in best.per_term), "best iteration", "status", "time (s)"] \
        + (["true error"] if truth else [])
    rows = [[("**" if t is best else "") + t.setting.label(names) + ("**" if t is best else ""), f"{t.score:.4f}",
             *(f"{t.per_term[k]:.4f}" for k in best.per_term), str(t.best_iteration), t.status, f"{t.wall_s:.1f}"]
            + ([f"{t.error:.4f}"] if truth else []) for t in trials]
    table = markdown_table(header, rows)
    # the default: all the data, as many iterations as the validation chose (measured better than the held-out fit
    # itself on every case of docs/validation.md); the held-out fit as chosen_validation.toml
    _write_run_file(outdir / "chosen.toml", _refit_config(chosen, best.best_iteration), {})
    _write_run_file(outdir / "chosen_validation.toml", chosen, {"rule": "validation", "patience": patience,
                                                                "fraction": fraction, "seed": seed, "refit": False})
    text = (f"# mmip tune\n\nscore: sum over terms of the held-out loss at the best-validation iterate over that of "
            f"the flat start (default losses; lower is better); {fraction:g} of every term held out (seed {seed}), "
            f"patience {patience}.\n\n{table}\n\nchosen: {best.setting.label(names)}, {max(best.best_iteration, 1)} "
            "iterations on all the data -> chosen.toml (the held-out fit itself: chosen_validation.toml)\n")
    (outdir / "table.md").write_text(text)
    print(table)
    print(f"chosen: {best.setting.label(names)}, {max(best.best_iteration, 1)} iterations; wrote "
          f"{shown or outdir}/table.md, tune.png, chosen.toml, chosen_validation.toml")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    balanced = [t for t in trials if t.setting.likelihood == "balanced" and t.setting.balance_c is not None]
    groups: dict = {}
    for t in balanced:
        groups.setdefault(t.setting.strengths, []).append(t)
    for strengths, ts in groups.items():
        label = "balanced" + "".join(f", {names[i]}={v:g}" for i, v in strengths)
        ax.semilogx([t.setting.balance_c for t in ts], [t.score for t in ts], "o-", label=f"score: {label}")
        if truth:
            ax.semilogx([t.setting.balance_c for t in ts], [t.error for t in ts], "s--", label=f"true error: {label}")
    for t in trials:
        if t.setting.likelihood != "balanced":
            ax.axhline(t.score, color="C3", lw=1, label=f"score: {t.setting.label(names)}")
            if truth:
                ax.axhline(t.error, color="C3", lw=1, ls="--", label=f"true error: {t.setting.label(names)}")
    ax.set_xlabel("balance c")
    ax.set_ylabel("validation score / true error")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(outdir / "tune.png", dpi=100)
    plt.close(fig)


def cmd_report(args) -> int:
    from .atomic import staged_folder
    from .io import load_result
    from .report import plot_histories, plot_reconstructions
    from .solvers import History

    _check_folder(args, [args.result])
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
        extra_lines, _ = _report_sections({"result": res["variables"]}, start, None, outdir)
        lines += ["", *extra_lines]
        (outdir / "report.md").write_text("\n".join(lines))
    print(f"wrote {args.output}/report.md")
    return 0


def _importers() -> list:
    """``[(name, importer)]`` of the registered importers, in the order they run (their ``order``)."""
    from .plugins import get_registry

    registry = get_registry()
    items = [(n, registry.get("importer", n)) for n in registry.names("importer")]
    return sorted(items, key=lambda item: (getattr(item[1], "order", 100), item[0]))


def cmd_import(args) -> int:
    """Each registered importer whose flag was given reads its file into a data term; the variables are those the
    modalities infer from the terms; the dataset is written without touching any input."""
    from .io import Dataset, save_dataset
    from .io.dataset import infer_variables, take_variables
    from .safety import MemoryBudget, check_outputs, regular_input

    given = [(name, imp, getattr(args, f"import_{name}", None)) for name, imp in _importers()]
    given = [(name, imp, path) for name, imp, path in given if path]
    files = [getattr(args, f"opt_{k}") for _, imp in _importers()  # importer options that name input files
             for k, spec in (getattr(imp, "options", None) or {}).items() if spec.get("file")]
    check_outputs([args.output], [path for *_, path in given] + [p for p in files if p])
    if not given:
        flags = " and/or ".join(f"--{getattr(imp, 'flag', name)} FILE" for name, imp in _importers())
        msg = f"nothing to import: give {flags}"
        raise ConfigError(msg)
    for *_, path in given:
        regular_input(path, "input file")
    if not (np.isfinite(args.balance_c) and args.balance_c > 0):
        msg = f"--balance-c must be a finite number > 0, got {args.balance_c}"
        raise ConfigError(msg)
    context: dict = {"allow_external": args.allow_external_links, "attrs": {},
                     "importing": [getattr(imp, "flag", name) for name, imp, _ in given]}  # the flags given
    for _, importer in _importers():  # the importers' own options (e.g. an axis unit), checked by their type
        for k, spec in (getattr(importer, "options", None) or {}).items():
            value = getattr(args, f"opt_{k}")
            if spec.get("type") is float and not (np.isfinite(value) and value > 0):
                msg = f"--{k.replace('_', '-')} must be a finite number > 0, got {value}"
                raise ConfigError(msg)
            context[k] = value
    terms = {}
    for _, importer, path in given:
        term = importer(path, context)
        terms[term.name] = term
    variables = infer_variables(str(args.output), terms)
    take_variables(args.output, variables, MemoryBudget())  # a shape the files imply, refused before it is allocated
    attrs = {"balance_c": args.balance_c, **context["attrs"]}
    save_dataset(args.output, Dataset(variables, terms, {}, attrs))
    print(f"wrote {args.output}: variables " + ", ".join(f"{v.name}{list(v.shape)}" for v in variables) + "; "
          + ", ".join(f"{k} ({v.arrays['data'].shape})" for k, v in terms.items()))
    return 0


def cmd_hessian(args) -> int:
    from .atomic import staged_folder
    from .hessian import hessian_study
    from .io.problem_builder import balance_reference

    cfg = run_config(args)
    _check_folder(args, [args.data, args.config])
    for k in ("dense_max", "k", "grid"):
        if getattr(args, k) < 1:
            msg = f"--{k.replace('_', '-')} must be >= 1, got {getattr(args, k)}"
            raise ConfigError(msg)
    if cfg["refine"]:
        msg = "--refine: the Hessian study is over the object (x, w) at the true point; run it without --refine"
        raise ConfigError(msg)
    ds, joint = _build(args.data, cfg, allow_external=args.allow_external_links)
    reference = balance_reference(joint.term_names, ds, cfg["balance_reference"]) if len(joint.term_names) > 1 \
        else joint.term_names[0]
    with staged_folder(args.output, [args.data, args.config]) as stage:  # never through a link already there
        summary = hessian_study(ds, joint, stage, dense_max=args.dense_max, k=args.k, grid=args.grid,
                                reference=reference)
    print(summary.replace(f"wrote {stage}/", f"wrote {args.output}/"))
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``mmip <command>: error: ...``, exit 2), like every other bad input.

    ``plugin_flags(parser)`` (optional) adds what the registered plugins declare (flags, the list of cases); it runs
    when this parser is used or its help shown, so only the commands that need the plugins load them (``mmip
    --help`` and ``mmip reconstruct`` do not import every plugin's physics)."""

    def __init__(self, *args, plugin_flags=None, **kwargs):
        super().__init__(*args, **kwargs)
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


def _simulate_flags(s) -> None:
    """The flags the registered simulations declare, and the list of cases (one line each) under ``--help``."""
    from .plugins import get_registry

    registry = get_registry()
    rows = {r.name: r for r in registry.rows() if r.kind == "simulation"}
    names = registry.names("simulation")
    width = max((len(n) for n in names), default=0)
    lines = []
    for name in names:
        case = registry.get("simulation", name)
        about = getattr(case, "help", None) or (getattr(case, "__doc__", None) or "").strip().split("\n")[0]
        dist = rows[name].dist if name in rows else ""
        lines.append(f"  {name.ljust(width)}  {_one_line(str(about))}" + (f" [{dist}]" if dist else ""))
    s.epilog = ("cases:\n" + "\n".join(lines)) if lines else "no simulated cases are installed (mmip plugins)"
    for k, spec in _simulation_parameters().items():
        s.add_argument("--" + spec.get("flag", k.replace("_", "-")), dest=f"sim_{k}", help=spec.get("help"),
                       metavar=None if spec.get("choices") else k.upper(),
                       type=str if spec.get("type") is list else spec.get("type", str), choices=spec.get("choices"))


def _import_flags(s) -> None:
    """The arguments of ``mmip import``: one flag per registered importer, then the importers' own options."""
    for name, importer in _importers():
        s.add_argument(f"--{getattr(importer, 'flag', name)}", dest=f"import_{name}", metavar="FILE",
                       help=getattr(importer, "help", f"a file for the {name!r} importer"))
    s.add_argument("--allow-external-links", action="store_true",
                   help="follow HDF5 external links and virtual datasets (trusted facility layouts only)")
    for _, importer in _importers():
        for k, spec in (getattr(importer, "options", None) or {}).items():
            s.add_argument("--" + k.replace("_", "-"), dest=f"opt_{k}", type=spec.get("type", str),
                           default=spec.get("default"), choices=spec.get("choices"), help=spec.get("help"))
    s.add_argument("--balance-c", type=float, default=0.01)
    s.add_argument("-o", "--output", required=True)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mmip", description="Joint inverse problems over modalities sharing unknowns.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("plugins", help="list installed plugins (kind, name, dist, version, status)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_plugins)

    s = sub.add_parser("simulate", help="simulate a registered case (the paper's by mmip-paper) into a dataset file",
                       formatter_class=argparse.RawDescriptionHelpFormatter, plugin_flags=_simulate_flags)
    s.add_argument("case", help="a registered case (listed below)")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--noise", type=float, default=0.0, help="relative Poisson noise level (0.03 = 3%%)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_simulate)

    def run_flags(s):
        s.add_argument("--solver")
        s.add_argument("--terms", help="comma-separated data terms (default: all)")
        s.add_argument("--iterations", type=int)
        s.add_argument("--config", help="TOML run file (keys mirror the flags)")
        s.add_argument("--backend", choices=("numpy", "cupy"))
        s.add_argument("--dtype", choices=("float32", "float64"))
        s.add_argument("--balance-c", dest="balance_c", type=float)
        s.add_argument("--balance-reference", dest="balance_reference", metavar="TERM",
                       help="term kept at weight 1 by the balancing (default: the modality whose role is 'reference')")
        s.add_argument("--regularizer", dest="regularizer", action="append", metavar="NAME:STRENGTH:VARS",
                       help="add a regularizer, e.g. tv:1e-6:x,w or nonnegative::w (repeatable; run file: "
                            "regularizers = [{name='tv', strength=1e-6, variables=['x','w']}])")
        s.add_argument("--solver-option", action="append", metavar="KEY=VALUE")
        s.add_argument("--refine",
                       help="calibration unknowns refined with the object, comma-separated (names the modalities "
                            "offer; see docs/plugins.md)")
        s.add_argument("--refine-bound", dest="refine_bound", action="append", metavar="NAME=DISTANCE",
                       help="keep every entry of a refined unknown within DISTANCE of its start, e.g. positions=1.5 "
                            "(pixels; repeatable; run file: [refine_bound] table); L-BFGS then runs scipy's L-BFGS-B")
        s.add_argument("--refine-after", dest="refine_after", type=int,
                       help="iterations with the calibration fixed before it is refined (default: a third)")
        s.add_argument("--likelihood", choices=("balanced", "poisson"),
                       help="balanced: the paper's losses and weights (default); poisson: photon-count likelihoods, "
                            "weights from photons_per_unit (no beta)")
        s.add_argument("--coupling",
                       help="option 'coupling' of every term whose modality takes it (see docs/plugins.md)")
        s.add_argument("--chunk-memory", dest="chunk_memory", metavar="SIZE",
                       help="memory for one part of a split term (e.g. a run of scan positions) evaluated at a "
                            "time: 256M, 1G; 0 never splits (default: a quarter of the memory budget)")
        s.add_argument("--stop", choices=("iterations", "validation"),
                       help="iterations: run them all (default); validation: hold out a share of every term's data, "
                            "stop when its loss has not improved for --patience iterations, return the best iterate "
                            "(run file: [stopping] rule, patience, fraction, seed)")
        s.add_argument("--patience", type=int, help="iterations without a better validation loss before stopping (10)")
        s.add_argument("--validation-fraction", dest="validation_fraction", type=float,
                       help="share of every term's measured values held out (default 0.1 with --stop validation; "
                            "given alone, the validation loss is recorded without stopping)")
        s.add_argument("--validation-seed", dest="validation_seed", type=int, help="which values are held out (0)")
        s.add_argument("--accept-stall", dest="accept_stall", action="store_true",
                       help="exit 0 when the solver stalls (no acceptable step) instead of 3")
        s.add_argument("--allow-external-links", dest="allow_external_links", action="store_true",
                       help="follow HDF5 external links and virtual datasets of the data file (trusted layouts only)")

    s = sub.add_parser("reconstruct", help="reconstruct a dataset; writes a result file")
    s.add_argument("data")
    s.add_argument("-o", "--output", required=True)
    run_flags(s)
    s.add_argument("--checkpoint-every", dest="checkpoint_every", type=int)
    s.add_argument("--resume", action="store_true", help="continue from <output>.ckpt.h5")
    s.add_argument("--no-refit", dest="no_refit", action="store_true",
                   help="with --stop validation, return the held-out run's best iterate (fitted without the "
                        "held-out values) instead of refitting on all the data to its iteration (run file: "
                        "[stopping] refit = false)")
    s.add_argument("--mpi", action="store_true",
                   help="split the data over MPI ranks (automatic under mpiexec with more than one rank)")
    s.set_defaults(func=cmd_reconstruct)

    s = sub.add_parser("compare", help="joint versus each modality alone: error table, figures, report")
    s.add_argument("data")
    s.add_argument("-o", "--output", required=True)
    run_flags(s)
    s.set_defaults(func=cmd_compare)

    s = sub.add_parser("tune", help="choose balance c, likelihood and strengths by held-out validation")
    s.add_argument("data")
    s.add_argument("-o", "--output", required=True)
    run_flags(s)
    s.add_argument("--c", default="0.001,0.003,0.01,0.03,0.1,0.3,1",
                   help="balance constants to try (balanced likelihood), comma-separated")
    s.add_argument("--likelihoods", default="balanced", help="comma-separated: balanced, poisson")
    s.add_argument("--strength", action="append", metavar="INDEX:v1,v2,...",
                   help="strengths to try for the INDEX-th --regularizer (0, 1, ...); repeatable")
    s.add_argument("--budget", type=float, help="stop trying settings after this many seconds")
    s.add_argument("--tolerance", type=float, default=0.0,
                   help="scores within this fraction of the best count as equal; among them the balanced likelihood "
                        "and the smallest c are chosen (default 0: the lowest score; docs/validation.md compares)")
    s.add_argument("--refit", action="store_true",
                   help="also run chosen.toml (the chosen setting on all the data for its best iteration count): "
                        "refit.h5")
    s.set_defaults(func=cmd_tune)

    s = sub.add_parser("report", help="figures and a summary from a result file")
    s.add_argument("result")
    s.add_argument("-o", "--output", required=True)
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("import", help="facility files (one flag per registered importer) -> one dataset file",
                       plugin_flags=_import_flags)
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("hessian", help="Hessian eigenvalues and loss landscapes at the true point")
    s.add_argument("data")
    s.add_argument("-o", "--output", required=True)
    run_flags(s)
    s.add_argument("--dense-max", type=int, default=9000, help="largest size for a dense Hessian")
    s.add_argument("--k", type=int, default=40, help="eigenvalues at each end with Lanczos (large problems)")
    s.add_argument("--grid", type=int, default=21, help="landscape grid points per axis")
    s.set_defaults(func=cmd_hessian)
    return p


def _log_traceback(command) -> str:
    """Write the current exception's traceback to a log file; its path."""
    import os
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix=f"mmip-{command}-", suffix=".log")
    with os.fdopen(fd, "w") as fh:
        fh.write(traceback.format_exc())
    return path


#: characters the files written for an ``-o`` name add to it: the checkpoint (``.ckpt.h5``) and the temporaries
#: (``.<name>.<pid>.<machine>.<random>.tmp``, about 35), with room to spare
_DERIVED_NAME_CHARS = 64
#: commands whose ``-o`` is a folder (the files inside have short names of their own)
_FOLDER_OUTPUTS = ("compare", "tune", "report", "hessian")


def _check_output_path(args) -> None:
    """Refuse, before any work, an ``-o`` that could only fail or surprise when the result is written: a name (or
    the names derived from it) the file system cannot hold, an existing read-only output, a folder that cannot be
    written."""
    import os

    output = getattr(args, "output", None)
    if not isinstance(output, str) or not output or "\x00" in output:
        return  # empty names and NUL bytes: refused by check_outputs with their own messages
    path = Path(output)
    probe = path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        name_max = os.pathconf(probe, "PC_NAME_MAX")
        path_max = os.pathconf(probe, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    folder = args.command in _FOLDER_OUTPUTS
    parts = path.parts
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        n = len(os.fsencode(part))
        limit = name_max if folder or not last else name_max - _DERIVED_NAME_CHARS
        if n > limit:
            what = "the -o name" if last else "a folder name in -o"
            extra = "" if limit == name_max else (f" less {_DERIVED_NAME_CHARS} for the checkpoint and temporaries, "
                                                  f"so at most {limit}")
            msg = (f"{what} is {n} bytes long; this file system allows {name_max}{extra}: "
                   f"{part[:40]!r}...; choose a shorter name")
            raise ConfigError(msg)
    total = len(os.fsencode(os.path.abspath(output))) + _DERIVED_NAME_CHARS + (32 if folder else 0)
    if total > path_max:
        msg = f"-o {output[:40]!r}... is too long a path ({total} bytes with its derived files; at most {path_max})"
        raise ConfigError(msg)
    with contextlib.suppress(OSError):  # a read-only result is kept: its owner made it so (README, Hostile inputs)
        mode = os.stat(path).st_mode
        if not mode & 0o200 or not os.access(path, os.W_OK):
            what = "write into" if path.is_dir() else "replace"
            msg = (f"refusing to {what} {output}: the {'folder' if path.is_dir() else 'file'} exists and is "
                   "read-only (make it writable, e.g. chmod u+w, or choose another -o)")
            raise ConfigError(msg)
    if probe.is_dir() and not os.access(probe, os.W_OK | os.X_OK):
        msg = f"cannot write {output}: the folder {probe} is not writable"
        raise ConfigError(msg)


class _HeldWarnings:
    """The warning lines of the running command, held until its work starts (:meth:`release`, called once the
    inputs are read and checked): a command refused for bad input prints its one error line alone."""

    def __init__(self):
        self.lines: list | None = None  # None: shown as they come

    def show(self, line: str) -> None:
        if self.lines is None:
            print(line, file=sys.stderr)
        else:
            self.lines.append(line)

    def release(self) -> None:
        lines, self.lines = self.lines, None
        for line in lines or ():
            print(line, file=sys.stderr)


_HELD = _HeldWarnings()


def _install_interrupts(program: bool) -> tuple[dict, list]:
    """SIGTERM (and SIGINT, where Python's own handler is set) raise one ``KeyboardInterrupt``; later signals of a
    storm are ignored while the run ends with 130. A signal the process started with ignored (``nohup``, a shell's
    background job) stays ignored. Returns the previous handlers and the list a signal is recorded in."""
    import signal

    caught: list = []

    def on_signal(signum, frame):  # pragma: no cover - exercised by the signal tests in a subprocess
        if caught:  # the run is already ending (exit 130): a storm of signals changes nothing
            return
        caught.append(signum)
        raise KeyboardInterrupt

    previous: dict = {}
    with contextlib.suppress(ValueError):  # not in the main thread (embedded use): keep the host's handlers
        for s in (signal.SIGTERM, signal.SIGINT):
            current = signal.getsignal(s)
            if current is signal.SIG_IGN or (s == signal.SIGINT and current is not signal.default_int_handler
                                             and not program):
                continue  # ignored by whoever started us, or a host's own Ctrl-C handler: leave it
            previous[s] = signal.signal(s, on_signal)
    return previous, caught


def _end_interrupts(previous: dict, interrupted: bool, program: bool) -> None:
    """Put the handlers back; a program that was interrupted ignores further signals instead (Python resets its
    handlers to the defaults while it shuts down, and a storm's next SIGTERM would then kill it: exit 143)."""
    import signal

    with contextlib.suppress(ValueError):
        for s, h in previous.items():
            signal.signal(s, signal.SIG_IGN if interrupted and program else h)


def main(argv=None) -> int:
    """The ``mmip`` command. ``argv=None``: the program's own command line (signals then end it with 130 however
    many arrive); a list: a call from Python, whose signal handlers are put back afterwards."""
    program = argv is None
    previous, caught = _install_interrupts(program)
    command = "mmip"
    interrupted = False
    outer, _HELD.lines = _HELD.lines, []  # (a nested call, e.g. from a plugin, holds its own)
    try:
        args = build_parser().parse_args(argv)
        command = f"mmip {args.command}"
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = lambda message, *_a, **_k: _HELD.show(
                f"{command}: warning: {_one_line(message)}")
            _check_output_path(args)
            code = args.func(args)
        _HELD.release()
        return code
    except (MultimodalIPError, MemoryError) as exc:
        _HELD.lines = None  # refused: the error line alone (the warnings come back once the input is fixed)
        print(f"{command}: error: " + (_one_line(exc) if isinstance(exc, MultimodalIPError) else
                                       "out of memory (set MMIP_MAX_MEMORY lower, or use a smaller problem)"),
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        interrupted = True
        caught.append(0)  # a signal while this line is printed is part of the same interruption
        _HELD.release()
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug still gives one clean line; the traceback goes to a log
        _HELD.release()
        log = _log_traceback(command.removeprefix("mmip ") or "mmip")
        print(f"{command}: internal error: {_one_line(f'{type(exc).__name__}: {exc}')[:300]} "
              f"(traceback in {log}; please report it)", file=sys.stderr)
        return 1
    finally:
        _HELD.lines = outer
        _end_interrupts(previous, interrupted or bool(caught), program)


if __name__ == "__main__":  # pragma: no cover - python -m multimodal_ip.cli: the program (see _entry)
    from multimodal_ip._entry import finish

    sys.exit(finish(main()))
