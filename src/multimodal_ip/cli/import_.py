"""``mmip import``: facility files, one flag per registered importer, into one dataset file."""

__all__ = ["COMMAND"]

import numpy as np

from ..errors import ConfigError
from .command import Command


def _importers() -> list:
    """``[(name, importer)]`` of the registered importers, in the order they run (their ``order``)."""
    from ..plugins import get_registry

    registry = get_registry()
    items = [(n, registry.get("importer", n)) for n in registry.names("importer")]
    return sorted(items, key=lambda item: (getattr(item[1], "order", 100), item[0]))


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


def _given(args) -> list:
    """``[(name, importer, path)]`` of the importers whose flag was given; ``-o`` checked against every input file
    (the files given and the importer options that name files); nothing to import is refused."""
    from ..safety import check_outputs

    given = [(name, imp, getattr(args, f"import_{name}", None)) for name, imp in _importers()]
    given = [(name, imp, path) for name, imp, path in given if path]
    files = [getattr(args, f"opt_{k}") for _, imp in _importers()  # importer options that name input files
             for k, spec in (getattr(imp, "options", None) or {}).items() if spec.get("file")]
    check_outputs([args.output], [path for *_, path in given] + [p for p in files if p])
    if not given:
        flags = " and/or ".join(f"--{getattr(imp, 'flag', name)} FILE" for name, imp in _importers())
        msg = f"nothing to import: give {flags}"
        raise ConfigError(msg)
    return given


def _context(args, given) -> dict:
    """What the importers share: the flags given, ``allow_external``, ``attrs`` and the importers' own options
    (e.g. an axis unit), checked by their type."""
    context: dict = {"allow_external": args.allow_external_links, "attrs": {},
                     "importing": [getattr(imp, "flag", name) for name, imp, _ in given]}  # the flags given
    for _, importer in _importers():
        for k, spec in (getattr(importer, "options", None) or {}).items():
            value = getattr(args, f"opt_{k}")
            if spec.get("type") is float and not (np.isfinite(value) and value > 0):
                msg = f"--{k.replace('_', '-')} must be a finite number > 0, got {value}"
                raise ConfigError(msg)
            context[k] = value
    return context


def _plan(given, context) -> None:
    """The bytes each importer offering ``read_bytes(path, context)`` (from its file's structure, nothing read)
    holds, summed with the program against the memory budget; refused in one line when they exceed it. An importer
    without the offer is not planned: its reads keep their own checks (``MemoryBudget``)."""
    from .read_plan import ReadPlan

    offers = [(name, imp, path) for name, imp, path in given if callable(getattr(imp, "read_bytes", None))]
    if not offers:
        return
    plan = ReadPlan("importing " + " and ".join(str(path) for *_, path in offers))
    for name, importer, path in offers:
        plan.parts[f"importer {name!r}"] = int(importer.read_bytes(path, context))
    plan.check()


def run(args) -> int:
    """Each registered importer whose flag was given reads its file into a data term; the variables are those the
    modalities infer from the terms; the dataset is written without touching any input."""
    from ..io import Dataset, save_dataset
    from ..io.dataset import infer_variables, take_variables
    from ..safety import MemoryBudget, regular_input

    given = _given(args)
    for *_, path in given:
        regular_input(path, "input file")
    if not (np.isfinite(args.balance_c) and args.balance_c > 0):
        msg = f"--balance-c must be a finite number > 0, got {args.balance_c}"
        raise ConfigError(msg)
    context = _context(args, given)
    _plan(given, context)  # the importers that offer their sizes, within the memory budget before any read
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


def add_arguments(s) -> None:
    s.defer(_import_flags)  # the importers' flags: the plugins load only when this command is used


COMMAND = Command(help="facility files (one flag per registered importer) -> one dataset file",
                  add_arguments=add_arguments, run=run)
