"""The safe reader of HDF5 files: links checked (:mod:`multimodal_ip.safety`), declared sizes taken from the memory
budget before anything is read, numeric datasets only, errors as one line naming file and dataset."""

__all__ = ["open_h5", "check_attrs", "resolve", "read_path", "read_strings", "read_group", "compact_dtype"]

from collections.abc import Iterable

import h5py
import numpy as np

from ..errors import DataError, one_line


def _shown(v) -> str:
    """A value for a one-line message: numpy scalars and arrays as plain Python, at most 80 characters."""
    if isinstance(v, (np.generic, np.ndarray)):
        v = v.tolist()
    if isinstance(v, bytes):
        v = v.decode(errors="replace")
    return one_line(repr(v))[:80]


def _str(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def check_attrs(path, obj, budget) -> None:
    """Take the declared size of every fixed-size attribute of ``obj`` from ``budget`` before any is read (an
    attribute can hold hundreds of MB); the error names the attribute."""
    k = None
    try:
        sizes = []
        for k in obj.attrs:  # names and declared shapes only: no value is read yet
            aid = obj.attrs.get_id(k)
            n = int(np.prod(aid.shape, dtype=np.float64)) if aid.shape else 1
            sizes.append((k, n * aid.dtype.itemsize))  # variable-length values: their pointers (the file bounds them)
    except (KeyError, OSError, RuntimeError, TypeError, ValueError) as exc:
        shown = "" if k is None else f" {_shown(k)}"
        msg = f"{path}:{obj.name} attribute{shown}: cannot be read ({one_line(exc)}); the file may be corrupt"
        raise DataError(msg) from None
    for k, nbytes in sizes:
        budget.take(nbytes, f"{path}:{obj.name} attribute {_shown(k)}")


def _attrs(obj) -> dict:
    out = {}
    for k, v in obj.attrs.items():
        if isinstance(v, bytes):
            v = v.decode(errors="replace")
        elif isinstance(v, np.ndarray) and v.dtype.kind in "SO":
            v = [_str(x) for x in v]
        out[k] = v
    return out


def open_h5(path) -> h5py.File:
    """Open ``path`` read-only; a missing, non-regular or unreadable file is a :class:`DataError` naming it."""
    from ..safety import regular_input
    from .filters import register_filters

    path = regular_input(path, "file")
    register_filters()  # hdf5plugin's filters (bitshuffle/LZ4, Blosc, Zstd) before the first read
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        msg = f"{path}: not a readable HDF5 file ({one_line(exc)})"
        raise DataError(msg) from None


def _blocks(a, elements=1 << 22):
    """Views of ``a`` along its first axis of about ``elements`` values each (checks without data-sized temporaries)."""
    if a.ndim == 0 or a.size <= elements:
        yield a
        return
    step = max(1, elements // max(a.size // a.shape[0], 1))
    for i in range(0, a.shape[0], step):
        yield a[i : i + step]


def _read(d, axis_slice, as_dtype=None):
    src = d.astype(as_dtype) if as_dtype is not None else d  # converted by HDF5 through its own small buffer
    if axis_slice is None:
        return src[()]
    axis, sl = axis_slice
    index = [slice(None)] * d.ndim
    index[axis] = sl
    return src[tuple(index)]


def _nbytes(d, axis_slice=None, as_dtype=None) -> int:
    n = int(np.prod(d.shape, dtype=np.float64)) if d.shape else 1
    if axis_slice is not None and d.shape:
        axis, sl = axis_slice
        n = n // max(d.shape[axis], 1) * len(range(*sl.indices(d.shape[axis])))
    return n * np.dtype(as_dtype if as_dtype is not None else d.dtype).itemsize


def compact_dtype(dtype, precision=None):
    """The dtype a measurement dataset of ``dtype`` is read as (``None``: as it is): integer counts of up to 32 bits
    stay integers; wider integers become ``precision`` (float64 without one); floats wider than ``precision``
    become ``precision``. Booleans and complex values are not measurements this applies to."""
    dtype = np.dtype(dtype)
    real = np.dtype(precision) if precision is not None else None
    if dtype.kind in "iu":
        return None if dtype.itemsize <= 4 else (real or np.dtype(np.float64))
    if dtype.kind == "f" and real is not None and dtype.itemsize > real.itemsize:
        return real
    return None


def _read_checked(path, d, where, budget, axis_slice=None, as_dtype=None):
    """One dataset (converted to ``as_dtype`` while it is read, when given), after its size is checked against the
    memory budget (before any allocation)."""
    from ..safety import MemoryBudget

    if d.dtype.kind not in "biufc":  # strings, objects, compounds: refused before reading
        msg = f"{path}:{where}: expected a numeric dataset, got {d.dtype}"
        raise DataError(msg)
    budget = budget if budget is not None else MemoryBudget()
    budget.take(_nbytes(d, axis_slice, as_dtype), f"{path}:{where}")
    try:
        with np.errstate(over="ignore"):  # an overflowing conversion is reported below, in one line
            a = _read(d, axis_slice, as_dtype)
    except (OSError, ValueError, TypeError) as exc:
        from .filters import missing_filter

        hint = missing_filter(d)  # a filter this HDF5 lacks, named, rather than blaming the file
        msg = f"{path}:{where}: " + (hint or f"cannot read data ({one_line(exc)}); the file may be truncated or "
                                             "corrupt")
        raise DataError(msg) from None
    if as_dtype is not None and d.dtype.kind == "f" and not all(np.isfinite(b).all() for b in _blocks(a)):
        _check_narrowing(path, where, d, axis_slice, as_dtype)
    return a


def _check_narrowing(path, where, d, axis_slice, as_dtype) -> None:
    """Refuse finite values of ``d`` that ``as_dtype`` cannot hold (``inf`` once converted): said as such, not as
    NaN or Inf in the file. Read a run of the first axis at a time (only when the converted array is not finite)."""
    axis, sl = axis_slice if axis_slice is not None else (0, slice(None))
    start, stop, _ = sl.indices(d.shape[axis]) if d.ndim else (0, 0, 1)
    parts: Iterable
    if d.ndim == 0:
        parts = [np.asarray(d[()])]
    else:
        step = max(1, (1 << 22) // max(1, int(np.prod(d.shape, dtype=np.float64)) // max(1, d.shape[axis])))
        parts = (d[tuple(slice(i, min(i + step, stop)) if k == axis else slice(None) for k in range(d.ndim))]
                 for i in range(start, stop, step))
    top = 0.0
    for part in parts:
        finite = np.abs(part[np.isfinite(part)])
        top = max(top, float(finite.max()) if finite.size else 0.0)
    if top > float(np.finfo(as_dtype).max):
        msg = (f"{path}:{where}: values up to {top:.3g} overflow {np.dtype(as_dtype)} (largest "
               f"{np.finfo(as_dtype).max:.3g}); use --dtype float64")
        raise DataError(msg)


def resolve(path, f, key, allow_external=False):
    """The object at ``key`` (``"a/b/c"``) of the open file ``f``, every link on the way checked like
    :func:`~multimodal_ip.safety.walk_group` does (no external links, virtual datasets or links leaving the
    file); ``None`` when a component is missing."""
    from ..safety import member

    obj = f
    prefix = "/"
    for part in [p for p in str(key).split("/") if p]:
        try:
            present = isinstance(obj, h5py.Group) and part in obj
        except (OSError, RuntimeError):  # a dangling link answers "in" with an error
            present = True
        if not present and not (isinstance(obj, h5py.Group) and obj.get(part, getlink=True) is not None):
            return None
        obj = member(path, obj, part, prefix, allow_external)
        prefix += part + "/"
    return obj


def read_path(path, f, key, budget=None, allow_external=False):
    """The dataset at ``key`` read through :func:`resolve` and the memory budget; ``DataError`` naming it when it
    is missing, a group, or not numeric."""
    d = resolve(path, f, key, allow_external)
    if d is None:
        msg = f"{path}:/{key}: missing"
        raise DataError(msg)
    if not isinstance(d, h5py.Dataset):
        msg = f"{path}:/{key}: expected a dataset, got a group"
        raise DataError(msg)
    return _read_checked(path, d, f"/{key}", budget)


def read_strings(path, f, key, budget=None, allow_external=False, max_count=None, counted=("names", "entries")) \
        -> list:
    """The strings of the dataset at ``key`` (e.g. channel names) through :func:`resolve`, their declared size taken
    from the memory budget first and their count at most ``max_count`` (else "<n> names for <max_count> entries",
    with the words ``counted``); ``[]`` when it is missing."""
    from ..safety import MemoryBudget

    d = resolve(path, f, key, allow_external)
    if d is None:
        return []
    if not isinstance(d, h5py.Dataset) or d.ndim > 1 or d.dtype.kind not in "SUO":
        shown = "a group" if not isinstance(d, h5py.Dataset) else f"shape {d.shape} {d.dtype}"
        msg = f"{path}:/{key}: expected a 1-D dataset of strings, got {shown}"
        raise DataError(msg)
    if max_count is not None and d.size > max_count:
        msg = f"{path}:/{key}: {d.size} {counted[0]} for {max_count} {counted[1]}"
        raise DataError(msg)
    (budget if budget is not None else MemoryBudget()).take(d.size * d.dtype.itemsize, f"{path}:/{key}")
    try:
        raw = d[()]
    except (OSError, ValueError, TypeError) as exc:
        from .filters import missing_filter

        hint = missing_filter(d)  # compressed strings too: the filter this HDF5 lacks, named
        msg = f"{path}:/{key}: " + (hint or f"cannot read data ({one_line(exc)}); the file may be truncated or "
                                            "corrupt")
        raise DataError(msg) from None
    return [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in np.atleast_1d(raw)]


def read_group(path, group, prefix, budget=None, finite=False, skip_groups=False) -> dict:
    """Every dataset of an HDF5 group through the safe reader (no links leaving the file, sizes checked against
    the memory budget before reading, numeric only); ``finite`` refuses NaN/Inf by name."""
    from ..safety import MemoryBudget, walk_group

    budget = budget if budget is not None else MemoryBudget()
    if not isinstance(group, h5py.Group):
        msg = f"{path}:{prefix.rstrip('/')}: expected a group, got a dataset"
        raise DataError(msg)
    out = {}
    for k, d in walk_group(path, group, prefix):
        if skip_groups and isinstance(d, h5py.Group):
            continue
        if not isinstance(d, h5py.Dataset):
            msg = f"{path}:{prefix}{k}: expected a numeric dataset, got a group"
            raise DataError(msg)
        a = _read_checked(path, d, f"{prefix}{k}", budget)
        if finite and np.asarray(a).dtype.kind in "fc" and not np.all(np.isfinite(a)):
            msg = f"{path}:{prefix}{k}: contains NaN or Inf"
            raise DataError(msg)
        out[k] = a
    return out
