"""``mmip tune``: choose the balance constant, likelihood, regularizer strengths and model by held-out validation;
a table, a figure and the chosen run files in the output folder."""

__all__ = ["COMMAND"]

import math
import warnings
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..config import run_config, validation_settings
from ..errors import ConfigError
from ..tune import MODEL_MARGIN
from .command import Command
from .common import (
    _HELD,
    _build_options,
    _refit,
    _refit_config,
    _regularizers,
    add_run_flags,
    check_folder,
    refine_after,
    start_values,
)


def add_arguments(s) -> None:
    s.add_argument("data")
    s.add_argument("-o", "--output", required=True)
    add_run_flags(s)
    s.add_argument("--c", default="0.001,0.003,0.01,0.03,0.1,0.3,1",
                   help="balance constants to try (balanced likelihood), comma-separated")
    s.add_argument("--likelihoods", default="balanced", help="comma-separated: balanced, poisson")
    s.add_argument("--strength", action="append", metavar="INDEX:v1,v2,...",
                   help="strengths to try for the INDEX-th --regularizer (0, 1, ...); repeatable")
    s.add_argument("--models", default="auto",
                   help="auto (default): the grid on the run's own model, then the model alternatives the data's "
                        "modalities offer (ptychography: matrix, coupling, ...) at the chosen setting, all scored "
                        "together; or the models to try with every setting of the grid, comma-separated: 'tied' "
                        "(the run's own; 'tied' alone: the grid only) or unknowns refined besides the "
                        "run's, joined by '+' (e.g. tied,matrix,coupling,matrix+coupling; names the modalities "
                        "offer, see `mmip plugins`), each optionally followed by term options of the model, "
                        "@KEY=VALUE (e.g. matrix@matrix_smoothing_px=2: given to every term whose modality takes KEY)")
    s.add_argument("--score", default="worst", choices=("worst", "sum", "start"),
                   help="worst (default): each term's held-out loss over the best any setting reached, the largest "
                        "ratio; sum: those ratios summed; start: each over the flat start's, summed (the score "
                        "before models were tuned; docs/real_samples.md compares)")
    s.add_argument("--budget", type=float, help="stop trying settings after this many seconds")
    s.add_argument("--tolerance", type=float, default=0.0,
                   help="scores within this fraction of the best count as equal; among them the balanced likelihood "
                        "and the smallest c are chosen (default 0: the lowest score; docs/validation.md compares)")
    s.add_argument("--model-margin", type=float, default=MODEL_MARGIN,
                   help=f"with --models auto, a model alternative is chosen only when its score is below 1 - this "
                        f"times the grid's choice on the run's own model (default {MODEL_MARGIN})")
    s.add_argument("--refit", action="store_true",
                   help="also run chosen.toml (the chosen setting on all the data for its best iteration count): "
                        "refit.h5")


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


