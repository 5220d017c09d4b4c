__all__ = ["Variable", "VariableSpace"]

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from .backend import get_array_module, real_dtype
from .errors import DtypeError, ShapeError, UnknownVariableError


@dataclass(frozen=True)
class Variable:
    r"""One named unknown.

    Parameters
    ----------
    name : :obj:`str`
        Identifier used by data terms (``inputs``), regularizers and files.
    shape : :obj:`tuple`
        Array shape of the unknown.
    dtype : :obj:`str`, optional
        ``float32``, ``float64``, ``complex64`` or ``complex128``.
    lower, upper : :obj:`float`, optional
        Elementwise bounds (real variables only); ``None`` means unbounded.
    """

    name: str
    shape: tuple
    dtype: np.dtype = np.dtype("float64")
    lower: float | None = None
    upper: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in np.atleast_1d(self.shape)) if self.shape != () else ())
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        if self.dtype.kind not in "fc":
            msg = f"variable {self.name!r}: dtype must be float or complex, got {self.dtype}"
            raise DtypeError(msg)
        if self.dtype.kind == "c" and (self.lower is not None or self.upper is not None):
            msg = f"variable {self.name!r}: bounds are only defined for real variables"
            raise DtypeError(msg)

    @property
    def is_complex(self) -> bool:
        return self.dtype.kind == "c"

    @property
    def size(self) -> int:
        """Number of entries of the array (complex entries count once)."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def real_size(self) -> int:
        """Number of real numbers in the packed vector (complex entries count twice)."""
        return self.size * (2 if self.is_complex else 1)


class VariableSpace:
    r"""Named unknowns and their packing into one flat real vector.

    Solvers see one real vector; data terms and regularizers see named arrays.
    A complex variable occupies ``2 * size`` consecutive reals (interleaved real
    and imaginary parts), so :meth:`unpack` returns views, never copies.

    Parameters
    ----------
    variables : iterable of :class:`Variable`
        The unknowns (the order of ``names``, of :meth:`unpack` and of tables), in packing order unless
        ``packing`` says otherwise.
    packing : sequence of :obj:`str`, optional
        The variables' names in the order their entries lie in the packed vector (:meth:`grouped`).

    Examples
    --------
    >>> space = VariableSpace([Variable("x", (4, 4)), Variable("w", (2, 4, 4))])
    >>> v = space.pack({"x": np.ones((4, 4)), "w": np.zeros((2, 4, 4))})
    >>> space.unpack(v)["w"].shape
    (2, 4, 4)
    """

    def __init__(self, variables: Iterable[Variable], packing=None):
        self.variables = tuple(variables)
        names = [v.name for v in self.variables]
        if len(set(names)) != len(names):
            msg = f"duplicate variable names in {names}"
            raise ValueError(msg)
        self._by_name = {v.name: v for v in self.variables}
        #: the names in the order their entries lie in the packed vector
        self.packing = tuple(names) if packing is None else tuple(packing)
        if sorted(self.packing) != sorted(names):
            msg = f"packing order {list(self.packing)} is not an order of the variables {names}"
            raise ValueError(msg)
        packed = [self._by_name[n] for n in self.packing]
        offsets = np.cumsum([0] + [v.real_size for v in packed])
        self._slices = {v.name: slice(int(a), int(b)) for v, a, b in zip(packed, offsets[:-1], offsets[1:])}
        self.size = int(offsets[-1])
        rdts = {real_dtype(v.dtype) for v in self.variables}
        self.dtype = np.result_type(*rdts) if rdts else np.dtype("float64")

    # ---- lookup ----------------------------------------------------------------
    @property
    def names(self) -> tuple:
        return tuple(self._by_name)

    def __contains__(self, name) -> bool:
        return name in self._by_name

    def __getitem__(self, name) -> Variable:
        try:
            return self._by_name[name]
        except KeyError:
            msg = f"unknown variable {name!r}; this space has: {', '.join(self.names) or '(none)'}"
            raise UnknownVariableError(msg) from None

    def slice(self, name) -> slice:
        """The slice of the packed vector that holds variable ``name``."""
        self[name]
        return self._slices[name]

    def subspace(self, names) -> "VariableSpace":
        """The space of the variables ``names`` (in that order)."""
        return VariableSpace([self[n] for n in names])

    def grouped(self, groups: Iterable) -> "VariableSpace":
        """The same variables (and ``names``) packed so that each group's (e.g. a data term's inputs) entries
        are adjacent and in its order where possible: the largest group first, then each other's variables not yet
        placed, in its order, then the remaining ones in this space's packing order. A term then reads its input
        as a view of the packed vector, not a concatenated copy (docs/performance.md, "XRF at the scan
        positions").

        Parameters
        ----------
        groups : iterable of sequences of :obj:`str`
            Variable names, each group in the order it is read.

        Returns
        -------
        :class:`VariableSpace`
            This space when its order already is that one, else a new one in that order.
        """
        order: list = []
        for g in sorted((tuple(dict.fromkeys(g)) for g in groups), key=len, reverse=True):  # stable: ties in order
            if len(g) > 1:
                order += [n for n in g if n not in order]
        order += [n for n in self.packing if n not in order]
        return self if tuple(order) == self.packing else VariableSpace(self.variables, packing=order)

    def repacked(self, vector, names):
        """``vector``, packed by the same variables in the order ``names`` (e.g. a checkpoint's), in this space's
        ``packing`` order (a new array; ``vector`` itself when the orders agree). Leading axes are kept
        (stacked vectors).

        Parameters
        ----------
        vector : array
            Packed vector(s) along the last axis, of ``size`` entries.
        names : sequence of :obj:`str`
            This space's variable names, in the order ``vector`` packs them.

        Returns
        -------
        array
            The same values in this space's packing.
        """
        if tuple(names) == self.packing:
            return vector
        if sorted(names) != sorted(self.names):
            msg = f"packed by variables {list(names)}; this space has: {', '.join(self.names)}"
            raise UnknownVariableError(msg)
        theirs = VariableSpace(self.variables, packing=names)
        ncp = get_array_module(vector)
        return ncp.concatenate([vector[..., theirs.slice(n)] for n in self.packing], axis=-1)

    def __repr__(self) -> str:
        inner = ", ".join(f"{v.name}{list(v.shape)}:{v.dtype}" for v in self.variables)
        return f"VariableSpace({inner})"

    # ---- packing -----------------------------------------------------------------
    def check(self, values: Mapping) -> None:
        """Raise a clear error unless ``values`` holds exactly this space's variables with their shapes."""
        extra = set(values) - set(self.names)
        if extra:
            msg = f"unknown variable(s) {sorted(extra)}; this space has: {', '.join(self.names)}"
            raise UnknownVariableError(msg)
        for v in self.variables:
            if v.name not in values:
                msg = f"missing variable {v.name!r}; expected all of: {', '.join(self.names)}"
                raise UnknownVariableError(msg)
            a = values[v.name]
            if tuple(a.shape) != v.shape:
                msg = f"variable {v.name!r}: expected shape {v.shape}, got {tuple(a.shape)}"
                raise ShapeError(msg)
            if np.iscomplexobj(a) and not v.is_complex:
                msg = f"variable {v.name!r} is real ({v.dtype}); got a complex array ({a.dtype})"
                raise DtypeError(msg)

    def pack(self, values: Mapping, dtype=None):
        """Concatenate named arrays into one flat real vector (on the arrays' backend)."""
        self.check(values)
        first = next(iter(values.values()))
        ncp = get_array_module(first)
        out = ncp.empty(self.size, dtype=dtype or self.dtype)
        for v in self.variables:
            a = ncp.asarray(values[v.name])
            part = out[self._slices[v.name]]
            if v.is_complex:
                a = a.astype(np.result_type(out.dtype, np.complex64), copy=False)
                part[0::2] = a.real.ravel()
                part[1::2] = a.imag.ravel()
            else:
                part[...] = a.ravel()
        return out

    def unpack(self, vector) -> dict:
        """Split a flat real vector into named arrays (views into ``vector``)."""
        if vector.ndim != 1 or vector.shape[0] != self.size:
            msg = f"packed vector must have shape ({self.size},) for {self!r}; got {tuple(vector.shape)}"
            raise ShapeError(msg)
        if np.iscomplexobj(vector):
            msg = f"packed vector must be real; got {vector.dtype}"
            raise DtypeError(msg)
        out = {}
        for v in self.variables:
            part = vector[self._slices[v.name]]
            if v.is_complex:
                cdt = np.result_type(vector.dtype, np.complex64)
                part = part.view(cdt) if vector.flags.c_contiguous else (part[0::2] + 1j * part[1::2])
            out[v.name] = part.reshape(v.shape)
        return out

    def zeros(self, xp=np):
        return xp.zeros(self.size, dtype=self.dtype)

    def full(self, fill_value, xp=np) -> "np.ndarray":
        """Packed vector whose real variables equal ``fill_value`` (complex ones: ``fill_value + 0j``)."""
        out = self.zeros(xp)
        for v in self.variables:
            out[self._slices[v.name]][0 :: 2 if v.is_complex else 1] = fill_value
        return out

    def bounds(self):
        """``(lower, upper)`` packed vectors (``-inf``/``inf`` where unbounded), or ``None`` if no bounds."""
        if all(v.lower is None and v.upper is None for v in self.variables):
            return None
        lo = np.full(self.size, -np.inf)
        hi = np.full(self.size, np.inf)
        for v in self.variables:
            if v.lower is not None:
                lo[self._slices[v.name]] = v.lower
            if v.upper is not None:
                hi[self._slices[v.name]] = v.upper
        return lo, hi
