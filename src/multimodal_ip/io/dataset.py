r"""The HDF5 dataset schema (docs/schema.md): read through the safe reader, validate, write atomically.

::

    /                      attrs format="multimodal_ip", format_version=1
    /variables/<var>       empty datasets whose attrs give shape, dtype, lower, upper
    /truth/<var>           optional ground truth
    /terms/<term>/         attr modality=<plugin>; the modality's arrays and attrs
"""

__all__ = ["Dataset", "TermData", "load_dataset", "save_dataset", "atomic_h5"]

import contextlib
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..errors import DataError, one_line
from ..variables import Variable, VariableSpace

FORMAT = "multimodal_ip"
FORMAT_VERSION = 1


@dataclass
class TermData:
    """One ``/terms/<name>`` group: its modality, arrays and attributes (and where it came from).

    What a modality's ``build_term`` reads (:doc:`/schema` lists the datasets of each modality); an importer
    returns one, and a script can build one in memory.

    Parameters
    ----------
    name : :obj:`str`
        The term's name (``/terms/<name>``), unique in its dataset.
    modality : :obj:`str`
        The registered modality that builds its data term (``ptychography``, ``fluorescence``, ...).
    arrays : :obj:`dict`
        ``{dataset: array}``: the group's datasets (``data`` and whatever the modality reads), as numpy arrays.
    attrs : :obj:`dict`, optional
        The group's attributes (``loss``, ``inputs``, modality settings).
    source : :obj:`str`, optional
        The file it was read from, named in error messages.
    """

    name: str
    modality: str
    arrays: dict
    attrs: dict = field(default_factory=dict)
    source: str = "<memory>"

    def where(self, key=None) -> str:
        """``file:/terms/<name>[/key]``, as error messages name it."""
        return f"{self.source}:/terms/{self.name}" + (f"/{key}" if key else "")

    def array(self, key, ndim=None, dtype_kind=None, shape=None, finite=True):
        """A validated array; errors name file, dataset, and expected vs got."""
        if key not in self.arrays:
            msg = f"{self.where()}: missing dataset {key!r} (modality {self.modality!r}); has: {sorted(self.arrays)}"
            raise DataError(msg)
        a = np.asarray(self.arrays[key])
        if ndim is not None and a.ndim != ndim:
            msg = f"{self.where(key)}: expected {ndim}-D array, got shape {a.shape}"
            raise DataError(msg)
        if shape is not None and (a.ndim != len(shape)
                                  or any(s is not None and s != g for s, g in zip(shape, a.shape))):
            exp = ", ".join("*" if s is None else str(s) for s in shape)
            msg = f"{self.where(key)}: expected shape ({exp}), got {a.shape}"
            raise DataError(msg)
        if dtype_kind is not None and a.dtype.kind not in dtype_kind:
            names = {"f": "float", "c": "complex", "i": "integer", "u": "unsigned"}
            exp = " or ".join(names.get(k, k) for k in dtype_kind)
            msg = f"{self.where(key)}: expected {exp} dtype, got {a.dtype}"
            raise DataError(msg)
        if a.size == 0:
            msg = f"{self.where(key)}: dataset is empty"
            raise DataError(msg)
        if finite and a.dtype.kind in "fc" and not all(np.isfinite(b).all() for b in _blocks(a)):
            msg = f"{self.where(key)}: contains NaN or Inf"
            raise DataError(msg)
        return a

    def minimum(self, key) -> float:
        """The smallest value of a real dataset, taken block by block (no data-sized temporary)."""
        return float(min(b.min() for b in _blocks(np.asarray(self.arrays[key]))))

    def attr(self, key, default=None, cast=float):
        if key not in self.attrs:
            if default is None:
                msg = f"{self.where()}: missing attribute {key!r}"
                raise DataError(msg)
            return default
        try:
            return cast(self.attrs[key])
        except (TypeError, ValueError):
            shown = one_line(repr(self.attrs[key]))[:80]  # one line, however the value prints
            msg = f"{self.where()}: attribute {key!r} = {shown} is not a valid {cast.__name__}"
            raise DataError(msg) from None


