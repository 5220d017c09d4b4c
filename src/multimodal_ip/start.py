"""Start points and held variables of a run (``mmip reconstruct --start SOURCE[:VARS] --freeze VARS``): start values
read from the data file's ``/truth``, from a result file of ``mmip reconstruct``, or from any file a plugin reads
(an importer's ``read_start``, e.g. a ptychography reconstruction), checked against the problem's variables."""

__all__ = ["TRUTH", "parse_start", "start_file", "read_start", "start_point", "freeze"]

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError

#: the source that names the data file's own ``/truth`` group
TRUTH = "truth"


def parse_start(text: str) -> tuple:
    """``(source, names)`` of a start specification ``SOURCE[:VARS]``.

    Parameters
    ----------
    text : :obj:`str`
        ``truth``, ``truth:x,w``, ``r.h5`` or ``r.h5:x``: the text after the last colon is a list of variable names
        when it is a comma-separated list of identifiers, else part of the path.

    Returns
    -------
    source : :obj:`str`
        :data:`TRUTH` or a file path.
    names : :obj:`tuple` of :obj:`str` or :obj:`None`
        The variables to start from; ``None``: every variable the source holds that the problem has.

    Raises
    ------
    ConfigError
        The text is empty, ends in a colon, or names a variable twice.
    """
    head, sep, tail = str(text).rpartition(":")
    if not str(text).strip() or (sep and not tail.strip()):
        msg = f"--start expects SOURCE[:VARS] (truth, truth:x,w, r.h5:x), got {text!r}"
        raise ConfigError(msg)
    names = [n.strip() for n in tail.split(",")]
    if not (sep and head and all(n.isidentifier() for n in names)):
        return str(text), None
    if len(set(names)) != len(names):
        msg = f"--start {text!r} names a variable twice"
        raise ConfigError(msg)
    return head, tuple(names)


def start_file(spec: str | None) -> Path | None:
    """The file a start specification reads (an input of the run, never its output).

    Parameters
    ----------
    spec : :obj:`str` or :obj:`None`
        ``SOURCE[:VARS]`` (:func:`parse_start`), or ``None`` for none.

    Returns
    -------
    path : :obj:`pathlib.Path` or :obj:`None`
        The file, ``None`` for no specification or :data:`TRUTH` (the data file itself).
    """
    if spec is None:
        return None
    source, _ = parse_start(spec)
    return None if source == TRUTH else Path(source)


def _check_names(names, space, source) -> None:
    unknown = [n for n in names if n not in space]
    if unknown:
        msg = (f"--start {source}: unknown variable(s) {', '.join(unknown)}; the problem has: {', '.join(space.names)}"
               " (calibration unknowns only with --refine)")
        raise ConfigError(msg)


def _check_kind(where, name, shape, dtype, var) -> None:
    """A value of the variable's shape, real for a real variable (complex or real for a complex one)."""
    if tuple(shape) != var.shape or np.dtype(dtype).kind not in ("fiu" if var.dtype.kind == "f" else "fiuc"):
        kind = "real" if var.dtype.kind == "f" else "complex"
        msg = (f"{where}: start value of {name!r}: expected shape {var.shape} of {kind} numbers, got shape "
               f"{tuple(shape)} {np.dtype(dtype)}")
        raise DataError(msg)


def _checked(where, name, a, var) -> np.ndarray:
    """``a`` as the start value of the variable ``var``: its shape and kind (:func:`_check_kind`), finite;
    converted to the variable's dtype."""
    a = np.asarray(a)
    _check_kind(where, name, a.shape, a.dtype, var)
    if not np.all(np.isfinite(a)):
        msg = f"{where}: start value of {name!r} contains NaN or Inf"
        raise DataError(msg)
    return a.astype(var.dtype, copy=False)


def _from_truth(dataset, space, names) -> dict:
    truth = dict(getattr(dataset, "truth", None) or {})
    source = getattr(dataset, "source", "the data file")
    if not truth:
        msg = (f"{source}:/truth: missing or holds none of the problem's variables ({', '.join(space.names)}); "
               "--start truth needs a simulated file's ground truth")
        raise DataError(msg)
    missing = [n for n in names or () if n not in truth]
    if missing:
        msg = f"{source}:/truth/{missing[0]}: missing; /truth holds {', '.join(truth)}"
        raise DataError(msg)
    return {n: (f"{source}:/truth/{n}", truth[n]) for n in (names or [n for n in truth if n in space])}


def _from_result(path, f, space, names, budget, allow_external) -> dict | None:
    """The variables of a result file (``/results/variables``), shapes checked before reading; ``None`` when the
    file is no result file."""
    import h5py

    from .io.dataset import read_path, resolve
    from .io.results import _results_group

    try:
        _results_group(path, f)
    except DataError:
        return None
    group = resolve(path, f, "results/variables", allow_external)
    if not isinstance(group, h5py.Group):
        msg = f"{path}:/results/variables: missing, or not a group"
        raise DataError(msg)
    held = [n for n in group if n in space]
    missing = [n for n in names or () if n not in group]
    if missing:
        msg = f"{path}:/results/variables/{missing[0]}: missing; the result holds {', '.join(group) or 'none'}"
        raise DataError(msg)
    out = {}
    for n in names or held:
        key = f"results/variables/{n}"
        d = resolve(path, f, key, allow_external)
        if isinstance(d, h5py.Dataset):  # shape and kind before any byte is read
            _check_kind(f"{path}:/{key}", n, d.shape, d.dtype, space[n])
        out[n] = (f"{path}:/{key}", read_path(path, f, key, budget=budget, allow_external=allow_external))
    return out


