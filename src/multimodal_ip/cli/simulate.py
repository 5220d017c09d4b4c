"""``mmip simulate``: a registered simulated case, with the flags it declares, into a dataset file."""

__all__ = ["COMMAND"]

import argparse

from ..errors import ConfigError
from ..errors import one_line as _one_line
from .command import Command


def add_arguments(s) -> None:
    s.formatter_class = argparse.RawDescriptionHelpFormatter
    s.defer(_simulate_flags)  # the cases and their flags: the plugins load only when this command is used
    s.add_argument("case", help="a registered case (listed below)")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--noise", type=float, default=0.0, help="relative Poisson noise level (0.03 = 3%%)")
    s.add_argument("--seed", type=int, default=0)


def _simulation_parameters() -> dict:
    """``{keyword: spec}`` over every registered simulation (``parameters`` of each); the first spec of a name wins."""
    from ..plugins import get_registry

    registry = get_registry()
    out: dict = {}
    for name in registry.names("simulation"):
        for k, spec in (getattr(registry.get("simulation", name), "parameters", None) or {}).items():
            out.setdefault(k, spec)
    return out


def run(args) -> int:
    """Run a registered simulation with the flags it declares; numbers are checked (counts >= 1, finite >= 0)."""
    import math

    from ..io import save_dataset
    from ..plugins import get_registry
    from ..safety import check_outputs

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


def _simulate_flags(s) -> None:
    """The flags the registered simulations declare, and the list of cases (one line each) under ``--help``."""
    from ..plugins import get_registry

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


COMMAND = Command(help="simulate a registered case (the paper's by mmip-paper) into a dataset file",
                  add_arguments=add_arguments, run=run)