@dataclass
class Dataset:
    """A problem on disk: variables, optional truth, data terms, root attributes.

    Parameters
    ----------
    variables : :obj:`list` of :class:`~multimodal_ip.Variable`
        The unknowns (``/variables``, or inferred from the terms by their modalities).
    terms : :obj:`dict`
        ``{name: TermData}``, the loaded terms.
    truth : :obj:`dict`, optional
        ``{variable: array}``: the ground truth of a simulation, for error tables.
    attrs : :obj:`dict`, optional
        Root attributes of the file.
    source : :obj:`str`, optional
        The file it was read from.
    all_terms : :obj:`tuple` of :obj:`str`, optional
        Every term of the file, also those not loaded.
    """

    variables: list
    terms: dict
    truth: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    source: str = "<memory>"
    #: every term of the file, also those not loaded (``load_dataset(terms=...)``)
    all_terms: tuple = ()

    @property
    def space(self) -> VariableSpace:
        return VariableSpace(self.variables)


#: files up to this size are built in memory and written with plain writes (a full disk is one clean error); larger
#: ones are written by HDF5 straight to a marked temporary after a free-space check, so that an import of a large
#: scan does not hold its data three times (the arrays, the in-memory file and its image)
IN_MEMORY_MAX_BYTES = 256 << 20


def _nbytes_of(arrays) -> int:
    return int(sum(getattr(a, "nbytes", 0) for a in arrays))


@contextlib.contextmanager
def atomic_h5(path, size_hint: int = 0):
    """An HDF5 file written to ``path`` only if the block succeeds: a temporary beside ``path``, then a rename.

    ``size_hint``: about how many bytes of arrays the block writes. Up to ``IN_MEMORY_MAX_BYTES`` the file is
    built in memory and written by ``atomic.atomic_write`` (HDF5 never writes to the disk itself: a full disk is
    one :class:`~multimodal_ip.errors.DataError` naming ``path``; HDF5 failing inside its own writes leaves objects
    that cannot be closed: tracebacks at exit and a crash). Larger files are written by HDF5 to a marked temporary once
    the disk has room for them (checked first: one line naming both sizes otherwise); only a disk filled by another
    program during that write can still end in HDF5's own error."""
    from ..atomic import USERBLOCK, atomic_write

    path = Path(path)
    if size_hint > IN_MEMORY_MAX_BYTES:
        with _atomic_h5_on_disk(path, size_hint) as f:
            yield f
        return
    try:
        with h5py.File(f"<memory: {path.name} {uuid.uuid4().hex}>", "w", driver="core", backing_store=False,
                       userblock_size=USERBLOCK) as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            yield f
            f.flush()
            image = f.id.get_file_image()
    except OSError as exc:
        msg = f"cannot write {path}: {one_line(exc)}"
        raise DataError(msg) from exc
    atomic_write(path, image, userblock=USERBLOCK)


