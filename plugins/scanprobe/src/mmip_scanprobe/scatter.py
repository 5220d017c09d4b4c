"""The adjoint of window extraction for a block of scan positions: patches added back into an object-sized array.

numba is optional (``pip install multimodal_ip[fast]``): without it, or with ``MMIP_NUMBA=0``, the same function runs
as numpy slice-adds with identical results to rounding (:func:`multimodal_ip.kernels.use_numba` decides).
"""

__all__ = ["scatter_patches_"]

from typing import Any

import numpy as np

from multimodal_ip.kernels import FASTMATH, use_numba

numba: Any
try:  # pragma: no cover - depends on the environment
    import numba
except ImportError:  # pragma: no cover
    numba = None

if numba is not None:  # pragma: no cover - compiled code is not traced by coverage

    @numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
    def _scatter_nb(acc, back, probe_conj, rows, cols):
        wr, wc = probe_conj.shape
        for k in range(rows.size):
            r, c = rows[k], cols[k]
            for i in range(wr):
                line, b, p = acc[r + i], back[k, i], probe_conj[i]
                for j in range(wc):
                    line[c + j] += b[j] * p[j]


def scatter_patches_(acc, back, probe_conj, rows, cols) -> None:
    """``acc[rows[k]:+Np, cols[k]:+Np] += back[k] * probe_conj`` for every k of a block (``probe_conj`` ``None``:
    ``back[k]`` alone; ``back`` may be overwritten). ``rows``, ``cols``: host integer arrays. numba: one compiled
    pass; numpy without numba: one slice-add per position (overlapping windows rule out one fancy-indexed add, and
    ``np.add.at`` is several times slower); cupy: one ``scatter_add`` per block.

    Parameters
    ----------
    acc : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        2-D accumulator (the object's adjoint), added to in place; C-contiguous for cupy.
    back : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        The block's windows ``(K, Np0, Np1)``, on the device of ``acc``; may be overwritten.
    probe_conj : :obj:`numpy.ndarray` or :obj:`None`
        ``(Np0, Np1)`` factor multiplying each window (the conjugate probe); ``None``: none.
    rows, cols : :obj:`numpy.ndarray`
        ``(K,)`` host integer top-left row and column of each window in ``acc``.
    """
    if not isinstance(acc, np.ndarray):  # cupy: one scatter per block (the whole-scan index is never built)
        from multimodal_ip.backend import add_at, get_array_module

        ncp = get_array_module(acc)
        if probe_conj is not None:
            back *= probe_conj
        wr, wc = back.shape[-2:]
        prow = ncp.asarray(rows)[:, None, None] + ncp.arange(wr)[None, :, None]
        pcol = ncp.asarray(cols)[:, None, None] + ncp.arange(wc)[None, None, :]
        add_at(acc.reshape(-1), (prow * acc.shape[1] + pcol).ravel(), back.ravel())  # acc is C-contiguous
        return
    if probe_conj is not None and use_numba(acc) and acc.flags.c_contiguous and back.flags.c_contiguous:
        _scatter_nb(acc, back, probe_conj, rows, cols)
        return
    if probe_conj is not None:
        back *= probe_conj
    wr, wc = back.shape[-2:]
    for k in range(len(rows)):
        acc[rows[k] : rows[k] + wr, cols[k] : cols[k] + wc] += back[k]
