"""The checks of a run configuration (:mod:`multimodal_ip.config`): each source of settings key by key, then the
merged settings across keys (option ranges of the built-in solvers, warnings for settings with no effect)."""

__all__ = ["RUN_KEYS", "STOPPING_KEYS", "check_config", "check_run"]

import math

from .errors import ConfigError, one_line

RUN_KEYS = {
    "solver": str, "terms": list, "iterations": int, "backend": str, "checkpoint_every": int,
    "balance_c": float, "solver_options": dict, "term_options": dict, "dtype": str,
    "refine": list, "refine_after": int, "likelihood": str, "coupling": str, "balance_reference": str,
    "regularizers": list, "chunk_memory": str, "stopping": dict, "refine_bound": dict, "start": str, "freeze": list,
}
#: keys of the run file's ``[stopping]`` table (flags --stop, --patience, --validation-fraction, --validation-seed,
#: --no-refit, --refit-from, --refit-iterations)
STOPPING_KEYS = {"rule": str, "patience": int, "fraction": float, "seed": int, "min_delta": float, "refit": bool,
                 "refit_from": str, "refit_iterations": int, "noise_factor": float}
#: the largest size of a numeric setting that is squared or divided by (a regularizer's eps, a solver's tau)
_MAX_SETTING = 1e100
#: term options the problem builder sets itself, and where a user sets them
_BUILDER_TERM_OPTIONS = {"refine": "--refine (run file: refine)", "calibration": "the other terms (not settable)"}
#: solver options the run sets itself
_RUN_SOLVER_OPTIONS = {"maxiter": "--iterations (run file: iterations)", "callback": "the run (not settable)",
                       "stopping": "--stop (run file: [stopping] rule)", "resume_state": "--resume"}
#: ``option: (accepts, what)`` of the built-in solvers' numeric options (beyond the type checks every solver gets)
_SOLVER_OPTION_RANGES = {"c1": (lambda v: 0 < v < 1, "in (0, 1)"), "c2": (lambda v: 0 < v < 1, "in (0, 1)"),
                         "tau": (lambda v: 0 < v < _MAX_SETTING, "> 0 and < 1e100"),
                         "inner_rtol": (lambda v: 0 < v <= 1, "in (0, 1]"),
                         "max_time_s": (lambda v: 0 <= v < math.inf, ">= 0 (seconds)")}
#: which of those ranges each built-in solver's options have (another solver's options are its own to check)
_BUILTIN_SOLVERS = {"lbfgs": ("c1", "c2", "max_time_s"), "gauss-newton": ("inner_rtol", "max_time_s"),
                    "admm": ("tau", "max_time_s")}


def _check_regularizers(specs, where) -> None:
    for spec in specs:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) \
                or not isinstance(spec.get("variables"), list) or not spec["variables"] \
                or not all(isinstance(v, str) for v in spec["variables"]):
            msg = f"{where}: each regularizer needs name (text) and variables (a list of names); got {spec!r}"
            raise ConfigError(msg)
        for k, v in spec.items():
            if k in ("name", "variables"):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
                msg = f"{where}: regularizer {spec['name']!r} setting {k!r} must be a number, got {v!r}"
                raise ConfigError(msg)
        if "strength" in spec and not (math.isfinite(spec["strength"]) and spec["strength"] >= 0):
            msg = f"{where}: regularizer {spec['name']!r} strength must be finite and >= 0"
            raise ConfigError(msg)
        for k, v in spec.items():  # other settings (tv's eps, ...): squared or divided by, so of a sane size
            if k not in ("name", "variables", "strength", "lower", "upper") and not (math.isfinite(v)
                                                                                     and 0 <= v < _MAX_SETTING):
                msg = f"{where}: regularizer {spec['name']!r} setting {k!r} must be finite, >= 0 and < 1e100, got {v!r}"
                raise ConfigError(msg)


