r"""The fluorescence map written forward-only in JAX: the second implementation of
:class:`~mmip_fluorescence.FluorescenceMap` (term option ``implementation = "jax"``), its Jacobian and adjoint
derived by :class:`~multimodal_ip.operators.Autodiff`.

.. math:: D[e, j] = \sum K \odot \tilde S_{c_j} w_e

computed as the map's ``"fft"`` method does: the correlation of every element map with the kernel by real FFTs
over the zero-padded object, sampled at the window corners (windows may hang over the edge). Whole-pixel, fixed
positions and a fixed kernel; sub-pixel positions and refined probes or positions are the hand-written map's.
"""

__all__ = ["fluorescence_forward", "fluorescence_autodiff", "autodiff_cases"]

import numpy as np
import scipy.fft
from mmip_scanprobe import split_positions

from multimodal_ip import Variable
from multimodal_ip.errors import ConfigError


def fluorescence_forward(inputs, params):
    """XRF counts ``(Ne, J)`` of the element maps ``inputs["w"]`` in ``jax.numpy``.

    Parameters
    ----------
    inputs : :obj:`dict`
        ``w``: ``(Ne, n0, n1)`` real element maps.
    params : :obj:`dict`
        ``kernel`` ``(Kh, Kw)`` (the beam footprint), ``rows`` and ``cols`` ``(J,)``: the window corners modulo the
        padded size (negative corners hang over the top and left edges).

    Returns
    -------
    :obj:`jax.Array`
        ``(Ne, J)`` counts.
    """
    import jax.numpy as jnp

    w, kernel = inputs["w"], params["kernel"]
    size = tuple(scipy.fft.next_fast_len(n + k - 1, real=True) for n, k in zip(w.shape[1:], kernel.shape))
    spectrum = jnp.fft.rfft2(w, s=size) * jnp.conj(jnp.fft.rfft2(kernel, s=size))
    correlation = jnp.fft.irfft2(spectrum, s=size)  # [e, p, q] = sum_ab K[a, b] w_e[p + a, q + b] (cyclic, padded)
    return correlation[:, params["rows"], params["cols"]]


def fluorescence_autodiff(kernel, positions_px, object_shape, n_elements, dtype="float64"):
    """The JAX form of the modality's fixed map over ``w``.

    Parameters
    ----------
    kernel : :obj:`numpy.ndarray`
        ``(Kh, Kw)`` non-negative footprint.
    positions_px : :obj:`numpy.ndarray`
        ``(J, 2)`` whole-pixel top-left corners (windows touching the object).
    object_shape : :obj:`tuple`
        ``(n0, n1)``.
    n_elements : :obj:`int`
        Number of element maps.
    dtype : :obj:`str`, optional
        Real precision.

    Returns
    -------
    :class:`~multimodal_ip.operators.Autodiff`
        ``w (Ne, n0, n1) -> (Ne, J)``.
    """
    from multimodal_ip.operators.autodiff import Autodiff

    kernel = np.asarray(kernel)
    corners, fractions = split_positions(np.asarray(positions_px, dtype=float), tuple(object_shape), kernel.shape,
                                         allow_outside=True)
    if np.any(fractions != 0):
        msg = ("fluorescence implementation 'jax' takes whole-pixel positions; sub-pixel ones need the hand-written "
               "implementation (shifted footprints)")
        raise ConfigError(msg)
    size = [scipy.fft.next_fast_len(n + k - 1, real=True) for n, k in zip(object_shape, kernel.shape)]
    params = {"kernel": kernel, "rows": (corners[:, 0] % size[0]).astype(np.int32),
              "cols": (corners[:, 1] % size[1]).astype(np.int32)}
    variables = [Variable("w", (int(n_elements), *(int(s) for s in object_shape)), dtype)]
    return Autodiff(fluorescence_forward, variables, params, dtype=dtype, name="FluorescenceJax")


def autodiff_cases(rng):
    """``(case, hand-written map, JAX map, point)`` for the conformance kit's opt-in comparison: a full grid and a
    sparse scan over the edges, float64 and float32.

    Parameters
    ----------
    rng : :obj:`numpy.random.Generator`
        Draws the kernels and points.

    Returns
    -------
    :obj:`list` of :obj:`tuple`
        The cases.
    """
    from multimodal_ip.operators import Linear

    from .fluorescence_map import FluorescenceMap, full_grid_positions

    out = []
    for n, k, ne, stride, method, dtype in ((9, 3, 2, 1, "fft", "float64"), (10, 4, 1, 7, "gather", "float64"),
                                            (8, 5, 3, 1, "fft", "float32")):
        kernel = rng.random((k, k))
        pos = full_grid_positions((n, n), (k, k))[::stride]
        fmap = FluorescenceMap(kernel, pos, (n, n), ne, dtype=dtype, method=method)
        hand = Linear(fmap, name=f"FluorescenceMap[{method}]")
        auto = fluorescence_autodiff(kernel, pos, (n, n), ne, dtype=dtype)
        out.append((f"n{n}-K{k}-Ne{ne}-J{len(pos)}-{dtype}", hand, auto, rng.random((ne, n, n)).astype(dtype)))
    return out
