r"""The HDF5 dataset schema (docs/schema.md): read through the safe reader, validate, write atomically.

::

    /                      attrs format="multimodal_ip", format_version=1
    /variables/<var>       empty datasets whose attrs give shape, dtype, lower, upper
    /truth/<var>           optional ground truth
    /terms/<term>/         attr modality=<plugin>; the modality's arrays and attrs
"""

__all__ = ["Dataset", "TermData", "load_dataset", "save_dataset", "atomic_h5"]

import contextlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..errors import DataError, one_line
from ..variables import VariableSpace

# the safe reader, the layout checks and the large-file writer live in private modules; their names stay importable
# from here (plugins read facility files through open_h5, resolve, read_path and read_strings)
from ._reader import _attrs as _attrs
from ._reader import _blocks as _blocks
from ._reader import _check_narrowing as _check_narrowing
from ._reader import _nbytes as _nbytes
from ._reader import _read as _read
from ._reader import _read_checked as _read_checked
from ._reader import _shown as _shown
from ._reader import _str as _str
from ._reader import check_attrs as check_attrs
from ._reader import compact_dtype as compact_dtype
from ._reader import open_h5 as open_h5
from ._reader import read_group as read_group
from ._reader import read_path as read_path
from ._reader import read_strings as read_strings
from ._reader import resolve as resolve
from ._schema import _variable_spec as _variable_spec
from ._schema import check_format, check_terms_group, declared_variables, read_truth, split_slice, term_groups
from ._schema import infer_variables as infer_variables
from ._schema import take_variables as take_variables
from ._writer import FORMAT as FORMAT
from ._writer import FORMAT_VERSION as FORMAT_VERSION
from ._writer import _atomic_h5_on_disk as _atomic_h5_on_disk
from ._writer import _nbytes_of as _nbytes_of


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


@contextlib.contextmanager
def atomic_h5(path, size_hint: int = 0):
    """An HDF5 file written to ``path`` only if the block succeeds: a temporary beside ``path``, then a rename.

    ``size_hint``: about how many bytes of arrays the block writes. Up to ``IN_MEMORY_MAX_BYTES`` the file is
    built in memory and written by ``atomic.atomic_write`` (HDF5 never writes to the disk itself: a full disk is
    one :class:`~multimodal_ip.errors.DataError` naming ``path``; HDF5 failing inside its own writes leaves objects
    that cannot be closed: tracebacks at exit and a crash). Larger files are written by HDF5 to a marked temporary once
    the disk has room for them (checked first: one line naming both sizes otherwise); only a disk filled by another
    program during that write can still end in HDF5's own error.

    Parameters
    ----------
    path : :obj:`str` or :obj:`pathlib.Path`
        File to write.
    size_hint : :obj:`int`, optional
        Approximate bytes of arrays the block writes.

    Yields
    ------
    f : :obj:`h5py.File`
        The open file (its root attributes ``format`` and ``format_version`` set).

    Raises
    ------
    DataError
        The file cannot be written (full disk, no permission, not enough room for a large file).
    """
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


def load_dataset(path, terms=None, part=None, allow_external=False, budget=None, precision=None,
                 plan=None) -> Dataset:
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
    plan : callable, optional
        Called as ``plan(space, terms, nbytes)`` once the file's structure is checked and before any term's or the
        truth's array is read: ``terms`` maps each term to be read to a :class:`TermData` whose arrays are the
        unread h5py datasets its modality reads, ``nbytes`` is what the read will take; it may raise to refuse the
        run (:mod:`multimodal_ip.run_budget`).

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
    from ..modality import capabilities
    from ..plugins import get_registry
    from ..safety import MemoryBudget, walk_group

    path = Path(path)
    budget = budget if budget is not None else MemoryBudget()
    with open_h5(path) as f:
        check_attrs(path, f, budget)
        check_format(path, f)
        groups = dict(walk_group(path, f, "/", allow_external))
        check_terms_group(path, groups)
        variables = declared_variables(path, groups, budget, allow_external)
        found, modality_of = term_groups(path, groups["terms"], terms, budget, allow_external)
        registry = get_registry()
        if not variables:
            variables = _infer_variables(path, found, modality_of, registry, allow_external)
        take_variables(path, variables, budget)
        space = VariableSpace(variables)
        loaded = [name for name in found if terms is None or name in terms]
        # /truth is read only for the unknowns a problem of this file can have: its variables and the calibration
        # unknowns its terms can refine (an unused entry is never read, whatever its size)
        used = set(space.names) | {r for name in (terms if terms is not None else found)
                                   for r in capabilities(registry.get("modality", modality_of[name])).refinable}
        if plan is not None:
            lazy = {n: _LazyTerm(n, modality_of[n], _term_datasets(path, n, found[n], modality_of[n], registry,
                                                                   allow_external), _attrs(found[n]), str(path))
                    for n in loaded}
            plan(space, lazy, _truth_bytes(path, groups, used, allow_external) + sum(
                _nbytes(d, None, compact_dtype(d.dtype, precision) if k in _measurements(registry, t.modality)
                        else None) for t in lazy.values() for k, d in t.arrays.items()))
        truth = read_truth(path, groups, used, space, budget, allow_external)
        term_data = {name: _read_term(path, name, found[name], modality_of[name], registry, budget=budget, part=part,
                                      precision=precision, allow_external=allow_external) for name in loaded}
        if not term_data:
            msg = f"{path}:/terms holds no data term"
            raise DataError(msg)
        return Dataset(variables, term_data, truth, _attrs(f), str(path), tuple(found))


def _read_term(path, name, g, modality, registry, *, budget, part, precision, allow_external) -> TermData:
    """The group ``/terms/<name>``: the datasets its modality reads (``part``: this rank's share of its split
    axes), its measurements converted to ``compact_dtype`` as they are read."""
    from ..modality import capabilities

    info = capabilities(registry.get("modality", modality))
    datasets = _term_datasets(path, name, g, modality, registry, allow_external)
    axes: dict[str, int] = info.split_axes if part is not None else {}
    sl, total = split_slice(f"{path}:/terms/{name}", datasets, axes, part) if part is not None else (None, None)
    arrays = {k: _read_checked(path, d, f"/terms/{name}/{k}", budget,
                               (axes[k], sl) if k in axes and sl is not None else None,
                               compact_dtype(d.dtype, precision) if k in info.measurements else None)
              for k, d in datasets.items()}
    attrs = _attrs(g)
    if sl is not None:
        attrs["split_total"] = int(total or 0)
        attrs["split_offset"] = int(sl.start)
    return TermData(name, modality, arrays, attrs, str(path))


def _term_datasets(path, name, g, modality, registry, allow_external) -> dict:
    """``{key: h5py.Dataset}`` of ``/terms/<name>``: only the datasets its modality reads."""
    from ..modality import capabilities
    from ..safety import walk_group

    info = capabilities(registry.get("modality", modality))
    return {k: d for k, d in walk_group(path, g, f"/terms/{name}/", allow_external) if isinstance(d, h5py.Dataset)
            and (info.datasets is None or k in info.datasets)}


def _measurements(registry, modality) -> tuple:
    from ..modality import capabilities

    return capabilities(registry.get("modality", modality)).measurements


def _truth_bytes(path, groups, used, allow_external) -> int:
    """Declared bytes of the ``/truth`` datasets a run reads (those in ``used``)."""
    from ..safety import walk_group

    if not isinstance(groups.get("truth"), h5py.Group):
        return 0
    return sum(_nbytes(d) for k, d in walk_group(path, groups["truth"], "/truth/", allow_external)
               if k in used and isinstance(d, h5py.Dataset))


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
