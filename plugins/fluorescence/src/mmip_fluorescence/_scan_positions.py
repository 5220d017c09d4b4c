"""Whole-pixel scan positions of a :class:`~mmip_fluorescence.FluorescenceMap`: checked corners and the raster test
(private helpers of the map)."""

__all__ = ["raster", "whole_pixels"]

import numpy as np

from multimodal_ip.errors import ShapeError


def raster(ipos):
    """``((row0, col0), (rows, cols))`` when the positions are a row-major raster with unit steps (the full grid,
    or any rectangle of it), else ``None``."""
    if len(ipos) == 0:
        return None
    r0, c0 = int(ipos[0, 0]), int(ipos[0, 1])
    nc = int(np.argmax(ipos[:, 0] != r0)) or len(ipos)
    if len(ipos) % nc:
        return None
    nr = len(ipos) // nc
    grid = ipos.reshape(nr, nc, 2)
    ok = np.array_equal(grid[:, 0, 0], np.arange(r0, r0 + nr)) and np.all(grid[:, :, 0] == grid[:, :1, 0]) and \
        np.array_equal(grid[0, :, 1], np.arange(c0, c0 + nc)) and np.all(grid[:, :, 1] == grid[:1, :, 1])
    return ((r0, c0), (nr, nc)) if ok else None


def whole_pixels(pos, window, object_shape, chunk=1 << 20):
    """``pos`` as whole-pixel corners (int32 where they fit), checked a million positions at a time (a full-grid
    scan has one position per object pixel: whole-array temporaries would be several times the positions)."""
    kh, kw = window
    n0, n1 = object_shape
    ipos = np.empty(pos.shape, dtype=np.int32 if max(n0 + kh, n1 + kw) < 2**30 else np.int64)
    for s in range(0, len(pos), chunk):
        p = np.asarray(pos[s : s + chunk], dtype=float)
        r = np.rint(p)
        if not np.all(np.isfinite(p)) or np.any(np.abs(p - r) > 1e-6):
            msg = "fluorescence positions must be finite whole pixels"
            raise ShapeError(msg)
        bad = (r[:, 0] < -(kh - 1)) | (r[:, 0] > n0 - 1) | (r[:, 1] < -(kw - 1)) | (r[:, 1] > n1 - 1)
        if np.any(bad):
            j = int(np.flatnonzero(bad)[0])
            msg = (f"positions[{s + j}] = {tuple(int(v) for v in r[j])}: the {kh}x{kw} window does not touch the "
                   f"{n0}x{n1} object")
            raise ShapeError(msg)
        ipos[s : s + chunk] = r
    return ipos
