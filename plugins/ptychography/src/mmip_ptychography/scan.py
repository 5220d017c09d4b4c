__all__ = ["raster_positions", "fermat_spiral_positions"]

import numpy as np


def raster_positions(object_size, window, step_px=None, overlap=None, grid=None):
    """Top-left (row, col) corners of a raster scan, row-major, windows inside the object.

    Parameters
    ----------
    object_size : :obj:`int`
        Side of the square object (pixels).
    window : :obj:`int`
        Side of the probe window (pixels).
    step_px : :obj:`int`, optional
        Step between neighbouring positions (pixels); give this or ``overlap``.
    overlap : :obj:`float`, optional
        Linear overlap of neighbouring windows, ``step = round((1 - overlap) * window)``.
    grid : :obj:`tuple` of :obj:`int`, optional
        ``(rows, cols)``: the number of positions; default as many as fit.

    Returns
    -------
    positions : :obj:`numpy.ndarray`
        ``(J, 2)`` float array of top-left corners (pixels).
    """
    if (step_px is None) == (overlap is None):
        msg = "give exactly one of step_px or overlap"
        raise ValueError(msg)
    step = int(step_px) if step_px is not None else max(1, round((1 - float(overlap)) * window))
    n_fit = (int(object_size) - int(window)) // step + 1
    if n_fit < 1:
        msg = f"window {window} does not fit in object of size {object_size}"
        raise ValueError(msg)
    rows, cols = (n_fit, n_fit) if grid is None else grid
    if max(rows, cols) > n_fit:
        need = (max(rows, cols) - 1) * step + window
        msg = f"a {rows}x{cols} raster with step {step} needs an object of at least {need} px"
        raise ValueError(msg)
    r, c = np.meshgrid(np.arange(rows) * step, np.arange(cols) * step, indexing="ij")
    return np.stack([r.ravel(), c.ravel()], axis=1).astype(float)


def fermat_spiral_positions(object_size, window, count, step_px=None):
    r"""Fermat-spiral scan (:math:`r = c\sqrt{k}`, golden angle), centred, windows inside the object.

    Parameters
    ----------
    object_size : :obj:`int`
        Side of the square object (pixels).
    window : :obj:`int`
        Side of the probe window (pixels).
    count : :obj:`int`
        Number of positions :math:`J`.
    step_px : :obj:`float`, optional
        :math:`c`, about the mean nearest-neighbour distance; by default the spiral fills the object.

    Returns
    -------
    positions : :obj:`numpy.ndarray`
        ``(J, 2)`` float array of top-left corners, rounded to whole pixels.
    """
    count = int(count)
    half = (int(object_size) - int(window)) / 2
    c = float(step_px) if step_px is not None else half / np.sqrt(max(count - 1, 1))
    k = np.arange(count)
    golden = np.pi * (3 - np.sqrt(5))
    r = c * np.sqrt(k)
    pos = np.stack([half + r * np.sin(k * golden), half + r * np.cos(k * golden)], axis=1)
    pos = np.clip(np.rint(pos), 0, object_size - window)
    return pos.astype(float)
