"""A solver's list of state vectors seen as one ``(k, n)`` array without stacking them (a checkpoint writes it row by
row: no second copy of an L-BFGS history at the moment it is saved)."""

import weakref

import numpy as np

from ..backend import to_numpy

_LIVE: "weakref.WeakSet[Rows]" = weakref.WeakSet()  # the Rows still held by someone (a checkpoint being kept)


class Rows:
    """``k`` vectors of length ``n`` as a read-only ``(k, n)`` array: ``shape``, ``dtype``, ``nbytes``, iteration
    and indexing by row (each row on the host, one at a time); ``numpy.asarray`` stacks them.

    Parameters
    ----------
    rows : :obj:`list`
        The vectors (numpy or cupy), all of one length and dtype.
    size : :obj:`int`
        ``n``, for an empty list.
    dtype : :obj:`numpy.dtype`, optional
        The dtype of an empty list (default float64).
    """

    ndim = 2

    def __init__(self, rows, size, dtype=None):
        self._rows = list(rows)
        self.dtype = np.dtype(self._rows[0].dtype if self._rows else (dtype or np.float64))
        self.shape = (len(self._rows), int(self._rows[0].size if self._rows else size))
        self.nbytes = self.shape[0] * self.shape[1] * self.dtype.itemsize
        _LIVE.add(self)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i):
        return to_numpy(self._rows[i])

    def __iter__(self):
        return (to_numpy(r) for r in self._rows)

    def __array__(self, dtype=None, copy=None):
        a = np.stack(list(self)) if self._rows else np.zeros(self.shape, dtype=self.dtype)
        return a if dtype is None else a.astype(dtype)


def in_rows(buffer) -> bool:
    """Whether a live :class:`Rows` (a ``state_dict()`` someone keeps) holds ``buffer``: a solver must then not
    write into it (the state stays what it was when taken).

    Parameters
    ----------
    buffer : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        A vector the solver would reuse.

    Returns
    -------
    held : :obj:`bool`
        ``True`` when some live ``Rows`` holds this very array.
    """
    return any(any(r is buffer for r in rows._rows) for rows in list(_LIVE))