@contextlib.contextmanager
def _atomic_h5_on_disk(path: Path, size: int):
    """:func:`atomic_h5` for a large file: HDF5 writes a temporary that holds the marker of
    :func:`~multimodal_ip.atomic.temporary_marker` in its user block until it is complete."""
    import shutil
    import tempfile

    from ..atomic import USERBLOCK, remove_stale_temporaries, temporary_marker, temporary_prefix

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        free = shutil.disk_usage(path.parent).free
        if free < size + (16 << 20):
            msg = (f"cannot write {path}: it needs about {size / 1e9:.3g} GB and {path.parent} has "
                   f"{free / 1e9:.3g} GB free")
            raise DataError(msg)
        fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=".tmp", dir=path.parent)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # the user's umask, as a plain open() would give
        os.close(fd)
    except OSError as exc:
        msg = f"cannot write {path}: {exc.strerror or exc}"
        raise DataError(msg) from None

    def mark(block: bytes) -> None:  # HDF5 leaves the user block alone: the marker goes in beside it
        fd = os.open(tmp, os.O_WRONLY)
        try:
            os.pwrite(fd, block, 0)
            os.fsync(fd)
        finally:
            os.close(fd)

    try:
        with h5py.File(tmp, "w", userblock_size=USERBLOCK) as f:
            mark(temporary_marker().ljust(USERBLOCK, b"\0"))
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            yield f
        mark(bytes(USERBLOCK))
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        msg = f"cannot write {path}: {one_line(exc)}"
        raise DataError(msg) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_dataset(path, ds: Dataset) -> None:
    """Write ``ds`` to ``path`` atomically (temporary file + rename).

    Parameters
    ----------
    path : :obj:`str` or :obj:`pathlib.Path`
        The HDF5 file to write (replaced only once the new one is complete).
    ds : :class:`Dataset`
        Variables, truth, terms and root attributes, written in the layout of :doc:`/schema`.
    """
    size = _nbytes_of(ds.truth.values()) + sum(_nbytes_of(t.arrays.values()) for t in ds.terms.values())
    with atomic_h5(path, size_hint=size) as f:
        for k, v in ds.attrs.items():
            f.attrs[k] = v
        gv = f.create_group("variables")
        for v in ds.variables:
            d = gv.create_dataset(v.name, data=h5py.Empty("f8"))
            d.attrs["shape"] = np.asarray(v.shape, dtype=np.int64)
            d.attrs["dtype"] = str(v.dtype)
            if v.lower is not None:
                d.attrs["lower"] = v.lower
            if v.upper is not None:
                d.attrs["upper"] = v.upper
        if ds.truth:
            gt = f.create_group("truth")
            for k, a in ds.truth.items():
                gt.create_dataset(k, data=np.asarray(a))
        gterms = f.create_group("terms")
        for name, t in ds.terms.items():
            g = gterms.create_group(name)
            g.attrs["modality"] = t.modality
            for k, v in t.attrs.items():
                g.attrs[k] = v
            for k, a in t.arrays.items():
                g.create_dataset(k, data=np.asarray(a))


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
        msg = f"{path}:/{key}: cannot read data ({one_line(exc)}); the file may be truncated or corrupt"
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


