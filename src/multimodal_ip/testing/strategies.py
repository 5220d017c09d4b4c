"""Hypothesis strategies for conformance tests: shapes, dtypes, variable spaces, arrays."""

__all__ = ["shapes", "dtypes", "random_array", "variable_spaces", "seeds"]

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

from ..variables import Variable, VariableSpace
from .checks import random_like_dtype

REAL = ("float32", "float64")
COMPLEX = ("complex64", "complex128")


def shapes(min_dims=1, max_dims=4, min_side=1, max_side=6):
    """Array shapes of 1 to 4 dimensions (``hypothesis.extra.numpy.array_shapes``).

    Parameters
    ----------
    min_dims, max_dims : :obj:`int`, optional
        Fewest and most dimensions.
    min_side, max_side : :obj:`int`, optional
        Smallest and largest length of an axis.

    Returns
    -------
    strategy : :obj:`hypothesis.strategies.SearchStrategy`
        Strategy drawing :obj:`tuple` of :obj:`int`.
    """
    return array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def dtypes(complex_only=False, real_only=False):
    """One of float32/64, complex64/128.

    Parameters
    ----------
    complex_only : :obj:`bool`, optional
        Only complex64/128.
    real_only : :obj:`bool`, optional
        Only float32/64.

    Returns
    -------
    strategy : :obj:`hypothesis.strategies.SearchStrategy`
        Strategy drawing :obj:`numpy.dtype`.
    """
    choices = COMPLEX if complex_only else REAL if real_only else REAL + COMPLEX
    return st.sampled_from(choices).map(np.dtype)


def seeds():
    """Random seeds, ``0`` to ``2**32 - 1``.

    Returns
    -------
    strategy : :obj:`hypothesis.strategies.SearchStrategy`
        Strategy drawing :obj:`int`.
    """
    return st.integers(0, 2**32 - 1)


def random_array(rng, shape, dtype, xp=np):
    """A random array (complex parts independent), from an explicit ``numpy.random.Generator``.

    Parameters
    ----------
    rng : :obj:`numpy.random.Generator`
        Source of the random numbers.
    shape : :obj:`tuple` of :obj:`int`
        Shape of the array.
    dtype : :obj:`str` or :obj:`numpy.dtype`
        Real or complex dtype.
    xp : module, optional
        Array module of the result.

    Returns
    -------
    a : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Standard normal values.
    """
    return random_like_dtype(rng, shape, dtype, xp)


@st.composite
def variable_spaces(draw, max_variables=3):
    """A :class:`~multimodal_ip.VariableSpace` of 1 to ``max_variables`` variables of mixed shapes and dtypes.

    Parameters
    ----------
    max_variables : :obj:`int`, optional
        Most variables in a space.

    Returns
    -------
    strategy : :obj:`hypothesis.strategies.SearchStrategy`
        Strategy drawing :class:`~multimodal_ip.VariableSpace` (float64 and complex128 variables, up to 3-D).
    """
    n = draw(st.integers(1, max_variables))
    variables = [
        Variable(f"v{i}", draw(shapes(max_dims=3, max_side=5)), draw(st.sampled_from(("float64", "complex128"))))
        for i in range(n)
    ]
    return VariableSpace(variables)
