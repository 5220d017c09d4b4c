"""Run configuration: defaults <- TOML run file <- command-line flags, checked key by key."""

__all__ = ["RUN_KEYS", "DEFAULTS", "parse_value", "run_config"]

from typing import Any

from .errors import ConfigError

RUN_KEYS = {
    "solver": str, "terms": list, "iterations": int, "backend": str, "checkpoint_every": int,
    "balance_c": float, "solver_options": dict, "term_options": dict, "dtype": str,
    "refine": list, "refine_after": int, "likelihood": str, "coupling": str,
}
DEFAULTS: dict[str, Any] = {"solver": "lbfgs", "terms": None, "iterations": 100, "backend": "numpy", "checkpoint_every": 10,
            "balance_c": None, "solver_options": {}, "term_options": {}, "dtype": "float64",
            "refine": [], "refine_after": None, "likelihood": "balanced", "coupling": None}


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
    try:
        with open(path, "rb") as fh:
            cfg = tomllib.load(fh)
    except FileNotFoundError:
        msg = f"{path}: no such run file"
        raise ConfigError(msg) from None
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path}: invalid TOML ({exc})"
        raise ConfigError(msg) from None
    return cfg


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
    for k in ("iterations", "refine_after"):
        if cfg.get(k) is not None and cfg[k] < 0:
            msg = f"{where}: {k} must be >= 0"
            raise ConfigError(msg)
    if cfg.get("backend", "numpy") not in ("numpy", "cupy"):
        msg = f"{where}: backend must be 'numpy' or 'cupy', got {cfg['backend']!r}"
        raise ConfigError(msg)
    if cfg.get("dtype", "float64") not in ("float32", "float64"):
        msg = f"{where}: dtype must be 'float32' or 'float64', got {cfg['dtype']!r}"
        raise ConfigError(msg)
    from .io.problem_builder import LIKELIHOODS
    from .operators import REFINABLE

    if cfg.get("likelihood", "balanced") not in LIKELIHOODS:
        msg = f"{where}: likelihood must be one of {', '.join(map(repr, LIKELIHOODS))}, got {cfg['likelihood']!r}"
        raise ConfigError(msg)
    bad = [r for r in cfg.get("refine", []) if r not in REFINABLE]
    if bad:
        msg = f"{where}: refine takes {' and/or '.join(map(repr, REFINABLE))}; got {bad}"
        raise ConfigError(msg)
    return cfg


def run_config(args) -> dict:
    """Defaults <- TOML run file <- command-line flags."""
    cfg = dict(DEFAULTS)
    if getattr(args, "config", None):
        cfg.update(_check_config(_read_toml(args.config), str(args.config)))
    flags = {}
    for k in ("solver", "iterations", "backend", "checkpoint_every", "balance_c", "dtype", "likelihood", "coupling",
              "refine_after"):
        if getattr(args, k, None) is not None:
            flags[k] = getattr(args, k)
    for k in ("terms", "refine"):
        if getattr(args, k, None):
            flags[k] = [t.strip() for t in getattr(args, k).split(",") if t.strip()]
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
    return cfg
