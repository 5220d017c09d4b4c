"""The checks of a dataset file's layout (:doc:`/schema`) that :func:`~multimodal_ip.io.load_dataset` makes: root
attributes, groups, declared and inferred variables, terms and their modalities, ``/truth``."""

__all__ = ["check_format", "check_terms_group", "declared_variables", "term_groups", "read_truth", "split_slice",
           "take_variables", "infer_variables"]

import h5py
import numpy as np

from ..errors import DataError, one_line
from ..variables import Variable
from ._reader import _read_checked, _shown, _str, check_attrs
from ._writer import FORMAT, FORMAT_VERSION


def check_format(path, f) -> None:
    """The root attributes ``format="multimodal_ip"`` and the integer ``format_version`` this version reads."""
    if _str(f.attrs.get("format", "")) != FORMAT:
        shown = _shown(f.attrs.get("format"))
        msg = f"{path}: not a multimodal_ip file (root attribute format={shown})"
        raise DataError(msg)
    raw_version = f.attrs.get("format_version", -1)
    if not (isinstance(raw_version, (int, np.integer)) and not isinstance(raw_version, bool)
            and int(raw_version) == FORMAT_VERSION):
        shown = _shown(raw_version)
        msg = f"{path}: format_version {shown} is not supported (this version reads the integer {FORMAT_VERSION})"
        raise DataError(msg)


def check_terms_group(path, groups: dict) -> None:
    """``/terms`` is a group."""
    if "terms" not in groups or not isinstance(groups["terms"], h5py.Group):
        msg = f"{path}: missing group /terms"
        raise DataError(msg)


def _check_group(path, groups: dict, name: str) -> None:
    if not isinstance(groups[name], h5py.Group):
        msg = f"{path}:/{name}: expected a group, got a dataset"
        raise DataError(msg)


def declared_variables(path, groups: dict, budget, allow_external) -> list:
    """The variables of ``/variables`` (``[]`` without the group: the modalities infer them); an empty group is
    refused."""
    from ..safety import walk_group

    if "variables" not in groups:
        return []
    _check_group(path, groups, "variables")
    variables = []
    for name, d in walk_group(path, groups["variables"], "/variables/", allow_external):
        check_attrs(path, d, budget)
        variables.append(_variable_spec(path, name, d))
    if not variables:
        msg = f"{path}:/variables is empty (omit the group to let the modalities infer the variables)"
        raise DataError(msg)
    return variables


def term_groups(path, group, terms, budget, allow_external) -> tuple:
    """``({name: group}, {name: modality})`` of every ``/terms/<name>``; each names its modality, and every term
    asked for (``terms``) is in the file."""
    from ..safety import walk_group

    groups = dict(walk_group(path, group, "/terms/", allow_external))
    modality_of = {}
    for name, g in groups.items():
        if not isinstance(g, h5py.Group):
            msg = f"{path}:/terms/{name}: expected a group (a data term), got a dataset"
            raise DataError(msg)
        check_attrs(path, g, budget)
        if "modality" not in g.attrs:
            msg = f"{path}:/terms/{name}: missing attribute 'modality'"
            raise DataError(msg)
        modality_of[name] = _str(g.attrs["modality"])
    missing = [t for t in terms if t not in groups] if terms is not None else []
    if missing:
        msg = f"{path}: no term(s) {sorted(missing)}; the file has: {', '.join(groups) or 'none'}"
        raise DataError(msg)
    return groups, modality_of


def read_truth(path, groups: dict, used: set, space, budget, allow_external) -> dict:
    """``/truth`` for the unknowns in ``used`` only (an unused entry is never read, whatever its size); those of
    ``space`` of their variable's shape."""
    from ..safety import walk_group

    truth: dict = {}
    if "truth" not in groups:
        return truth
    _check_group(path, groups, "truth")
    for name, d in walk_group(path, groups["truth"], "/truth/", allow_external):
        if name not in used:
            continue
        if not isinstance(d, h5py.Dataset):
            msg = f"{path}:/truth/{name}: expected a dataset, got a group"
            raise DataError(msg)
        if name in space and d.shape != space[name].shape:
            msg = f"{path}:/truth/{name}: expected shape {space[name].shape}, got {d.shape}"
            raise DataError(msg)
        # other names (e.g. a true calibration) are checked when those unknowns are refined
        truth[name] = _read_checked(path, d, f"/truth/{name}", budget)
    return truth


