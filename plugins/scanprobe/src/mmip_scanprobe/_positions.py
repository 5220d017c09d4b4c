"""Scan positions of window-based models: checked (J, 2) arrays, their split into whole-pixel corners and sub-pixel
fractions, the global affine map of the ``affine`` unknown, and the gather of windows at whole-pixel corners.
Re-exported by :mod:`mmip_scanprobe.windows` and :mod:`mmip_scanprobe`."""

__all__ = ["AFFINE_SIZE", "REFINABLE", "affine_frame", "affine_positions", "as_positions", "extract_patches",
           "split_positions"]

import numpy as np

from multimodal_ip.backend import get_array_module, to_numpy
from multimodal_ip.errors import ShapeError

#: entries of the ``affine`` unknown: the 2 x 2 matrix (row-major) and the translation, all in pixels
AFFINE_SIZE = 6
#: calibration unknowns a window-based model may refine, in packing order (here, not in ``windows``: a plugin's
#: entry module reads it without importing the numerics, docs/architecture.md "Start-up time")
REFINABLE = ("probe", "positions", "affine")


def affine_frame(object_shape, window):
    r"""``(centre, half)`` of the frame the ``affine`` unknown acts in: the centre of the range of window corners
    of an ``object_shape`` object and its larger half-extent (at least 1). Both depend on the object and window
    only, so every chunk and MPI rank uses the same frame.

    Parameters
    ----------
    object_shape : :obj:`tuple` of :obj:`int`
        Shape of the object.
    window : :obj:`tuple` of :obj:`int`
        Shape of the window (probe, beam footprint).

    Returns
    -------
    centre : :obj:`numpy.ndarray`
        ``(2,)`` float centre of the range of window corners, ``(object_shape - window) / 2``.
    half : :obj:`float`
        The larger entry of ``|centre|``, at least 1.
    """
    centre = (np.asarray(object_shape, dtype=float) - np.asarray(window, dtype=float)) / 2
    return centre, max(float(np.abs(centre).max()), 1.0)


def affine_positions(nominal, affine, object_shape, window, base=None):
    r"""Positions moved by the ``affine`` unknown :math:`a = (m_{00}, m_{01}, m_{10}, m_{11}, t_0, t_1)`:

    .. math:: p_j = q_j + M u_j + t,\qquad u_j = (n_j - c) / h

    where :math:`n_j` are the ``nominal`` positions, :math:`q_j` the ``base`` (the refined positions variable
    when the positions are refined too; default the nominal positions), and :math:`(c, h)` the
    :func:`affine_frame`: :math:`M` is in pixels of displacement at the frame's edge (a 1 % scale of an
    ``h = 200`` px scan is :math:`m_{00} = m_{11} = 2`), :math:`t` in pixels. Zero is the identity.

    Parameters
    ----------
    nominal : :obj:`numpy.ndarray`
        ``(J, 2)`` nominal top-left positions :math:`n_j` in pixels (host or device; copied to the host).
    affine : :obj:`numpy.ndarray`
        The :data:`AFFINE_SIZE` entries :math:`a` of the ``affine`` unknown.
    object_shape : :obj:`tuple` of :obj:`int`
        Shape of the object (for :func:`affine_frame`).
    window : :obj:`tuple` of :obj:`int`
        Shape of the window (for :func:`affine_frame`).
    base : :obj:`numpy.ndarray`, optional
        ``(J, 2)`` positions :math:`q_j` the map's displacement is added to; default ``nominal``.

    Returns
    -------
    positions : :obj:`numpy.ndarray`
        ``(J, 2)`` float host positions :math:`p_j`.
    """
    nominal = np.asarray(to_numpy(nominal), dtype=float)
    base = nominal if base is None else np.asarray(to_numpy(base), dtype=float)
    centre, half = affine_frame(object_shape, window)
    a = np.asarray(to_numpy(affine), dtype=float).ravel()
    return base + ((nominal - centre) / half) @ a[:4].reshape(2, 2).T + a[4:]


