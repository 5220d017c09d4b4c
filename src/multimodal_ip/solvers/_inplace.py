"""Vector operations of the L-BFGS solver in place or a block at a time: with the rounding of the whole-vector
expressions they replace, and temporaries of one block instead of one unknown-sized vector (docs/performance.md,
"Memory budget of a run")."""

__all__ = ["BLOCK", "blocks", "same_blocks", "write_step", "writable"]

import numpy as np

from ..backend import get_array_module

#: elements per block of the solver's in-place vector updates (their temporaries are a block, not a vector)
BLOCK = 1 << 18


def blocks(n: int):
    """Slices of :data:`BLOCK` elements covering ``range(n)``."""
    return (slice(i, min(i + BLOCK, n)) for i in range(0, n, BLOCK))


def same_blocks(a, b) -> bool:
    """:func:`~multimodal_ip.solvers.same_point` a block at a time (no boolean array of the unknowns' size)."""
    ncp = get_array_module(a)
    return a.shape == b.shape and all(bool(ncp.array_equal(a[k], b[k])) for k in blocks(a.size))


def write_step(out, x, alpha, p) -> bool:
    """``out = x + alpha p`` in ``out``'s precision, a block at a time (the rounding of the whole expression);
    whether ``out`` held another point before."""
    ncp = get_array_module(out)
    changed = False
    for k in blocks(out.size):
        t = (x[k] + alpha * p[k]).astype(out.dtype, copy=False)
        changed = changed or not bool(ncp.array_equal(out[k], t))
        out[k] = t
    return changed


def writable(buffer, *operands):
    """``buffer`` as the output of an operation on ``operands`` when it owns its memory, is writable and of their
    result's dtype and shape; else ``None`` (a new array)."""
    return buffer if buffer.base is None and getattr(buffer.flags, "writeable", True) and \
        buffer.shape == operands[0].shape and buffer.dtype == np.result_type(*(o.dtype for o in operands)) else None
