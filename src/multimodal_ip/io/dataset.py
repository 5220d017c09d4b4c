r"""The HDF5 dataset schema (DESIGN section 5): read, validate, write atomically.

::

    /                      attrs format="multimodal_ip", format_version=1
    /variables/<var>       empty datasets whose attrs give shape, dtype, lower, upper
    /truth/<var>           optional ground truth
    /terms/<term>/         attr modality=<plugin>; the modality's arrays and attrs
"""

__all__ = ["Dataset", "TermData", "load_dataset", "save_dataset", "atomic_h5"]

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..errors import DataError
from ..variables import Variable, VariableSpace

FORMAT = "multimodal_ip"
FORMAT_VERSION = 1


@dataclass
class TermData:
    """One ``/terms/<name>`` group: its modality, arrays and attributes (and where it came from)."""

    name: str
    modality: str
    arrays: dict
    attrs: dict = field(default_factory=dict)
    source: str = "<memory>"

    def where(self, key=None) -> str:
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
        if shape is not None and (a.ndim != len(shape) or any(s is not None and s != g for s, g in zip(shape, a.shape))):
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
        if finite and a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
            msg = f"{self.where(key)}: contains NaN or Inf"
            raise DataError(msg)
        return a

    def attr(self, key, default=None, cast=float):
        if key not in self.attrs:
            if default is None:
                msg = f"{self.where()}: missing attribute {key!r}"
                raise DataError(msg)
            return default
        try:
            return cast(self.attrs[key])
        except (TypeError, ValueError):
            shown = " ".join(repr(self.attrs[key]).split())[:80]  # one line, however the value prints
            msg = f"{self.where()}: attribute {key!r} = {shown} is not a valid {cast.__name__}"
            raise DataError(msg) from None


@dataclass
class Dataset:
    """A problem on disk: variables, optional truth, data terms, root attributes."""

    variables: list
    terms: dict
    truth: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    source: str = "<memory>"

    @property
    def space(self) -> VariableSpace:
        return VariableSpace(self.variables)


@contextlib.contextmanager
def atomic_h5(path):
    """Open a temporary HDF5 file beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        msg = f"cannot write {path}: {exc.strerror or exc}"
        raise DataError(msg) from exc
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            yield f
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        msg = f"cannot write {path}: {exc.strerror or exc}"
        raise DataError(msg) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_dataset(path, ds: Dataset) -> None:
    """Write ``ds`` to ``path`` atomically (temporary file + rename)."""
    with atomic_h5(path) as f:
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


def _str(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


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
    """Open ``path`` read-only; a missing or unreadable file is a :class:`DataError` naming it."""
    path = Path(path)
    if not path.exists():
        msg = f"{path}: no such file"
        raise DataError(msg)
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        msg = f"{path}: not a readable HDF5 file ({exc})"
        raise DataError(msg) from None


def _read(d, axis_slice):
    if axis_slice is None:
        return d[()]
    axis, sl = axis_slice
    index = [slice(None)] * d.ndim
    index[axis] = sl
    return d[tuple(index)]


def load_dataset(path, terms=None, part=None) -> Dataset:
    """Read and check a dataset file (opened read-only). ``terms`` keeps only the named terms.

    ``part = (rank, size)`` reads only this rank's contiguous share of every term's scan positions
    (the datasets a modality lists in ``position_axes``); the attribute ``positions_total`` keeps J.

    Raises
    ------
    DataError
        Missing or unreadable file, wrong format, missing groups, bad variable specs or truth.
    """
    path = Path(path)
    with open_h5(path) as f:
        if _str(f.attrs.get("format", "")) != FORMAT:
            msg = f"{path}: not a multimodal_ip file (root attribute format={f.attrs.get('format')!r})"
            raise DataError(msg)
        version = int(f.attrs.get("format_version", -1))
        if version != FORMAT_VERSION:
            msg = f"{path}: format_version {version} is not supported (this version reads {FORMAT_VERSION})"
            raise DataError(msg)
        for grp in ("variables", "terms"):
            if grp not in f or not isinstance(f[grp], h5py.Group):
                msg = f"{path}: missing group /{grp}"
                raise DataError(msg)
        variables = []
        for name, d in f["variables"].items():
            try:
                shape = tuple(int(s) for s in np.atleast_1d(d.attrs["shape"]))
                dtype = np.dtype(_str(d.attrs["dtype"]))
                variables.append(Variable(name, shape, dtype, d.attrs.get("lower"), d.attrs.get("upper")))
            except (KeyError, TypeError, ValueError) as exc:
                msg = f"{path}:/variables/{name}: needs attrs shape (ints) and dtype (float/complex): {exc}"
                raise DataError(msg) from None
        if not variables:
            msg = f"{path}:/variables is empty"
            raise DataError(msg)
        space = VariableSpace(variables)
        truth = {}
        if "truth" in f:
            for name, d in f["truth"].items():
                a = d[()]
                if name not in space:  # e.g. the true probe or positions: checked when they are refined
                    truth[name] = a
                    continue
                if a.shape != space[name].shape:
                    msg = f"{path}:/truth/{name}: expected shape {space[name].shape}, got {a.shape}"
                    raise DataError(msg)
                truth[name] = a
        term_data = {}
        for name, g in f["terms"].items():
            if terms is not None and name not in terms:
                continue
            if "modality" not in g.attrs:
                msg = f"{path}:/terms/{name}: missing attribute 'modality'"
                raise DataError(msg)
            axes: dict[str, int] = {}
            sl = None
            if part is not None:
                from ..plugins import get_registry

                axes = getattr(get_registry().get("modality", _str(g.attrs["modality"])), "position_axes", {})
                if "positions" in g:
                    total = g["positions"].shape[0]
                    rank, size = part
                    sl = slice(rank * total // size, (rank + 1) * total // size)
            try:
                arrays = {k: _read(d, (axes[k], sl) if k in axes and sl is not None else None)
                          for k, d in g.items() if isinstance(d, h5py.Dataset)}
            except OSError as exc:
                msg = f"{path}:/terms/{name}: cannot read data ({exc}); the file may be truncated"
                raise DataError(msg) from None
            attrs = _attrs(g)
            if sl is not None:
                attrs["positions_total"] = int(g["positions"].shape[0])
            term_data[name] = TermData(name, _str(g.attrs["modality"]), arrays, attrs, str(path))
        if terms is not None:
            missing = set(terms) - set(term_data)
            if missing:
                msg = f"{path}: no term(s) {sorted(missing)}; the file has: {', '.join(f['terms'])}"
                raise DataError(msg)
        if not term_data:
            msg = f"{path}:/terms holds no data term"
            raise DataError(msg)
        return Dataset(variables, term_data, truth, _attrs(f), str(path))
