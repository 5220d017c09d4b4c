"""What the commands of ``mmip`` share: building a problem from a run configuration, solving it with a progress
bar, refitting, exit statuses, output folders, the flags of a run, and the warnings held until a command's work
starts. A plugin's command may use :func:`add_run_flags`, :func:`build`, :func:`start_values` and
:func:`check_folder`."""

__all__ = ["add_run_flags", "build", "check_folder", "refine_after", "resolve_stop", "start_values"]

import contextlib
import sys
import warnings
from pathlib import Path

import numpy as np

from ..config import validation_settings
from ..errors import ConfigError, exit_code


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


def _solve_with_progress(problem, cfg, desc, resume_state=None, on_iteration=None, show=True, start=None):
    """Solve ``problem`` as ``cfg`` says (the variables of ``freeze`` held), from ``start`` (``{variable: array}``,
    :func:`~multimodal_ip.start.read_start`) where given and the problem's own start elsewhere."""
    from ..solvers import solve_staged
    from ..start import freeze, start_point
    bar = _progress(cfg["iterations"], 0 if resume_state is None else resume_state["iteration"], desc) if show else None

    def callback(state):
        if bar is not None:
            row = state.history.last()
            bar.set_postfix({k.removeprefix("objective_"): f"{v:.3g}" for k, v in row.items()
                             if k.startswith("objective_")}, refresh=False)
            bar.update(1)
        if on_iteration is not None:
            on_iteration(state)

    from ..solvers import Handover, check_solver_options, get_solver

    opts = dict(cfg["solver_options"])
    check_solver_options(cfg["solver"], get_solver(cfg["solver"]), opts)
    if "release_last" in (getattr(get_solver(cfg["solver"]), "options", None) or {}):
        opts.setdefault("release_last", True)  # checkpoints are saved before the last iteration only
    from ..validation import stopping_rule

    problem = freeze(problem, cfg.get("freeze"))
    opts["stopping"] = stopping_rule(cfg, problem)  # None: the iterations
    x0 = Handover(start_point(problem, start))  # the solver's first iterate, kept by no frame through the run
    if resume_state is None:
        _check_start(problem, desc, x0.array)
    _HELD.release()  # the inputs are read and checked: the run's warnings now, before its progress
    try:
        return solve_staged(problem, x0, solver=cfg["solver"], maxiter=cfg["iterations"],
                            refine_after=refine_after(cfg), callback=callback, resume_state=resume_state, **opts)
    finally:
        if bar is not None:
            bar.close()


def _refit_config(cfg, best_iteration) -> dict:
    """The run configuration of a refit: ``cfg`` on all the data (no stopping rule, nothing held out) for the
    iteration count a held-out run chose, with the calibration refined after as many iterations as in that run."""
    out = dict(cfg, iterations=max(int(best_iteration), 1), stopping={"rule": "iterations"})
    if cfg["refine"]:
        out["refine_after"] = refine_after(cfg)
    return out


def _whole_data_problem(ds, cfg):
    """The run's problem on all the data of ``ds`` (already read): no stopping rule, nothing held out; what a refit
    after ``--stop validation`` solves (``mmip reconstruct`` and ``mmip compare``)."""
    from ..io import build_problem

    return build_problem(ds, options=_build_options(dict(cfg, stopping={})))


def _refit(problem, cfg, best_iteration, desc="refit", show=True, start=None):
    """Refit on all the data (``problem``, built without a holdout) to the iteration a run on held-out data chose
    (``mmip reconstruct --stop validation`` and ``mmip tune --refit``): ``(refit configuration, result, seconds)``."""
    import time

    refit_cfg = _refit_config(cfg, best_iteration)
    t0 = time.perf_counter()
    res = _solve_with_progress(problem, refit_cfg, desc, show=show, start=start)
    return refit_cfg, res, time.perf_counter() - t0


