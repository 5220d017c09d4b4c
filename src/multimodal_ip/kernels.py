"""Fused elementwise kernels for the block loops of streamed terms, with numba when it is installed.

Each kernel makes one pass over a block where numpy makes several (each numpy ufunc is a trip through memory).
numba is optional (``pip install multimodal_ip[fast]``): without it, or with ``MMIP_NUMBA=0``, the same functions
run as in-place numpy with identical results to rounding. Measured gains are in docs/performance.md.
"""

__all__ = ["use_numba", "amplitude_misfit_", "FASTMATH"]

import os
from typing import Any

import numpy as np

numba: Any
try:  # pragma: no cover - depends on the environment
    import numba
except ImportError:  # pragma: no cover
    numba = None


def use_numba(a=None) -> bool:
    """Whether the numba kernels run (numba importable, ``MMIP_NUMBA`` not 0, and ``a`` a numpy array).

    Parameters
    ----------
    a : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`, optional
        Array a kernel would run on; ``None``: only numba and ``MMIP_NUMBA`` are checked.

    Returns
    -------
    flag : :obj:`bool`
        ``True`` when the numba kernel is used.
    """
    if numba is None or os.environ.get("MMIP_NUMBA", "1").strip() == "0":
        return False
    return a is None or isinstance(a, np.ndarray)


#: numba's fast-math flags without "no NaN / no inf": reductions may be reordered and vectorised (4x faster than
#: strict IEEE here), while a non-finite prediction still gives a non-finite objective the solvers stop on
FASTMATH = {"arcp", "contract", "afn", "reassoc", "nsz"}

if numba is not None:  # pragma: no cover - compiled code is not traced by coverage

    @numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
    def _amplitude_nb(y, d, scale):
        total = 0.0
        zero = d[0] - d[0]
        for i in range(y.size):
            z = y[i]
            a = np.sqrt(z.real * z.real + z.imag * z.imag)
            di = d[i]
            r = a - np.sqrt(di if di > zero else zero)
            total += r * r
            y[i] = z * (scale * r / a) if a > 0 else 0
        return total


def amplitude_misfit_(y, d, scale: float) -> float:
    r""":math:`\sum (|y| - \sqrt{d})^2` returned, and ``y`` overwritten by :math:`s\,(|y| - \sqrt d)\,y/|y|`
    (0 where :math:`y = 0`): the amplitude loss's value (before the factor 1/2 s) and gradient in one pass.

    Parameters
    ----------
    y : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Complex predicted field, overwritten by the gradient.
    d : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Measured intensities, same size as ``y`` (negative values count as 0; integer counts accepted).
    scale : :obj:`float`
        Factor :math:`s` of the gradient.

    Returns
    -------
    total : :obj:`float`
        :math:`\sum (|y| - \sqrt{d})^2`.
    """
    if d.dtype.kind in "iub":  # integer counts: converted one block at a time (sqrt of an integer is float64)
        d = d.astype(y.real.dtype)
    if use_numba(y) and y.flags.c_contiguous and d.flags.c_contiguous and y.size == d.size:
        return float(_amplitude_nb(y.reshape(-1), d.reshape(-1), y.real.dtype.type(scale)))
    ncp = _xp(y)
    a = ncp.abs(y)
    r = ncp.sqrt(ncp.maximum(d, 0)).reshape(a.shape).astype(a.dtype, copy=False)
    ncp.subtract(a, r, out=r)
    total = float(ncp.vdot(r.ravel(), r.ravel()).real)
    zero = a == 0
    a[zero] = 1
    ncp.divide(r, a, out=r)
    r *= scale
    r[zero] = 0
    y *= r
    return total


def _xp(a):
    from .backend import get_array_module

    return get_array_module(a)


def __getattr__(name):
    if name == "scatter_patches_":  # moved with the scan-probe physics (the core never imports a plugin)
        msg = ("multimodal_ip.kernels.scatter_patches_ moved to the scan-probe plugin: "
               "from mmip_scanprobe.scatter import scatter_patches_ (pip install mmip-scanprobe)")
        raise ImportError(msg)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
