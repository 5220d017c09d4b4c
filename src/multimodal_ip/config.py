"""Run configuration: defaults <- TOML run file <- command-line flags, checked key by key."""

__all__ = ["RUN_KEYS", "DEFAULTS", "STOPPING_KEYS", "parse_value", "run_config", "validation_settings", "to_toml"]

import json
import math
import numbers
import re
from typing import Any

from .errors import ConfigError, one_line

RUN_KEYS = {
    "solver": str, "terms": list, "iterations": int, "backend": str, "checkpoint_every": int,
    "balance_c": float, "solver_options": dict, "term_options": dict, "dtype": str,
    "refine": list, "refine_after": int, "likelihood": str, "coupling": str, "balance_reference": str,
    "regularizers": list, "chunk_memory": str, "stopping": dict, "refine_bound": dict,
}
#: keys of the run file's ``[stopping]`` table (flags --stop, --patience, --validation-fraction, --validation-seed,
#: --no-refit)
STOPPING_KEYS = {"rule": str, "patience": int, "fraction": float, "seed": int, "min_delta": float, "refit": bool}
DEFAULTS: dict[str, Any] = {
            "solver": "lbfgs", "terms": None, "iterations": 100, "backend": "numpy", "checkpoint_every": 10,
            "balance_c": None, "solver_options": {}, "term_options": {}, "dtype": "float32",
            "refine": [], "refine_after": None, "likelihood": "balanced", "coupling": None,
            "balance_reference": None, "regularizers": [], "chunk_memory": None, "stopping": {}, "refine_bound": {}}


#: written to every run file, even at their defaults (a reader sees what ran)
_ALWAYS = ("solver", "iterations", "likelihood", "dtype")
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


def _toml_key(key) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", str(key)) else json.dumps(str(key))


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, numbers.Integral):  # numpy integers too (their repr is not TOML)
        return str(int(v))
    if isinstance(v, numbers.Real):
        return repr(float(v))
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    msg = f"cannot write {v!r} ({type(v).__name__}) to a run file"
    raise ConfigError(msg)