def run(args) -> int:
    """Search balance c, likelihood and regularizer strengths by held-out validation; table, figure, run file."""
    from ..atomic import staged_folder
    from ..backend import to_numpy
    from ..io import build_problem, load_dataset
    from ..io.problem_builder import LIKELIHOODS
    from ..solvers import check_solver_options, get_solver, solve_staged
    from ..start import freeze, start_file, start_point
    from ..tune import choose, choose_model, explain, settings_grid, tune, tune_planner
    from ..validation import DEFAULT_FRACTION

    cfg = run_config(args)
    check_folder(args, [args.data, args.config, start_file(cfg["start"])])
    fraction, seed, _, patience, _ = validation_settings(cfg)
    fraction = fraction if fraction is not None else DEFAULT_FRACTION
    for flag, value in (("--tolerance", args.tolerance), ("--model-margin", args.model_margin)):
        if not (math.isfinite(value) and 0 <= value < 1):
            msg = f"{flag} must be in [0, 1); got {value}"
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
    auto = args.models.strip() == "auto"
    grid = settings_grid(_number_list(args.c, "--c"), likelihoods, grids,
                         [((), ())] if auto else _models(args.models, cfg["refine"]))
    opts = dict(cfg["solver_options"])
    check_solver_options(cfg["solver"], get_solver(cfg["solver"]), opts)
    plan, planned = tune_planner(cfg, grid, fraction, (lambda terms: _alternatives(SimpleNamespace(terms=terms),
                                                                                  cfg["refine"])) if auto else None)
    ds = load_dataset(args.data, terms=cfg["terms"], allow_external=args.allow_external_links, precision=cfg["dtype"],
                      plan=plan)
    cfg.update(chunk_memory=planned["chunk_memory"], solver_options=planned["solver_options"])  # what it fitted
    opts = dict(cfg["solver_options"])
    alternatives = _alternatives(ds, cfg["refine"]) if auto else []
    takes = _option_terms(ds, {k for s in grid for k, _ in s.options} | {k for _, o in alternatives for k, _ in o},
                          args.models)
    names = [spec["name"] for spec in cfg["regularizers"]]
    common = _build_options(cfg)

    def setting_cfg(setting):
        """The run configuration of one setting (its c, likelihood and regularizer strengths)."""
        specs = [dict(spec) for spec in cfg["regularizers"]]
        for i, v in setting.strengths:
            specs[i]["strength"] = v
        terms = {t: dict(o) for t, o in cfg["term_options"].items()}
        for k, v in setting.options:  # the model's term options, to every term that takes them
            for t in takes[k]:
                terms.setdefault(t, {})[k] = v
        return dict(cfg, balance_c=setting.balance_c, likelihood=setting.likelihood, regularizers=specs,
                    refine=[*cfg["refine"], *setting.refine], refine_after=_model_after(cfg, setting.refine),
                    term_options=terms)

    def build(setting, validation, vseed, score=False):
        refine = (*cfg["refine"], *setting.refine)
        own = setting_cfg(setting)
        if score:  # default losses, unit weights, no regularizer: only the held-out values matter
            return build_problem(ds, options=common, balance=False, likelihood="balanced", regularizers=(),
                                 validation=validation, validation_seed=vseed, refine=refine,
                                 term_options=own["term_options"])
        return build_problem(ds, options=common, balance_c=own["balance_c"], likelihood=own["likelihood"],
                             regularizers=_regularizers(own["regularizers"]), validation=validation,
                             validation_seed=vseed, refine=refine, term_options=own["term_options"])

    starts: dict = {}  # --start, read against each model's own problem (its variables), once per model
    optional = {n for s in grid for n in s.refine} | {n for r, _ in alternatives for n in r}

    def start_of(problem):
        key = tuple(problem.space.names)
        if key not in starts:
            spec = _own_start(cfg["start"], problem.space, optional)
            starts[key] = start_values(dict(cfg, start=spec), ds, problem, args.allow_external_links)
        return starts[key]

    def solve(problem, x0, stop):
        values = start_of(problem)
        problem = freeze(problem, cfg["freeze"])
        x0 = start_point(problem, values) if values is not None else x0
        return solve_staged(problem, x0, solver=cfg["solver"], maxiter=cfg["iterations"],
                            refine_after=refine_after(dict(cfg, refine_after=_model_after(cfg, problem.calibration))),
                            stopping=stop, **opts)

    if cfg["start"] is not None:  # every model's start values read (or refused) before the first fit
        for refine, options in dict.fromkeys([(x.refine, x.options) for x in grid] + [tuple(map(tuple, a)) for a in
                                                                                      alternatives]):
            start_of(build(replace(grid[0], refine=refine, options=options), fraction, seed))

    def progress(trial):
        held = ", ".join(f"{k} {v:.4g}" for k, v in trial.held.items())
        print(f"{trial.setting.label(names)}: held-out {held} at iteration {trial.best_iteration} "
              f"({trial.status}, {trial.wall_s:.1f} s)" + ("" if np.isnan(trial.error) else
                                                            f", true error {trial.error:.4f}"), flush=True)

    _HELD.release()
    trials = tune(build, solve, grid, fraction, seed, patience, progress, args.budget, args.score, alternatives,
                  args.tolerance)
    best = choose_model(trials, len(grid), args.tolerance, args.model_margin) if auto else choose(trials,
                                                                                                 args.tolerance)
    if len(trials) > len(grid):
        at = replace(trials[len(grid)].setting, refine=(), options=()).label(names)
        models = (f"the run's model over the grid, then {', '.join(t.setting.model for t in trials[len(grid):])} "
                  f"at its choice ({at}); --models tied: the grid alone")
    elif auto:
        models = "the run's model over the grid " + ("(the budget ran out before the model alternatives)"
                                                     if alternatives else "(no model alternatives offered)")
    else:
        models = f"{args.models}, each over the grid"
    print(f"models: {models}\nchosen {explain(best, trials, names)}")
    outdir = Path(args.output)
    chosen = setting_cfg(best.setting)
    with staged_folder(outdir, [args.data, args.config]) as stage:  # never through a link already there
        _write_tune(stage, trials, best, names, chosen, (fraction, seed, patience, args.score, models), ds,
                    shown=outdir)
    if args.refit:  # what chosen.toml runs: all the data, the chosen iteration count
        problem = build(best.setting, None, seed)
        refit_cfg, res, _ = _refit(problem, chosen, best.best_iteration, show=False, start=start_of(problem))
        err = problem.relative_errors(res.x).get("total", np.nan)
        print(f"refit on all the data, {refit_cfg['iterations']} iterations: {res.status}"
              + ("" if np.isnan(err) else f", true error {err:.4f} (tuned fit: {best.error:.4f})"))
        from ..io import save_result

        save_result(outdir / "refit.h5", {k: to_numpy(v) for k, v in res.arrays.items()}, res.history,
                    dict(refit_cfg, data=str(args.data)), res.status, res.message)
    return 0


