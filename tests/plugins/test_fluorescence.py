import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mmip_fluorescence import FluorescenceMap, full_grid_positions

from multimodal_ip.errors import ShapeError
from multimodal_ip.testing import check_adjoint


def xrf_loop(w, kernel, positions):
    """D[e, j] = sum(K * window_j(w_e)), zeros outside the object, a loop over positions."""
    ne, n0, n1 = w.shape
    kh, kw = kernel.shape
    out = np.zeros((ne, len(positions)))
    for j, (r, c) in enumerate(positions.astype(int)):
        for a in range(kh):
            for b in range(kw):
                if 0 <= r + a < n0 and 0 <= c + b < n1:
                    out[:, j] += kernel[a, b] * w[:, r + a, c + b]
    return out


@given(n=st.integers(3, 10), k=st.integers(1, 6), ne=st.integers(1, 3), seed=st.integers(0, 2**32 - 1),
       full=st.booleans(), data=st.data())
def test_fluorescence_matches_formula_both_methods(n, k, ne, seed, full, data):
    rng = np.random.default_rng(seed)
    kernel = rng.random((k, k + 1))
    if full:
        positions = full_grid_positions((n, n), kernel.shape)
    else:  # sparse positions, windows hanging over every edge
        j = data.draw(st.integers(1, 8))
        positions = np.stack([rng.integers(-(k - 1), n, j), rng.integers(-k, n, j)], axis=1).astype(float)
    w = rng.random((ne, n, n))
    expected = xrf_loop(w, kernel, positions)
    for method in ("fft", "gather"):
        op = FluorescenceMap(kernel, positions, (n, n), ne, method=method)
        np.testing.assert_allclose((op @ w.ravel()).reshape(ne, -1), expected, atol=1e-10)
        check_adjoint(op, rng=rng)
        check_adjoint(FluorescenceMap(kernel, positions, (n, n), ne, dtype="float32", method=method), rng=rng)


def test_auto_method_picks_fft_for_dense_grids():
    kernel = np.ones((16, 16))
    dense = FluorescenceMap(kernel, full_grid_positions((64, 64), kernel.shape), (64, 64), 1)
    sparse = FluorescenceMap(kernel, [[0, 0], [10, 10]], (64, 64), 1)
    assert dense.method == "fft" and sparse.method == "gather"


def test_window_must_touch_object():
    with pytest.raises(ShapeError, match=r"positions\[0\] = \(-3, 0\): the 3x3 window does not touch"):
        FluorescenceMap(np.ones((3, 3)), [[-3, 0]], (5, 5), 1)