def load_dataset(path, terms=None, part=None, allow_external=False, budget=None, precision=None) -> Dataset:
    """Read and check a dataset file (opened read-only). ``terms`` keeps only the named terms.

    ``part = (rank, size)`` reads only this rank's contiguous share of every term's split axis
    (the datasets a modality lists in ``split_axes``); the attribute ``split_total`` keeps the whole length.
    Terms whose modality declares no split are read on every rank (the problem counts them once).

    External links, virtual datasets, external raw storage and links leaving the file are refused unless
    ``allow_external``; every dataset's declared size is checked against ``budget``
    (``safety.MemoryBudget``, default from ``MMIP_MAX_MEMORY`` or the available memory) before it
    is read, and so are the fixed-size attributes and the variables' sizes. ``/truth`` is read only for the variables
    and the calibration unknowns the loaded terms can refine. ``/variables`` is optional:
    without it, the variables are those the modalities infer from their data (``variables(td)``).

    The datasets a modality lists in ``measurements`` are read compactly (``compact_dtype``): integer counts of
    up to 32 bits as they are, floats wider than ``precision`` (the run's compute dtype, e.g. ``"float32"``) and wider
    integers converted while they are read, so a float64 file in a float32 run never holds its float64 copy.

    Parameters
    ----------
    path : :obj:`str` or :obj:`pathlib.Path`
        The dataset file (:doc:`/schema`).
    terms : :obj:`list` of :obj:`str`, optional
        Names of the terms to load; default all.
    part : :obj:`tuple` of :obj:`int`, optional
        ``(rank, size)``: read only this rank's share of the split axes.
    allow_external : :obj:`bool`, optional
        Accept external links, virtual datasets and external raw storage.
    budget : ``safety.MemoryBudget``, optional
        The memory the read may take; default from ``MMIP_MAX_MEMORY`` or the available memory.
    precision : :obj:`str`, optional
        The run's compute dtype, to which wide measurements are converted as they are read.

    Returns
    -------
    :class:`Dataset`
        The checked dataset, its arrays read into memory.

    Raises
    ------
    DataError
        Missing or unreadable file, wrong format, missing groups, bad variable specs or truth, links leaving
        the file, data larger than the memory budget.
    """
    from ..modality import capabilities, split_length
    from ..plugins import get_registry
    from ..safety import MemoryBudget, walk_group

    path = Path(path)
    budget = budget if budget is not None else MemoryBudget()
    with open_h5(path) as f:
        check_attrs(path, f, budget)
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
        groups = dict(walk_group(path, f, "/", allow_external))
        if "terms" not in groups or not isinstance(groups["terms"], h5py.Group):
            msg = f"{path}: missing group /terms"
            raise DataError(msg)
        variables = []
        if "variables" in groups:
            if not isinstance(groups["variables"], h5py.Group):
                msg = f"{path}:/variables: expected a group, got a dataset"
                raise DataError(msg)
            for name, d in walk_group(path, groups["variables"], "/variables/", allow_external):
                check_attrs(path, d, budget)
                variables.append(_variable_spec(path, name, d))
            if not variables:
                msg = f"{path}:/variables is empty (omit the group to let the modalities infer the variables)"
                raise DataError(msg)
        term_groups = dict(walk_group(path, groups["terms"], "/terms/", allow_external))
        modality_of = {}
        for name, g in term_groups.items():
            if not isinstance(g, h5py.Group):
                msg = f"{path}:/terms/{name}: expected a group (a data term), got a dataset"
                raise DataError(msg)
            check_attrs(path, g, budget)
            if "modality" not in g.attrs:
                msg = f"{path}:/terms/{name}: missing attribute 'modality'"
                raise DataError(msg)
            modality_of[name] = _str(g.attrs["modality"])
        if terms is not None:
            missing = [t for t in terms if t not in term_groups]
            if missing:
                msg = f"{path}: no term(s) {sorted(missing)}; the file has: {', '.join(term_groups) or 'none'}"
                raise DataError(msg)
        registry = get_registry()
        if not variables:
            variables = _infer_variables(path, term_groups, modality_of, registry, allow_external)
        take_variables(path, variables, budget)
        space = VariableSpace(variables)
        # /truth is read only for the unknowns a problem of this file can have: its variables and the calibration
        # unknowns its terms can refine (an unused entry is never read, whatever its size)
        used = set(space.names) | {r for name in (terms if terms is not None else term_groups)
                                   for r in capabilities(registry.get("modality", modality_of[name])).refinable}
        truth = {}
        if "truth" in groups:
            if not isinstance(groups["truth"], h5py.Group):
                msg = f"{path}:/truth: expected a group, got a dataset"
                raise DataError(msg)
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
        term_data = {}
        for name, g in term_groups.items():
            if terms is not None and name not in terms:
                continue
            items = dict(walk_group(path, g, f"/terms/{name}/", allow_external))
            info = capabilities(registry.get("modality", modality_of[name]))
            datasets = {k: d for k, d in items.items() if isinstance(d, h5py.Dataset)
                        and (info.datasets is None or k in info.datasets)}  # only what the modality reads
            axes: dict[str, int] = {}
            sl = None
            total = None
            if part is not None:
                axes = info.split_axes
                total = split_length(f"{path}:/terms/{name}", {k: d.shape for k, d in datasets.items()}, axes)
                if total is not None:
                    rank, size = part
                    sl = slice(rank * total // size, (rank + 1) * total // size)
            arrays = {k: _read_checked(path, d, f"/terms/{name}/{k}", budget,
                                       (axes[k], sl) if k in axes and sl is not None else None,
                                       compact_dtype(d.dtype, precision) if k in info.measurements else None)
                      for k, d in datasets.items()}
            attrs = _attrs(g)
            if sl is not None:
                attrs["split_total"] = int(total or 0)
                attrs["split_offset"] = int(sl.start)
            term_data[name] = TermData(name, modality_of[name], arrays, attrs, str(path))
        if not term_data:
            msg = f"{path}:/terms holds no data term"
            raise DataError(msg)
        return Dataset(variables, term_data, truth, _attrs(f), str(path), tuple(term_groups))


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


class _LazyTerm(TermData):
    """A term whose arrays are h5py datasets (read on demand): what ``variables(td)`` sees."""


def _infer_variables(path, term_groups, modality_of, registry, allow_external) -> list:
    """Variables from the modalities' ``variables(td)`` over every term of the file (arrays read on demand)."""
    from ..safety import walk_group

    terms = {}
    for name, g in term_groups.items():
        items = {k: d for k, d in walk_group(path, g, f"/terms/{name}/", allow_external) if isinstance(d, h5py.Dataset)}
        terms[name] = _LazyTerm(name, modality_of[name], items, _attrs(g), str(path))
    return infer_variables(path, terms, registry)


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