def _write_run_file(path, cfg, stopping) -> None:
    """A TOML run file of the chosen settings (``mmip reconstruct --config``): every run key of ``cfg`` (solver and
    term options, refinement, coupling, regularizers, ...) and the ``[stopping]`` table ``stopping``."""
    from ..config import to_toml

    Path(path).write_text(to_toml(dict(cfg, stopping=stopping)))


_SCORE_TEXT = {"worst": "the largest over terms of the term's held-out loss at the best-validation iterate over the "
                         "lowest any setting reached",
               "sum": "the sum over terms of the term's held-out loss at the best-validation iterate over the lowest "
                      "any setting reached",
               "start": "sum over terms of the held-out loss at the best-validation iterate over that of the flat "
                        "start"}


def _model_after(cfg, refined):
    """``refine_after`` of a setting: a model's unknowns (``refined`` when the run refines nothing itself) are part
    of the model, refined from the first iteration; otherwise the run's (its staging of calibration unknowns)."""
    return 0 if refined and not cfg["refine"] and cfg["refine_after"] is None else cfg["refine_after"]


def _models(text, refine) -> list:
    """``--models``: ``tied`` or ``+``-joined unknowns, each with optional ``@KEY=VALUE`` term options,
    comma-separated, as ``(unknowns besides refine, ((KEY, VALUE), ...))``."""
    out = []
    for item in str(text).split(","):
        model, *extra = item.split("@")
        names = () if model.strip() == "tied" else tuple(n.strip() for n in model.split("+"))
        options = tuple(_model_option(e, text) for e in extra)
        if "auto" in names:
            msg = f"--models auto stands alone (the grid, then the modalities' alternatives); got {text!r}"
            raise ConfigError(msg)
        if not model.strip() or not all(n.isidentifier() for n in names) or len(set(names)) != len(names) \
                or len({k for k, _ in options}) != len(options):
            msg = (f"--models takes 'tied' or unknowns joined by '+', each optionally with @KEY=VALUE term options "
                   f"(e.g. tied,matrix,matrix@matrix_smoothing_px=2,matrix+coupling), comma-separated; got {text!r}")
            raise ConfigError(msg)
        twice = [n for n in names if n in refine]
        if twice:
            msg = f"--models {item!r}: {twice} already refined by --refine (a model adds unknowns to the run's)"
            raise ConfigError(msg)
        out.append(("+".join(names) or "tied") + "".join(f"@{k}={v!r}" for k, v in options))
    models = []
    for m in _distinct(out, "--models"):
        model, *extra = m.split("@")
        models.append((() if model == "tied" else tuple(model.split("+")),
                       tuple(_model_option(e, text) for e in extra)))
    return models


def _alternatives(ds, refine) -> list:
    """The second stage of ``--models auto``: the model alternatives the data's modalities offer (capability
    ``models``), as :func:`_models` parses them; those adding an unknown the run refines itself left out. None for
    a single term: the alternatives loosen what ties a term to the others, and alone there is nothing to trade."""
    from ..modality import capabilities
    from ..plugins import get_registry

    if len(ds.terms) < 2:
        return []
    offered = [m for td in ds.terms.values() for m in capabilities(get_registry().get("modality", td.modality)).models]
    keep = [m for m in dict.fromkeys(offered) if not set(m.split("@")[0].split("+")) & set(refine)]
    return _models(",".join(keep), refine) if keep else []