class _Counted(Exception):
    """Ends :func:`_measured_values`'s read of a file once its terms' shapes are known."""


def _measured_values(path, terms, allow_external) -> tuple:
    """``({term: its data's size (0 without)}, variable names)`` of ``path``: no data read."""
    from ..io import load_dataset

    counts, names = dict[str, int](), list[str]()

    def plan(space, lazy, nbytes):
        counts.update({n: int(np.prod(t.arrays["data"].shape)) if "data" in t.arrays else 0 for n, t in lazy.items()})
        names.extend(space.names)
        raise _Counted

    with contextlib.suppress(_Counted):
        load_dataset(path, terms=terms, allow_external=allow_external, plan=plan)
    return counts, names


def resolve_stop(path, cfg, terms=None, allow_external=False) -> str:
    """Decide the stopping rule ``auto`` (``mmip reconstruct``'s default), set as ``cfg["stopping"]["rule"]``:
    ``validation`` for **one** data term, a variable not frozen (a known object runs its iterations), no
    ``calibration=estimator``, more iterations than the patience and :data:`~multimodal_ip.validation.MIN_HELD_OUT`
    values to hold out (:func:`~multimodal_ip.validation.auto_validation`'s share and refit); else
    ``iterations`` (joint runs: the validation loss follows the dominant term, docs/validation.md).

    Parameters
    ----------
    path : :obj:`str`
        The data file (only its structure is read).
    cfg : :obj:`dict`
        The run configuration; its ``stopping`` table is changed in place.
    terms : :obj:`list`, optional
        The run's data terms (default: every term of the file).
    allow_external : :obj:`bool`, optional
        Follow HDF5 external links.

    Returns
    -------
    why : :obj:`str`
        The decision and its reason (the result's ``config.stop_auto``), ``""`` when the rule was given.
    """
    from ..validation import MIN_HELD_OUT, auto_validation

    spec = dict(cfg["stopping"] or {})
    if spec.get("rule", "auto") != "auto":
        return ""
    counts, names = _measured_values(path, terms, allow_external)
    spec, patience = auto_validation(spec, min(counts.values(), default=0)), int(spec.get("patience", 10))
    fraction = float(spec["fraction"])
    if len(counts) != 1:
        rule, why = "iterations", f"{len(counts)} data terms (the joint balance decides what validation follows)"
    elif names and set(names) <= set(cfg.get("freeze") or ()):  # a known object: held-out values stop nothing
        rule, why = "iterations", f"{', '.join(names)} frozen: only calibration unknowns move"
    elif (cfg.get("solver_options") or {}).get("calibration") == "estimator":  # rounds of estimates: none held out
        rule, why = "iterations", "calibration=estimator alternates with the term's estimator"
    elif cfg["iterations"] <= patience:
        rule, why = "iterations", f"{cfg['iterations']} iterations, not more than the patience {patience}"
    elif min(counts.values()) * fraction < MIN_HELD_OUT:
        rule, why = "iterations", f"{min(counts.values())} measured values, too few to hold {fraction:g} out"
    else:
        rule, why = "validation", f"one data term of {next(iter(counts.values()))} values, {fraction:g} held out"
    cfg["stopping"] = dict(spec if rule == "validation" else cfg["stopping"] or {}, rule=rule)  # auto's: validation
    if rule == "iterations" and (unused := [k for k in ("patience", "min_delta") if k in spec]):
        warnings.warn(f"{' and '.join(unused)} {'has' if len(unused) == 1 else 'have'} no effect: --stop auto runs "
                      f"the iterations ({why})", stacklevel=2)
    return f"auto: {rule} ({why})"


def _chunk_bytes(text):
    from ..safety import parse_size

    return None if text is None else parse_size(text, allow_zero=True)


def _regularizers(specs) -> list:
    """Regularizer objects from run-file/flag specs ``{"name", "variables", "strength"?, other keyword options}``."""
    import inspect

    from ..plugins import get_registry

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