def split_slice(where, datasets: dict, axes: dict, part) -> tuple:
    """``(slice, total)`` of this rank's share (``part = (rank, size)``) of a term's split axis; ``(None, None)``
    when the term is read whole."""
    from ..modality import split_length

    total = split_length(where, {k: d.shape for k, d in datasets.items()}, axes)
    if total is None:
        return None, None
    rank, size = part
    return slice(rank * total // size, (rank + 1) * total // size), total


def take_variables(path, variables, budget) -> None:
    """Take the size of every variable (what a problem allocates for it, at least once) from ``budget``: a shape
    declared or inferred from attributes (e.g. ``object_shape``) is refused by name before anything is allocated."""
    for v in variables:
        nbytes = int(np.prod(v.shape, dtype=np.float64)) * np.dtype(v.dtype).itemsize
        budget.take(nbytes, f"{path}: variable {v.name!r} of shape {tuple(v.shape)} {np.dtype(v.dtype)}")


def _variable_spec(path, name, d) -> Variable:
    where = f"{path}:/variables/{name}"
    try:
        shape = tuple(int(s) for s in np.atleast_1d(d.attrs["shape"]))
        if any(s <= 0 for s in shape) or np.prod(shape, dtype=np.float64) > 2**40:
            msg = f"{where}: shape {shape} must be positive and of a sane size"
            raise DataError(msg)
        dtype = np.dtype(_str(d.attrs["dtype"]))
        bounds = []
        for key in ("lower", "upper"):
            b = d.attrs.get(key)
            if b is not None:
                b = float(np.asarray(b).item())
                if np.isnan(b):
                    msg = f"{where}: attribute {key} is NaN"
                    raise DataError(msg)
            bounds.append(b)
        if bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]:
            msg = f"{where}: lower {bounds[0]} > upper {bounds[1]}"
            raise DataError(msg)
        return Variable(name, shape, dtype, *bounds)
    except DataError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        msg = f"{where}: needs attrs shape (positive ints) and dtype (float/complex), numeric bounds: {exc}"
        raise DataError(one_line(msg)) from None



def infer_variables(path, terms: dict, registry=None) -> list:
    """The variables the modalities of ``terms`` (``{name: TermData}``) infer from their data (``variables(td)``);
    two terms implying different shapes for one name, or a variable a term reads (``inputs``) that no term
    determines, are a :class:`DataError` saying to declare it in ``/variables``."""
    from ..modality import capabilities
    from ..plugins import get_registry

    registry = registry or get_registry()
    found: dict = {}
    needed: dict = {}
    for name, td in terms.items():
        info = capabilities(registry.get("modality", td.modality))
        for v in info.variables(td):
            if v.name in found and (found[v.name][0].shape, found[v.name][0].dtype) != (v.shape, v.dtype):
                other, first = found[v.name]
                msg = (f"{path}: terms {first!r} and {name!r} imply different variables {v.name!r}: "
                       f"{other.shape} {other.dtype} vs {v.shape} {v.dtype}; declare it in /variables/{v.name}")
                raise DataError(msg)
            found.setdefault(v.name, (v, name))
        for need in info.inputs:
            needed.setdefault(need, name)
    missing = {k: t for k, t in needed.items() if k not in found}
    if missing:
        k, t = next(iter(missing.items()))
        msg = (f"{path}: no /variables group, and no term determines variable {k!r} (needed by term {t!r}); "
               f"add /variables/{k} with attrs shape and dtype")
        raise DataError(msg)
    if not found:
        msg = f"{path}: no /variables group, and the modalities infer no variables from the terms; add /variables"
        raise DataError(msg)
    return sorted((v for v, _ in found.values()), key=lambda v: v.name)  # the order h5py lists /variables in