def _check_stopping(spec: dict, where: str) -> None:
    for k, v in spec.items():
        if k not in STOPPING_KEYS:
            msg = f"{where}: unknown stopping setting {k!r}; known: {', '.join(STOPPING_KEYS)}"
            raise ConfigError(msg)
        want = STOPPING_KEYS[k]
        accepted = (int, float) if want is float else want
        if isinstance(v, bool) is not (want is bool) or not isinstance(v, accepted):
            msg = f"{where}: stopping setting {k!r} must be {want.__name__}, got {type(v).__name__} {v!r}"
            raise ConfigError(msg)
    if spec.get("rule", "iterations") not in ("auto", "iterations", "validation", "noise"):
        msg = f"{where}: stopping rule must be 'auto', 'iterations', 'validation' or 'noise', got {spec['rule']!r}"
        raise ConfigError(msg)
    if "noise_factor" in spec and not (math.isfinite(spec["noise_factor"]) and spec["noise_factor"] > 0):
        msg = f"{where}: stopping noise_factor must be finite and > 0, got {spec['noise_factor']!r}"
        raise ConfigError(msg)
    if "fraction" in spec and not 0 < spec["fraction"] < 1:
        msg = f"{where}: stopping fraction (held out for validation) must be in (0, 1), got {spec['fraction']!r}"
        raise ConfigError(msg)
    if spec.get("refit_from", "start") not in ("start", "best"):
        msg = f"{where}: stopping refit_from must be 'start' or 'best', got {spec['refit_from']!r}"
        raise ConfigError(msg)
    for k, lo in (("patience", 1), ("seed", 0), ("min_delta", 0), ("refit_iterations", 1)):
        if k in spec and not (math.isfinite(spec[k]) and spec[k] >= lo):
            msg = f"{where}: stopping {k} must be >= {lo}, got {spec[k]!r}"
            raise ConfigError(msg)


def _check_term_options(spec: dict, where: str) -> None:
    """``term_options``: a table per term of plain values (text, numbers, booleans, lists of them), none of them an
    option the problem builder sets itself."""
    for term, opts in spec.items():
        if not isinstance(opts, dict):
            msg = (f"{where}: term_options.{term} must be a table of options (e.g. [term_options.{term}] "
                   f'loss = "poisson"), got {type(opts).__name__} {opts!r}')
            raise ConfigError(one_line(msg)[:300])
        for k, v in opts.items():
            if k in _BUILDER_TERM_OPTIONS:
                msg = f"{where}: term_options.{term}.{k} is set by {_BUILDER_TERM_OPTIONS[k]}, not per term"
                raise ConfigError(msg)
            if isinstance(v, dict) or (isinstance(v, float) and not math.isfinite(v)):
                msg = f"{where}: term_options.{term}.{k} must be text, a finite number or a list, got {v!r}"
                raise ConfigError(one_line(msg)[:300])


def _check_solver_options(opts: dict, where: str) -> None:
    """What no solver takes as an option (what the run sets itself) and values no solver accepts (a table)."""
    for k, v in opts.items():
        if k in _RUN_SOLVER_OPTIONS:
            msg = f"{where}: solver option {k!r} is set by {_RUN_SOLVER_OPTIONS[k]}, not as a solver option"
            raise ConfigError(msg)
        if isinstance(v, (dict, list)):
            msg = f"{where}: solver option {k!r} must be text, a number or true/false, got {one_line(repr(v))[:80]}"
            raise ConfigError(msg)


def _check_solver_ranges(cfg: dict) -> None:
    """The built-in solvers' option ranges (``_SOLVER_OPTION_RANGES``) and the Wolfe order of ``c1 < c2``."""
    solver = cfg.get("solver")
    if solver not in _BUILTIN_SOLVERS:
        return
    opts = cfg.get("solver_options") or {}
    for k in _BUILTIN_SOLVERS[solver]:
        accepts, what = _SOLVER_OPTION_RANGES[k]
        v = opts.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not accepts(v)):
            msg = f"solver {solver!r} option {k}={v!r}: expected a number {what}"
            raise ConfigError(msg)
    c1, c2 = opts.get("c1", 1e-4), opts.get("c2", 0.9)
    if "c1" in _BUILTIN_SOLVERS[solver] and ("c1" in opts or "c2" in opts) and not c1 < c2:
        msg = f"solver {solver!r} options c1={c1!r}, c2={c2!r}: expected 0 < c1 < c2 < 1 (Wolfe)"
        raise ConfigError(msg)