def _check_start(problem, desc, x0) -> None:
    """Refuse, before iterating, a start point where a term's objective or the gradient is not finite."""
    with np.errstate(all="ignore"):
        lin = problem.linearize(x0)  # objectives and gradient in one evaluation
    bad = {k: v for k, v in lin.objectives.items() if not np.isfinite(v)}
    if not bad and not bool(problem.xp.all(problem.xp.isfinite(lin.gradient))):
        bad = {"gradient": "non-finite entries"}
    if bad:
        shown = ", ".join(f"{k}: {v}" for k, v in bad.items())
        msg = (f"{desc}: the objective is not finite at the start point ({shown}); check the data, weights and "
               "likelihood settings (e.g. photons_per_unit, balance_c)")
        raise ConfigError(msg)


def _build_options(cfg):
    """The :class:`~multimodal_ip.io.problem_builder.BuildOptions` a run configuration gives (built once, shared
    by the one-process and the MPI path)."""
    from ..io.problem_builder import BuildOptions

    validation, validation_seed = validation_settings(cfg)[:2]
    return BuildOptions(balance_c=cfg["balance_c"], term_options=cfg["term_options"], xp=_xp(cfg["backend"]),
                        dtype=cfg["dtype"], refine=cfg["refine"], likelihood=cfg["likelihood"],
                        coupling=cfg["coupling"], reference=cfg["balance_reference"],
                        chunk_bytes=_chunk_bytes(cfg["chunk_memory"]), refine_bounds=cfg["refine_bound"],
                        regularizers=_regularizers(cfg["regularizers"]), validation=validation,
                        validation_seed=validation_seed)


def start_values(cfg, ds, problem, allow_external=False) -> dict | None:
    """The start values of a run's ``start`` setting (``--start``), read and checked against ``problem``'s
    variables; ``None`` without one.

    Parameters
    ----------
    cfg : :obj:`dict`
        The run configuration (``start``, ``coupling``).
    ds : :class:`~multimodal_ip.io.Dataset`
        The run's data (its truth; the plugins' readers see its attributes and terms).
    problem : :class:`~multimodal_ip.problem.objective.Objective`
        The built problem (its variables).
    allow_external : :obj:`bool`, optional
        Accept HDF5 external links and storage in the start file.

    Returns
    -------
    values : :obj:`dict` or :obj:`None`
        ``{variable: array}`` (:func:`~multimodal_ip.start.read_start`).
    """
    if cfg.get("start") is None:
        return None
    from ..start import read_start

    return read_start(cfg["start"], problem.space, dataset=ds, allow_external=allow_external,
                      coupling=cfg.get("coupling"))


def build(args_data, cfg, terms=None, comm=None, allow_external=False, fit_budget=True, plan=None):
    from dataclasses import replace

    from ..distributed import agree, build_distributed_problem
    from ..io import build_problem, load_dataset
    from ..run_budget import run_planner

    terms = terms if terms is not None else cfg["terms"]
    options = _build_options(cfg) if comm is None else agree(comm, _build_options, cfg)  # (one node without cupy)
    plan = plan or (run_planner(cfg, comm=comm, release_last=True) if fit_budget else None)  # fitted before the read
    if comm is not None:  # each rank reads only its share of the split data, and plans for it
        return build_distributed_problem(args_data, comm, terms, options, allow_external, plan=plan)
    ds = load_dataset(args_data, terms=terms, allow_external=allow_external, precision=cfg["dtype"], plan=plan)
    return ds, build_problem(ds, options=replace(options, chunk_bytes=_chunk_bytes(cfg["chunk_memory"])))