def _from_plugins(path, space, names, context, registry) -> dict:
    """``{name: (where, array)}`` from the first importer whose ``read_start`` reads ``path``."""
    from .plugins import get_registry

    registry = registry or get_registry()
    readers = [(n, imp) for n in registry.names("importer")
               if callable(getattr(imp := registry.get("importer", n), "read_start", None))]
    for name, reader in readers:
        found = reader.read_start(path, context)
        if found is None:
            continue
        missing = [n for n in names or () if n not in found]
        if missing:
            msg = (f"{path}: no start value of {missing[0]!r} in this file (importer {name!r} reads "
                   f"{', '.join(found) or 'nothing'} from it)")
            raise DataError(msg)
        return {n: (f"{path} (importer {name!r})", found[n]) for n in (names or [n for n in found if n in space])}
    shown = ", ".join(n for n, _ in readers) or "none installed"
    msg = (f"{path}: neither a result file of mmip reconstruct (/results/variables) nor a file a plugin reads a start "
           f"point from (importers with read_start: {shown})")
    raise DataError(msg)


def read_start(spec, space, dataset=None, allow_external=False, coupling=None, registry=None) -> dict:
    """The start values a specification names, checked against the problem's variables.

    Parameters
    ----------
    spec : :obj:`str` or :obj:`tuple`
        ``SOURCE[:VARS]`` (:func:`parse_start`) or its ``(source, names)``.
    space : :class:`~multimodal_ip.VariableSpace`
        The problem's variables (their names, shapes and dtypes).
    dataset : :class:`~multimodal_ip.io.Dataset`, optional
        The run's data: its ``truth`` for :data:`TRUTH`; given to the plugins' readers (attributes, terms).
    allow_external : :obj:`bool`, optional
        Accept HDF5 external links and storage in the start file (``--allow-external-links``).
    coupling : optional
        The run's ``coupling`` option, given to the plugins' readers.
    registry : :class:`~multimodal_ip.plugins.Registry`, optional
        Where the importers are looked up (default the installed plugins).

    Returns
    -------
    values : :obj:`dict`
        ``{variable: numpy array}`` in each variable's shape and dtype.

    Raises
    ------
    ConfigError
        A named variable is not one of the problem's.
    DataError
        The source is missing, unreadable, over the memory budget, lacks a named variable, or holds a value of
        another shape, a complex value for a real variable, or NaN/Inf; one line naming the file and dataset.
    """
    from .io.dataset import open_h5
    from .memory import MemoryBudget

    source, names = parse_start(spec) if isinstance(spec, str) else spec
    _check_names(names or (), space, source)
    if source == TRUTH:
        found = _from_truth(dataset, space, names)
    else:
        budget = MemoryBudget()
        with open_h5(source) as f:
            result = _from_result(source, f, space, names, budget, allow_external)
        found = result if result is not None else _from_plugins(
            source, space, names, {"variables": {v.name: (v.shape, v.dtype) for v in space.variables},
                                   "dataset": dataset, "coupling": coupling, "allow_external": allow_external,
                                   "budget": budget}, registry)
    if not found:
        msg = f"{source}: holds none of the problem's variables ({', '.join(space.names)})"
        raise DataError(msg)
    return {n: _checked(where, n, a, space[n]) for n, (where, a) in found.items()}


def start_point(problem, values: Mapping | None = None, xp=None):
    """The packed start point: ``values`` where given, the problem's own start elsewhere (ones, calibration
    unknowns at their start values).

    Parameters
    ----------
    problem : :class:`~multimodal_ip.problem.objective.Objective`
        A problem with ``start()`` (:class:`~multimodal_ip.JointProblem` or its MPI composition).
    values : mapping, optional
        ``{variable: array}`` (:func:`read_start`).
    xp : module, optional
        Array module of the point (default the problem's).

    Returns
    -------
    x0 : array
        The packed real start vector.
    """
    x0 = problem.start(xp=xp)
    if not values:
        return x0
    arrays = problem.space.unpack(x0)
    xp = xp or problem.xp
    arrays.update({n: xp.asarray(a, dtype=problem.space[n].dtype) for n, a in values.items()})
    return problem.space.pack(arrays)


def freeze(problem, names: Sequence[str]):
    """``problem`` with the variables ``names`` held at their start values (``--freeze``).

    Parameters
    ----------
    problem : :class:`~multimodal_ip.problem.objective.Objective`
        The problem.
    names : sequence of :obj:`str`
        Variables of ``problem.space``; not all of them.

    Returns
    -------
    problem : :class:`~multimodal_ip.problem.objective.Objective`
        ``problem.with_frozen(names)`` (``problem`` itself for no names).

    Raises
    ------
    ConfigError
        A name is not a variable of the problem, or every variable would be held.
    """
    names = tuple(names or ())
    if not names:
        return problem
    unknown = [n for n in names if n not in problem.space]
    if unknown:
        msg = (f"--freeze: unknown variable(s) {', '.join(unknown)}; the problem has: {', '.join(problem.space.names)}"
               " (calibration unknowns only with --refine)")
        raise ConfigError(msg)
    if set(problem.space.names) <= set(names):
        msg = (f"--freeze {','.join(names)} holds every variable of the problem ({', '.join(problem.space.names)}): "
               "nothing is left to solve for; refine a calibration unknown (--refine) or freeze fewer")
        raise ConfigError(msg)
    return problem.with_frozen(names)