def to_toml(cfg: dict) -> str:
    """A TOML run file of the run keys of ``cfg`` that differ from :data:`DEFAULTS` (and the solver, iterations,
    likelihood and dtype always): ``mmip reconstruct --config`` reads back the same configuration."""
    lines, tables = [], []
    for key in RUN_KEYS:
        value = cfg.get(key, DEFAULTS[key])
        if value is None or (value == DEFAULTS[key] and key not in _ALWAYS):
            continue
        if key == "term_options":
            tables += [(f"term_options.{_toml_key(term)}", opts) for term, opts in value.items() if opts]
        elif isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables:
        lines += ["", f"[{name}]", *(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


def parse_value(text: str):
    """A flag value as bool/int/float/str: parsed, never evaluated."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _read_toml(path) -> dict:
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    from .errors import DataError
    from .safety import read_text_capped

    try:
        raw = read_text_capped(path, "run file")
    except DataError as exc:
        raise ConfigError(str(exc)) from None
    try:
        cfg = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        msg = f"{path}: run file is not valid UTF-8 text"
        raise ConfigError(msg) from None
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        msg = f"{path}: invalid TOML ({one_line(exc)[:200]})"
        raise ConfigError(msg) from None
    return cfg


def _regularizer_flag(text: str) -> dict:
    """``NAME:STRENGTH:VAR1,VAR2`` (``tv:1e-6:x,w``; ``nonnegative::w``; ``box:0,1:x`` for lower,upper)."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[0].strip() or not parts[2].strip():
        msg = f"--regularizer expects NAME:STRENGTH:VARIABLES (e.g. tv:1e-6:x,w or nonnegative::w), got {text!r}"
        raise ConfigError(msg)
    name, strength, names = (p.strip() for p in parts)
    spec: dict = {"name": name, "variables": [v.strip() for v in names.split(",") if v.strip()]}
    if strength:
        values = [parse_value(v) for v in strength.split(",")]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) or len(values) > 2:
            msg = f"--regularizer {text!r}: strength must be a number (or lower,upper for box)"
            raise ConfigError(msg)
        if name == "box":
            spec.update(lower=float(values[0]), upper=float(values[-1]))
        else:
            spec["strength"] = float(values[0])
    return spec


def _check_regularizers(specs, where) -> None:
    import math

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
    if spec.get("rule", "iterations") not in ("iterations", "validation"):
        msg = f"{where}: stopping rule must be 'iterations' or 'validation', got {spec['rule']!r}"
        raise ConfigError(msg)
    if "fraction" in spec and not 0 < spec["fraction"] < 1:
        msg = f"{where}: stopping fraction (held out for validation) must be in (0, 1), got {spec['fraction']!r}"
        raise ConfigError(msg)
    for k, lo in (("patience", 1), ("seed", 0), ("min_delta", 0)):
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


def _check_run(cfg: dict) -> None:
    """Checks across settings of the merged configuration (run file and flags): the built-in solvers' option
    ranges, and a warning for each setting that has no effect in this run."""
    import warnings

    opts = cfg.get("solver_options") or {}
    if cfg.get("solver") in _BUILTIN_SOLVERS:
        for k in _BUILTIN_SOLVERS[cfg["solver"]]:
            accepts, what = _SOLVER_OPTION_RANGES[k]
            v = opts.get(k)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not accepts(v):
                msg = f"solver {cfg['solver']!r} option {k}={v!r}: expected a number {what}"
                raise ConfigError(msg)
        c1, c2 = opts.get("c1", 1e-4), opts.get("c2", 0.9)
        if "c1" in _BUILTIN_SOLVERS[cfg["solver"]] and ("c1" in opts or "c2" in opts) and not c1 < c2:
            msg = f"solver {cfg['solver']!r} options c1={c1!r}, c2={c2!r}: expected 0 < c1 < c2 < 1 (Wolfe)"
            raise ConfigError(msg)
    stopping = cfg.get("stopping") or {}
    if stopping.get("rule", "iterations") != "validation":
        unused = [k for k in ("patience", "min_delta") if k in stopping]
        if unused and cfg.get("command") != "tune":
            warnings.warn(f"{' and '.join(unused)} {'has' if len(unused) == 1 else 'have'} no effect without "
                          "--stop validation (run file: [stopping] rule = \"validation\")", UserWarning, stacklevel=2)
    if cfg.get("refine_after") is not None and not cfg.get("refine"):
        warnings.warn("refine_after (--refine-after) has no effect without --refine: nothing is refined",
                      UserWarning, stacklevel=2)
    if cfg.get("command") == "tune" and cfg.get("balance_c") is not None:
        warnings.warn("balance_c (--balance-c) has no effect in tune: it tries the values of --c", UserWarning,
                      stacklevel=2)
    elif cfg.get("likelihood") == "poisson" and cfg.get("command") != "tune":
        unused = [k for k in ("balance_c", "balance_reference") if cfg.get(k) is not None]
        if unused:
            warnings.warn(f"{' and '.join(unused)} {'has' if len(unused) == 1 else 'have'} no effect with "
                          "--likelihood poisson (the weights come from each term's photons_per_unit)",
                          UserWarning, stacklevel=2)


def validation_settings(cfg: dict) -> tuple:
    """``(fraction or None, seed, rule, patience, min_delta)`` of a run: a fraction is held out when the rule is
    ``validation`` (default 10 %) or a fraction is given (then the validation loss is only recorded)."""
    from .validation import DEFAULT_FRACTION

    spec = cfg.get("stopping") or {}
    rule = spec.get("rule", "iterations")
    fraction = spec.get("fraction", DEFAULT_FRACTION if rule == "validation" else None)
    return fraction, int(spec.get("seed", 0)), rule, int(spec.get("patience", 10)), float(spec.get("min_delta", 0.0))


def _check_config(cfg: dict, where: str) -> dict:
    if isinstance(cfg.get("coupling"), list):  # coupling = [1.0, 0.5] in a run file: the flag's "1.0,0.5"
        cfg["coupling"] = ",".join(str(c) for c in cfg["coupling"])
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
    _check_regularizers(cfg.get("regularizers") or [], where)
    _check_stopping(cfg.get("stopping") or {}, where)
    _check_term_options(cfg.get("term_options") or {}, where)
    _check_solver_options(cfg.get("solver_options") or {}, where)
    if cfg.get("balance_c") is not None and not (math.isfinite(cfg["balance_c"]) and 0 < cfg["balance_c"] < 1e100):
        msg = f"{where}: balance_c must be a finite number > 0, got {cfg['balance_c']!r}"
        raise ConfigError(msg)
    if cfg.get("terms") is not None:
        if not cfg["terms"] or not all(isinstance(t, str) and t for t in cfg["terms"]):
            msg = f"{where}: terms must be a non-empty list of term names"
            raise ConfigError(msg)
        if len(set(cfg["terms"])) != len(cfg["terms"]):
            msg = f"{where}: terms lists a term twice: {cfg['terms']}"
            raise ConfigError(msg)
    if cfg.get("chunk_memory") is not None:
        from .safety import parse_size

        try:
            parse_size(cfg["chunk_memory"], allow_zero=True)
        except ValueError:
            msg = (f"{where}: chunk_memory must be a size such as 256M, 1G or 0 (never split), "
                   f"got {cfg['chunk_memory']!r}")
            raise ConfigError(msg) from None
    for k in ("iterations", "refine_after"):
        if cfg.get(k) is not None and cfg[k] < 0:
            msg = f"{where}: {k} must be >= 0"
            raise ConfigError(msg)
    if cfg.get("backend", "numpy") not in ("numpy", "cupy"):
        msg = f"{where}: backend must be 'numpy' or 'cupy', got {cfg['backend']!r}"
        raise ConfigError(msg)
    if cfg.get("dtype", "float32") not in ("float32", "float64"):
        msg = f"{where}: dtype must be 'float32' or 'float64', got {cfg['dtype']!r}"
        raise ConfigError(msg)
    from .io.problem_builder import LIKELIHOODS

    if cfg.get("likelihood", "balanced") not in LIKELIHOODS:
        msg = f"{where}: likelihood must be one of {', '.join(map(repr, LIKELIHOODS))}, got {cfg['likelihood']!r}"
        raise ConfigError(msg)
    refine = cfg.get("refine") or []
    if not all(isinstance(r, str) and r.isidentifier() for r in refine) or len(set(refine)) != len(refine):
        msg = f"{where}: refine takes distinct names of calibration unknowns (e.g. from `mmip plugins`); got {refine}"
        raise ConfigError(msg)
    from .io.problem_builder import is_distance

    for k, d in (cfg.get("refine_bound") or {}).items():
        if not (isinstance(k, str) and k.isidentifier() and is_distance(d)):
            msg = (f"{where}: refine_bound takes a finite distance > 0 per refined unknown (e.g. positions = 1.5); "
                   f"got {k!r} = {d!r}")
            raise ConfigError(msg)
    return cfg


def run_config(args) -> dict:
    """Defaults <- TOML run file <- command-line flags."""
    cfg = dict(DEFAULTS)
    if getattr(args, "config", None):
        cfg.update(_check_config(_read_toml(args.config), str(args.config)))
    flags = {}
    for k in ("solver", "iterations", "backend", "checkpoint_every", "balance_c", "dtype", "likelihood", "coupling",
              "refine_after", "balance_reference", "chunk_memory"):
        if getattr(args, k, None) is not None:
            flags[k] = getattr(args, k)
    for k in ("terms", "refine"):
        if getattr(args, k, None) is not None and (k == "terms" or getattr(args, k)):
            flags[k] = [t.strip() for t in getattr(args, k).split(",") if t.strip()]
    if getattr(args, "regularizer", None):
        flags["regularizers"] = [_regularizer_flag(t) for t in args.regularizer]
    if getattr(args, "refine_bound", None):
        bounds = dict(cfg.get("refine_bound") or {})
        for item in args.refine_bound:
            name, sep, value = item.partition("=")
            if not sep:
                msg = f"--refine-bound expects NAME=DISTANCE (e.g. positions=1.5), got {item!r}"
                raise ConfigError(msg)
            bounds[name.strip()] = parse_value(value)
        flags["refine_bound"] = bounds
    stop = {k: getattr(args, a) for k, a in (("rule", "stop"), ("patience", "patience"),
                                             ("fraction", "validation_fraction"), ("seed", "validation_seed"))
            if getattr(args, a, None) is not None}
    if stop:
        flags["stopping"] = dict(cfg.get("stopping") or {}, **stop)
    if getattr(args, "solver_option", None):
        opts = dict(cfg["solver_options"])
        for item in args.solver_option:
            if "=" not in item:
                msg = f"--solver-option expects key=value, got {item!r}"
                raise ConfigError(msg)
            k, v = item.split("=", 1)
            opts[k.strip()] = parse_value(v)
        flags["solver_options"] = opts
    cfg.update(_check_config(flags, "command line"))
    _check_run(dict(cfg, command=getattr(args, "command", None)))
    return cfg
