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
    """Array shapes of 1 to 4 dimensions (``hypothesis.extra.numpy.array_shapes``)."""
    return array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def dtypes(complex_only=False, real_only=False):
    """One of float32/64, complex64/128."""
    choices = COMPLEX if complex_only else REAL if real_only else REAL + COMPLEX
    return st.sampled_from(choices).map(np.dtype)


def seeds():
    return st.integers(0, 2**32 - 1)


def random_array(rng, shape, dtype, xp=np):
    """A random array (complex parts independent), from an explicit ``numpy.random.Generator``."""
    return random_like_dtype(rng, shape, dtype, xp)


@st.composite
def variable_spaces(draw, max_variables=3):
    """A :class:`~multimodal_ip.VariableSpace` of 1 to ``max_variables`` variables of mixed shapes and dtypes."""
    n = draw(st.integers(1, max_variables))
    variables = [
        Variable(f"v{i}", draw(shapes(max_dims=3, max_side=5)), draw(st.sampled_from(("float64", "complex128"))))
        for i in range(n)
    ]
    return VariableSpace(variables)