def _own_start(spec, space, optional):
    """``--start`` for one model's problem: the variables it names that another model has but this one lacks
    (``optional``: the models' unknowns) left out; ``None`` when none is left (that model starts flat)."""
    from ..start import parse_start

    if spec is None:
        return None
    source, names = parse_start(spec)
    if names is None:
        return spec
    own = [n for n in names if n in space or n not in optional]
    return f"{source}:{','.join(own)}" if own else None


def _model_option(text, models) -> tuple:
    """``KEY=VALUE`` of a ``--models`` entry: ``(KEY, finite float VALUE)``."""
    key, _, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not key.strip().isidentifier() or not math.isfinite(number):
        msg = f"--models: term option {text!r} is not KEY=VALUE with a finite number VALUE; got {models!r}"
        raise ConfigError(msg)
    return key.strip(), number


def _option_terms(ds, keys, models) -> dict:
    """``{term option: terms whose modality takes it}`` for the model options ``keys`` (one the data's terms do
    not take: ConfigError)."""
    from ..modality import capabilities
    from ..plugins import get_registry

    registry = get_registry()
    takes = {k: [n for n, td in ds.terms.items() if k in capabilities(registry.get("modality", td.modality)).options]
             for k in sorted(keys)}
    stray = [k for k, terms in takes.items() if not terms]
    if stray:
        msg = f"--models {models!r}: no term of {ds.source} takes the option(s) {', '.join(stray)}"
        raise ConfigError(msg)
    return takes


def _write_tune(outdir, trials, best, names, chosen, rule, ds, shown=None) -> None:
    from ..report import markdown_table
    from ..tune import explain

    fraction, seed, patience, score, models = rule
    truth = bool(ds.truth)
    header = ["setting", "score", *(f"held-out {t}" for t in best.per_term), "best iteration", "status", "time (s)"] \
        + (["true error"] if truth else [])
    rows = [[("**" if t is best else "") + t.setting.label(names) + ("**" if t is best else ""), f"{t.score:.4f}",
             *(f"{t.per_term[k]:.4f}" for k in best.per_term), str(t.best_iteration), t.status, f"{t.wall_s:.1f}"]
            + ([f"{t.error:.4f}"] if truth else []) for t in trials]
    table = markdown_table(header, rows)
    # the default: all the data, as many iterations as the validation chose (measured better than the held-out fit
    # itself on every case of docs/validation.md); the held-out fit as chosen_validation.toml
    _write_run_file(outdir / "chosen.toml", _refit_config(chosen, best.best_iteration), {"rule": "iterations"})
    _write_run_file(outdir / "chosen_validation.toml", chosen, {"rule": "validation", "patience": patience,
                                                                "fraction": fraction, "seed": seed, "refit": False})
    text = (f"# mmip tune\n\nscore ({score}): {_SCORE_TEXT[score]} (default losses; lower is better; the held-out "
            f"columns are each term's ratio); {fraction:g} of every term held out (seed {seed}), patience {patience}."
            f"\n\nmodels: {models}."
            f"\n\n{table}\n\nchosen: {best.setting.label(names)}, {max(best.best_iteration, 1)} iterations on all the "
            f"data -> chosen.toml (the held-out fit itself: chosen_validation.toml)\n\nwhy: "
            f"{explain(best, trials, names)}\n")
    (outdir / "table.md").write_text(text)
    print(table)
    print(f"chosen: {best.setting.label(names)}, {max(best.best_iteration, 1)} iterations; wrote "
          f"{shown or outdir}/table.md, tune.png, chosen.toml, chosen_validation.toml")
    _plot(outdir / "tune.png", trials, names, truth)


def _plot(path, trials, names, truth) -> None:
    """The score (and the true error, where the dataset has a truth) against balance c: ``tune.png``."""
    from ..report import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    balanced = [t for t in trials if t.setting.likelihood == "balanced" and t.setting.balance_c is not None]
    groups: dict = {}
    for t in balanced:
        groups.setdefault((t.setting.model, t.setting.strengths), []).append(t)
    for (model, strengths), ts in groups.items():
        label = "balanced" + "".join(f", {names[i]}={v:g}" for i, v in strengths) \
            + (f", model={model}" if model != "tied" else "")
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
    fig.savefig(path, dpi=100)
    plt.close(fig)


COMMAND = Command(help="choose balance c, likelihood and strengths by held-out validation", add_arguments=add_arguments,
                  run=run, folder_files=("table.md", "tune.png", "chosen.toml", "chosen_validation.toml", "refit.h5"))