def as_positions(positions_px, what="positions"):
    """``positions_px`` as a (J, 2) float array on the host; :class:`~multimodal_ip.errors.ShapeError` when it is
    not (J, 2) with J >= 1 or holds NaN/Inf.

    Parameters
    ----------
    positions_px : :obj:`numpy.ndarray`
        Window positions in pixels (host or device array, or a nested sequence).
    what : :obj:`str`, optional
        The positions' name in error messages.

    Returns
    -------
    positions : :obj:`numpy.ndarray`
        ``(J, 2)`` float64 host array.

    Raises
    ------
    :obj:`multimodal_ip.errors.ShapeError`
        Not of shape (J, 2) with J >= 1, or holds NaN/Inf.
    """
    pos = np.asarray(to_numpy(positions_px), dtype=float)
    if pos.ndim != 2 or pos.shape[1] != 2 or pos.shape[0] == 0:
        msg = f"{what} must have shape (J, 2) with J >= 1; got {pos.shape}"
        raise ShapeError(msg)
    if not np.all(np.isfinite(pos)):
        msg = f"{what} contain NaN or Inf"
        raise ShapeError(msg)
    return pos


def split_positions(positions_px, object_shape, window, allow_outside=False, what="positions", strict=True):
    r"""Whole-pixel corners and sub-pixel remainders of window positions.

    A window at ``corner + fraction`` is modelled by shifting the window function (probe, beam footprint) by
    ``fraction`` with :class:`SubpixelShift`.

    Parameters
    ----------
    positions_px : :obj:`numpy.ndarray`
        ``(J, 2)`` top-left window positions (pixels, fractional).
    object_shape : :obj:`tuple` of :obj:`int`
        Shape of the object.
    window : :obj:`tuple` of :obj:`int`
        Shape of the window.
    allow_outside : :obj:`bool`, optional
        Windows must only touch the object; otherwise they lie inside it.
    what : :obj:`str`, optional
        The positions' name in error messages.
    strict : :obj:`bool`, optional
        A rounded corner more than a pixel outside the allowed range is an error; ``False`` only clips
        (positions being refined may wander).

    Returns
    -------
    corners : :obj:`numpy.ndarray`
        ``(J, 2)`` int64 top-left pixels, clipped into the allowed range.
    fractions : :obj:`numpy.ndarray`
        ``positions - corners``, ``(J, 2)`` float, usually in [-0.5, 0.5] (larger only where clipping moved a
        corner).

    Raises
    ------
    ShapeError
        ``positions_px`` is not (J, 2), holds NaN/Inf, or (``strict``) lies outside the allowed range.
    """
    pos = as_positions(positions_px, what)
    corners = np.rint(pos)
    if allow_outside:
        lo = np.array([-(window[0] - 1), -(window[1] - 1)])
        hi = np.array(object_shape) - 1
    else:
        lo = np.zeros(2)
        hi = np.array(object_shape) - np.array(window)
    bad = np.any((corners < lo - 1) | (corners > hi + 1), axis=1)
    if strict and np.any(bad):
        j = int(np.flatnonzero(bad)[0])
        msg = (f"{what}[{j}] = {tuple(float(v) for v in pos[j])} puts the {tuple(window)} window outside the "
               f"{tuple(object_shape)} object (allowed top-left rows {lo[0]:g}..{hi[0]:g}, cols {lo[1]:g}..{hi[1]:g})")
        raise ShapeError(msg)
    corners = np.clip(corners, lo, hi).astype(np.int64)
    return corners, pos - corners


def extract_patches(z, positions, window):
    """Gather the ``(J, *window)`` patches of ``z`` at top-left ``positions`` (one vectorised gather).

    Parameters
    ----------
    z : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        2-D object.
    positions : :obj:`numpy.ndarray`
        ``(J, 2)`` integer top-left corners; every window must lie inside ``z`` (not checked here).
    window : :obj:`tuple` of :obj:`int`
        Shape of the window.

    Returns
    -------
    patches : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        ``(J, *window)`` patches, on the device of ``z`` (a gathered copy, not a view).
    """
    windows = get_array_module(z).lib.stride_tricks.sliding_window_view(z, window)  # numpy and cupy alike
    return windows[positions[:, 0], positions[:, 1]]
