"""Run configuration: defaults <- TOML run file <- command-line flags, checked key by key."""

__all__ = ["RUN_KEYS", "DEFAULTS", "STOPPING_KEYS", "parse_value", "run_config", "validation_settings", "to_toml"]

import json
import numbers
import re
from typing import Any

from ._config_checks import RUN_KEYS, STOPPING_KEYS, check_config, check_run
from .errors import ConfigError, one_line

DEFAULTS: dict[str, Any] = {
            "solver": "lbfgs", "terms": None, "iterations": 100, "backend": "numpy", "checkpoint_every": 10,
            "balance_c": None, "solver_options": {}, "term_options": {}, "dtype": "float32",
            "refine": [], "refine_after": None, "likelihood": "balanced", "coupling": None,
            "balance_reference": None, "regularizers": [], "chunk_memory": None, "stopping": {}, "refine_bound": {},
            "start": None, "freeze": []}


#: written to every run file, even at their defaults (a reader sees what ran)
_ALWAYS = ("solver", "iterations", "likelihood", "dtype")


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
    likelihood and dtype always): ``mmip reconstruct --config`` reads back the same configuration.

    Parameters
    ----------
    cfg : :obj:`dict`
        A run configuration (:func:`run_config`).

    Returns
    -------
    text : :obj:`str`
        The TOML text, ending in a newline.

    Raises
    ------
    ConfigError
        A value cannot be written as TOML.
    """
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
    """A flag value as bool/int/float/str: parsed, never evaluated.

    Parameters
    ----------
    text : :obj:`str`
        The value as typed (``true``/``false`` in any case, an integer, a float, or anything else).

    Returns
    -------
    value : :obj:`bool`, :obj:`int`, :obj:`float` or :obj:`str`
        The first of these types that parses ``text``; ``text`` itself otherwise.
    """
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


def validation_settings(cfg: dict) -> tuple:
    """``(fraction or None, seed, rule, patience, min_delta)`` of a run: a fraction is held out when the rule is
    ``validation`` (default 10 %) or a fraction is given (then the validation loss is only recorded).

    Parameters
    ----------
    cfg : :obj:`dict`
        A run configuration; its ``stopping`` table is read.

    Returns
    -------
    settings : :obj:`tuple`
        ``(fraction, seed, rule, patience, min_delta)``: :obj:`float` or :obj:`None`, :obj:`int`, :obj:`str`,
        :obj:`int`, :obj:`float`.
    """
    from .validation import DEFAULT_FRACTION

    spec = cfg.get("stopping") or {}
    rule = spec.get("rule", "iterations")
    fraction = spec.get("fraction", DEFAULT_FRACTION if rule == "validation" else None)
    return fraction, int(spec.get("seed", 0)), rule, int(spec.get("patience", 10)), float(spec.get("min_delta", 0.0))


#: the flags that set a run setting of the same name as they are
_PLAIN_FLAGS = ("solver", "iterations", "backend", "checkpoint_every", "balance_c", "dtype", "likelihood", "coupling",
                "refine_after", "balance_reference", "chunk_memory", "start")
#: ``(setting, flag attribute)`` of the stopping flags
_STOPPING_FLAGS = (("rule", "stop"), ("patience", "patience"), ("fraction", "validation_fraction"),
                   ("seed", "validation_seed"))


def _list_flags(args) -> dict:
    """``--terms``, ``--refine`` and ``--freeze``: comma-separated names (an empty ``--refine`` or ``--freeze``
    sets nothing)."""
    out = {}
    for k in ("terms", "refine", "freeze"):
        if getattr(args, k, None) is not None and (k == "terms" or getattr(args, k)):
            out[k] = [t.strip() for t in getattr(args, k).split(",") if t.strip()]
    return out


def _refine_bound_flag(args, cfg: dict) -> dict:
    """``--refine-bound NAME=DISTANCE`` (repeated) over the run file's ``refine_bound``."""
    bounds = dict(cfg.get("refine_bound") or {})
    for item in args.refine_bound:
        name, sep, value = item.partition("=")
        if not sep:
            msg = f"--refine-bound expects NAME=DISTANCE (e.g. positions=1.5), got {item!r}"
            raise ConfigError(msg)
        bounds[name.strip()] = parse_value(value)
    return bounds


def _solver_option_flag(args, cfg: dict) -> dict:
    """``--solver-option key=value`` (repeated) over the run file's ``solver_options``."""
    opts = dict(cfg["solver_options"])
    for item in args.solver_option:
        if "=" not in item:
            msg = f"--solver-option expects key=value, got {item!r}"
            raise ConfigError(msg)
        k, v = item.split("=", 1)
        opts[k.strip()] = parse_value(v)
    return opts


def _flags(args, cfg: dict) -> dict:
    """The settings the command-line flags give (``cfg``: the defaults and run file they override or extend)."""
    flags = {k: getattr(args, k) for k in _PLAIN_FLAGS if getattr(args, k, None) is not None}
    flags.update(_list_flags(args))
    if getattr(args, "regularizer", None):
        flags["regularizers"] = [_regularizer_flag(t) for t in args.regularizer]
    if getattr(args, "refine_bound", None):
        flags["refine_bound"] = _refine_bound_flag(args, cfg)
    stop = {k: getattr(args, a) for k, a in _STOPPING_FLAGS if getattr(args, a, None) is not None}
    if stop:
        flags["stopping"] = dict(cfg.get("stopping") or {}, **stop)
    if getattr(args, "solver_option", None):
        flags["solver_options"] = _solver_option_flag(args, cfg)
    return flags


def run_config(args) -> dict:
    """Defaults <- TOML run file <- command-line flags.

    Parameters
    ----------
    args : :obj:`argparse.Namespace`
        Parsed command line (``config`` names the run file; absent flags are ``None``).

    Returns
    -------
    cfg : :obj:`dict`
        The checked run configuration, every key of :data:`DEFAULTS` present.

    Raises
    ------
    ConfigError
        The run file cannot be read or parsed, or a setting or flag is invalid.
    """
    cfg = dict(DEFAULTS)
    if getattr(args, "config", None):
        cfg.update(check_config(_read_toml(args.config), str(args.config)))
    cfg.update(check_config(_flags(args, cfg), "command line"))
    check_run(dict(cfg, command=getattr(args, "command", None)))
    return cfg