def _final_status(args, problem, res, label="") -> int:
    """The exit code of a solve; for a stall, the last line names a term whose gradient fails a Taylor test."""
    code = exit_code(res.status, getattr(args, "accept_stall", False))
    if res.status == "stalled":
        from ..diagnose import check_term_gradients

        bad = {k: v for k, v in check_term_gradients(problem, res.x).items() if v}
        why = ("; ".join(f"term {k!r} fails the gradient Taylor test ({v.split(': ', 1)[-1]})" for k, v in bad.items())
               if bad else "every term's gradient passes the Taylor test (likely a round-off limit: the iterate is "
                           "usable; --accept-stall exits 0)")
        print(f"mmip {args.command}: {label}stalled: {res.message}; {why}", file=sys.stderr)
    elif res.status == "failed":
        print(f"mmip {args.command}: {label}failed: {res.message}", file=sys.stderr)
    return code


def _report_sections(arrays, start, truth, outdir, problems=None, dataset=None) -> tuple[list, dict]:
    """Markdown for what the report plugins add (tables printed too, figures written under ``outdir``)."""
    from ..report import markdown_table, plugin_reports

    extras = plugin_reports(arrays, start, truth, outdir, problems=problems, dataset=dataset)
    lines = []
    for title, header, rows in extras["tables"]:
        table = markdown_table(header, rows)
        print(table)
        lines += [f"## {title}", "", table, ""]
    for title, name in extras["figures"]:
        lines += [f"![{title}]({name})", ""]
    return lines, extras


def check_folder(args, inputs) -> None:
    """The output folder ``args.output`` and every file the command writes there (its
    :attr:`~multimodal_ip.cli.command.Command.folder_files`, set as ``args.folder_files`` by the parser) are no
    input, at any spelling."""
    from ..safety import check_outputs

    check_outputs([args.output], inputs, folder=True)
    check_outputs([Path(args.output) / n for n in args.folder_files], inputs)


def add_run_flags(s) -> None:
    """The flags of a run (``mmip reconstruct``, ``compare``, ``tune``; a plugin's command may add them too): solver,
    terms, iterations, regularizers, refinement, likelihood, stopping rule, ... (read by
    :func:`~multimodal_ip.config.run_config`)."""
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
    s.add_argument("--stop", choices=("auto", "iterations", "validation", "noise"),
                   help="iterations: run them all; validation: hold out a share of every term's data, stop when its "
                        "loss has not improved for --patience iterations, refit to the best one; auto (mmip "
                        "reconstruct's default): validation for one data term with more --iterations than --patience "
                        "and enough values, else iterations; noise: stop once the data misfit is what the noise leaves "
                        "(the terms' photons_per_unit) (run file: [stopping] rule, patience, fraction, seed)")
    s.add_argument("--patience", type=int, help="iterations without a better validation loss before stopping (10)")
    s.add_argument("--validation-fraction", dest="validation_fraction", type=float,
                   help="share of every term's measured values held out (default 0.1 with --stop validation; "
                        "with --stop iterations the validation loss is recorded without stopping)")
    s.add_argument("--validation-seed", dest="validation_seed", type=int, help="which values are held out (0)")
    s.add_argument("--start", metavar="SOURCE[:VARS]",
                   help="start values instead of ones: 'truth' (the data file's /truth), a result file of mmip "
                        "reconstruct, or a reconstruction a plugin reads (a ptychodus product .h5 or .cxi); ':x,w' "
                        "takes only those variables (default: every variable the source holds that the problem has; "
                        "run file: start = \"truth:x,w\")")
    s.add_argument("--freeze", metavar="VARS",
                   help="comma-separated variables held at their start values (e.g. x,w with --refine positions "
                        "--start truth:x,w: the calibration alone is refined; run file: freeze = [\"x\", \"w\"])")
    s.add_argument("--accept-stall", dest="accept_stall", action="store_true",
                   help="exit 0 when the solver stalls (no acceptable step) instead of 3")
    s.add_argument("--allow-external-links", dest="allow_external_links", action="store_true",
                   help="follow HDF5 external links and virtual datasets of the data file (trusted layouts only)")