def _have(unused: list) -> str:
    """``"a has"`` / ``"a and b have"``: the settings a warning names."""
    return f"{' and '.join(unused)} {'has' if len(unused) == 1 else 'have'}"


def _unused_stopping(cfg: dict) -> str | None:
    stopping = cfg.get("stopping") or {}
    unused = [k for k in ("patience", "min_delta") if k in stopping]
    rule = stopping.get("rule", "auto" if cfg.get("command") == "reconstruct" else "iterations")
    if rule in ("auto", "validation") or not unused or cfg.get("command") == "tune":
        return None
    return f"{_have(unused)} no effect without --stop validation (run file: [stopping] rule = \"validation\")"


def _unused_refine_after(cfg: dict) -> str | None:
    if cfg.get("refine_after") is not None and not cfg.get("refine"):
        return "refine_after (--refine-after) has no effect without --refine: nothing is refined"
    return None


def _unused_balance(cfg: dict) -> str | None:
    if cfg.get("command") == "tune":
        if cfg.get("balance_c") is not None:
            return "balance_c (--balance-c) has no effect in tune: it tries the values of --c"
        return None
    unused = [k for k in ("balance_c", "balance_reference") if cfg.get(k) is not None]
    if cfg.get("likelihood") == "poisson" and unused:
        return (f"{_have(unused)} no effect with --likelihood poisson (the weights come from each term's "
                "photons_per_unit)")
    return None


#: settings with no effect in a run, each one warning (or ``None``), in the order they are warned about
_UNUSED_SETTINGS = (_unused_stopping, _unused_refine_after, _unused_balance)


def check_run(cfg: dict) -> None:
    """Checks across settings of the merged configuration (run file and flags): the built-in solvers' option
    ranges, and a warning for each setting that has no effect in this run."""
    import warnings

    _check_solver_ranges(cfg)
    for unused in _UNUSED_SETTINGS:
        message = unused(cfg)
        if message is not None:
            warnings.warn(message, UserWarning, stacklevel=2)


def _check_types(cfg: dict, where: str) -> None:
    """Every key known (``RUN_KEYS``) and of its type; an integer is a valid float setting, a boolean no number."""
    for k, v in cfg.items():
        if k not in RUN_KEYS:
            msg = f"{where}: unknown setting {k!r}; known: {', '.join(sorted(RUN_KEYS))}"
            raise ConfigError(msg)
        want = RUN_KEYS[k]
        accepted = (int, float) if want is float else want  # an integer is a valid float setting
        is_bool_for_number = isinstance(v, bool) and want in (int, float)
        if v is not None and (not isinstance(v, accepted) or is_bool_for_number):
            msg = f"{where}: setting {k!r} must be {want.__name__}, got {type(v).__name__} {v!r}"
            raise ConfigError(msg)


def _check_balance_c(cfg: dict, where: str) -> None:
    if cfg.get("balance_c") is not None and not (math.isfinite(cfg["balance_c"]) and 0 < cfg["balance_c"] < 1e100):
        msg = f"{where}: balance_c must be a finite number > 0, got {cfg['balance_c']!r}"
        raise ConfigError(msg)


def _check_terms(cfg: dict, where: str) -> None:
    if cfg.get("terms") is None:
        return
    if not cfg["terms"] or not all(isinstance(t, str) and t for t in cfg["terms"]):
        msg = f"{where}: terms must be a non-empty list of term names"
        raise ConfigError(msg)
    if len(set(cfg["terms"])) != len(cfg["terms"]):
        msg = f"{where}: terms lists a term twice: {cfg['terms']}"
        raise ConfigError(msg)


def _check_chunk_memory(cfg: dict, where: str) -> None:
    if cfg.get("chunk_memory") is None:
        return
    from .safety import parse_size

    try:
        parse_size(cfg["chunk_memory"], allow_zero=True)
    except ValueError:
        msg = f"{where}: chunk_memory must be a size such as 256M, 1G or 0 (never split), got {cfg['chunk_memory']!r}"
        raise ConfigError(msg) from None


