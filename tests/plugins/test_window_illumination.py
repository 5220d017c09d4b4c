"""``mmip_ptychography.curvature.window_illumination`` (one ``scatter_patches_`` per block) in place of the
per-position Python loops of ``PtychographyCurvature.illumination`` and ``fisher._object_diagonal``: equal to the
loops to 1e-12 on a jittered scan whose windows cross every edge of the object or lie wholly outside it, with numba
and with the numpy fallback."""

import numpy as np
import pytest
from mmip_ptychography import PtychographyCurvature, PtychographyModel
from mmip_ptychography.curvature import window_illumination
from mmip_ptychography.fisher import _complex_model, _object_diagonal

from multimodal_ip.losses import LeastSquares

N0, N1, NP = 37, 41, 9


def _scene(seed=0):
    rng = np.random.default_rng(seed)
    probe = rng.standard_normal((NP, NP)) + 1j * rng.standard_normal((NP, NP))
    obj = 1 + rng.standard_normal((N0, N1)) + 1j * rng.standard_normal((N0, N1))
    grid = np.stack(np.meshgrid(np.arange(-6, N0, 5), np.arange(-6, N1, 5), indexing="ij"), -1).reshape(-1, 2)
    edges = [[-NP, 3], [-NP - 4, -NP - 4], [N0, 5], [N0 + 3, N1 + 3], [2, N1 - 1], [-3, N1 - 2], [N0 - NP, N1 - NP]]
    positions = np.concatenate([grid + rng.uniform(-2.5, 2.5, grid.shape), edges])  # jittered, off every edge
    return obj, probe, positions


def _loop_illumination(shape, intensity, positions):
    """The loop ``PtychographyCurvature.illumination`` ran: windows at the rounded positions, clipped."""
    (n0, n1), (w0, w1) = shape, intensity.shape
    out = np.zeros((n0 + 2 * w0, n1 + 2 * w1))
    corners = np.clip(np.rint(positions).astype(np.int64) + (w0, w1), 0, (n0 + w0, n1 + w1))
    for r, c in corners:
        out[r : r + w0, c : c + w1] += intensity
    return out[w0 : w0 + n0, w1 : w1 + n1]


def _loop_object_diagonal(op, obj, probe, positions, weight):
    """The loop ``fisher._object_diagonal`` ran: windows pushed inside the object."""
    corners = np.clip(np.rint(positions).astype(int), 0, np.array(obj.shape) - np.array(probe.shape))
    w0, w1 = probe.shape
    light, seen = np.zeros(obj.shape), np.zeros(probe.shape)
    for r, c in corners:
        light[r : r + w0, c : c + w1] += np.abs(probe) ** 2
        seen += np.abs(obj[r : r + w0, c : c + w1]) ** 2
    parts = [light.ravel(), light.ravel()]
    if "probe" in op.refine:
        parts.append(np.repeat(seen.ravel(), 2))
    d = 0.5 * weight * np.concatenate(parts)
    return np.where(d > 0, d, max(float(d.max()), 1.0))


@pytest.fixture(params=["1", "0"], ids=["numba", "numpy"])
def numba_switch(request, monkeypatch):
    monkeypatch.setenv("MMIP_NUMBA", request.param)


def test_window_illumination_equals_the_loop_at_the_edges(numba_switch):
    obj, probe, positions = _scene()
    intensity = np.abs(probe) ** 2
    ref = _loop_illumination(obj.shape, intensity, positions)
    corners = np.rint(positions).astype(np.int64)
    for block in (None, 4, 1):
        got = window_illumination(obj.shape, intensity, corners, block=block)
        assert got.shape == obj.shape
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * ref.max())
    assert 0 < ref[0, 0] and 0 < ref[-1, -1]  # the scan reaches the corners: the edges are exercised
    assert not np.any(window_illumination(obj.shape, intensity, np.zeros((0, 2), dtype=np.int64)))


def test_curvature_illumination_equals_the_loop(numba_switch):
    obj, probe, positions = _scene(1)
    inside = np.clip(positions, 0, np.subtract(obj.shape, NP))
    model = PtychographyModel(probe, inside, obj.shape, 1, coefficients=[1.0])
    curvature = PtychographyCurvature(model, LeastSquares(), None)
    got = np.asarray(curvature.illumination(positions, probe))
    ref = _loop_illumination(obj.shape, (probe.real**2 + probe.imag**2).astype(model.dtype), positions)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * ref.max())


@pytest.mark.parametrize("refine", [("probe", "positions"), ("positions",)])
def test_object_diagonal_equals_the_loop(numba_switch, refine):
    obj, probe, positions = _scene(2)
    op, _ = _complex_model(obj, probe, positions, refine)
    got = _object_diagonal(op, obj, probe, positions, 3.0)
    ref = _loop_object_diagonal(op, obj, probe, positions, 3.0)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0)