def _check_counts(cfg: dict, where: str) -> None:
    for k in ("iterations", "refine_after"):
        if cfg.get(k) is not None and cfg[k] < 0:
            msg = f"{where}: {k} must be >= 0"
            raise ConfigError(msg)


def _likelihoods() -> tuple:
    from .io.problem_builder import LIKELIHOODS

    return LIKELIHOODS


#: ``(setting, default, choices, "one of" in the message)``: settings that name one of a few values
_CHOICES = (("backend", "numpy", lambda: ("numpy", "cupy"), False),
            ("dtype", "float32", lambda: ("float32", "float64"), False),
            ("likelihood", "balanced", _likelihoods, True))


def _check_choices(cfg: dict, where: str) -> None:
    for k, default, choices, one_of in _CHOICES:
        allowed = choices()
        if cfg.get(k, default) not in allowed:
            shown = f"one of {', '.join(map(repr, allowed))}" if one_of else " or ".join(map(repr, allowed))
            msg = f"{where}: {k} must be {shown}, got {cfg[k]!r}"
            raise ConfigError(msg)


def _check_refine(cfg: dict, where: str) -> None:
    refine = cfg.get("refine") or []
    if not all(isinstance(r, str) and r.isidentifier() for r in refine) or len(set(refine)) != len(refine):
        msg = f"{where}: refine takes distinct names of calibration unknowns (e.g. from `mmip plugins`); got {refine}"
        raise ConfigError(msg)


def _check_start_freeze(cfg: dict, where: str) -> None:
    """``start``: ``SOURCE[:VARS]`` (:func:`~multimodal_ip.start.parse_start`); ``freeze``: distinct variable names."""
    if cfg.get("start") is not None:
        from .start import parse_start

        try:
            parse_start(cfg["start"])
        except ConfigError as exc:
            msg = f"{where}: {exc}"
            raise ConfigError(msg) from None
    freeze = cfg.get("freeze") or []
    if not all(isinstance(n, str) and n.isidentifier() for n in freeze) or len(set(freeze)) != len(freeze):
        msg = f"{where}: freeze takes distinct variable names (e.g. freeze = [\"x\", \"w\"]); got {freeze}"
        raise ConfigError(msg)


def _check_refine_bound(cfg: dict, where: str) -> None:
    from .io.problem_builder import is_distance

    for k, d in (cfg.get("refine_bound") or {}).items():
        if not (isinstance(k, str) and k.isidentifier() and is_distance(d)):
            msg = (f"{where}: refine_bound takes a finite distance > 0 per refined unknown (e.g. positions = 1.5); "
                   f"got {k!r} = {d!r}")
            raise ConfigError(msg)


def _check_tables(cfg: dict, where: str) -> None:
    """``regularizers``, ``[stopping]``, ``[term_options]`` and ``[solver_options]``, each by its own check."""
    _check_regularizers(cfg.get("regularizers") or [], where)
    _check_stopping(cfg.get("stopping") or {}, where)
    _check_term_options(cfg.get("term_options") or {}, where)
    _check_solver_options(cfg.get("solver_options") or {}, where)


#: the checks of one source of settings (run file or flags), in the order their errors are reported
_CONFIG_CHECKS = (_check_types, _check_tables, _check_balance_c, _check_terms, _check_chunk_memory, _check_counts,
                  _check_choices, _check_refine, _check_refine_bound, _check_start_freeze)


def check_config(cfg: dict, where: str) -> dict:
    """``cfg`` (the settings of one source, named ``where``: a run file or ``command line``) checked key by key;
    the first problem is one :class:`~multimodal_ip.errors.ConfigError` line naming it."""
    if isinstance(cfg.get("coupling"), list):  # coupling = [1.0, 0.5] in a run file: the flag's "1.0,0.5"
        cfg["coupling"] = ",".join(str(c) for c in cfg["coupling"])
    for check in _CONFIG_CHECKS:
        check(cfg, where)
    return cfg
