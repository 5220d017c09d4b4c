import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mmip_scanprobe import CalibrationLayout, CubicPatches, SubpixelShift, cubic_weights, split_positions

from multimodal_ip.errors import ConfigError, ShapeError


def test_split_positions_rounds_and_clips():
    corners, frac = split_positions([[1.3, 2.6], [0.0, 7.4]], (10, 10), (3, 3))
    assert corners.tolist() == [[1, 3], [0, 7]]  # 7.4 rounds to 7 = the last inside corner
    np.testing.assert_allclose(frac, [[0.3, -0.4], [0.0, 0.4]], atol=1e-12)
    corners, frac = split_positions([[-0.8, 8.4]], (10, 10), (3, 3))  # clipped: the remainder grows
    assert corners.tolist() == [[0, 7]] and np.allclose(frac, [[-0.8, 1.4]])


@pytest.mark.parametrize("bad", [[[np.nan, 0.0]], [[0, 0, 0]], [[5.0, 12.0]]])
def test_split_positions_rejects(bad):
    with pytest.raises(ShapeError):
        split_positions(bad, (10, 10), (3, 3))
    if np.shape(bad)[-1] == 2 and np.all(np.isfinite(bad)):  # far outside: only clipped when not strict
        split_positions(bad, (10, 10), (3, 3), strict=False)


@given(dr=st.integers(-3, 3), dc=st.integers(-3, 3))
def test_whole_pixel_shift_is_a_roll(dr, dc):
    a = np.random.default_rng(0).standard_normal((8, 6)) + 0j
    shifted = SubpixelShift([[dr, dc]], (8, 6))(a)[0]
    np.testing.assert_allclose(shifted, np.roll(a, (dr, dc), axis=(0, 1)), atol=1e-12)


def test_shift_adjoint_and_derivative():
    rng = np.random.default_rng(1)
    frac = rng.uniform(-0.5, 0.5, (4, 2))
    shift = SubpixelShift(frac, (6, 6))
    a = rng.standard_normal((4, 6, 6)) + 1j * rng.standard_normal((4, 6, 6))
    b = rng.standard_normal((4, 6, 6)) + 1j * rng.standard_normal((4, 6, 6))
    assert np.isclose(np.vdot(b, shift(a)), np.vdot(shift.adjoint(b), a))
    np.testing.assert_allclose(shift.shared_adjoint(b), shift.adjoint(b).sum(axis=0), atol=1e-12)
    p = a[0]
    d0, d1 = shift.derivatives(p)
    h = 1e-6
    num = (SubpixelShift(frac + [h, 0], (6, 6))(p) - SubpixelShift(frac - [h, 0], (6, 6))(p)) / (2 * h)
    np.testing.assert_allclose(d0, num, atol=1e-6)
    num = (SubpixelShift(frac + [0, h], (6, 6))(p) - SubpixelShift(frac - [0, h], (6, 6))(p)) / (2 * h)
    np.testing.assert_allclose(d1, num, atol=1e-6)


def test_calibration_layout_round_trip():
    layout = CalibrationLayout(5, (2, 3), 4, refine=("positions", "probe"))
    assert layout.refine == ("probe", "positions") and layout.size == 5 + 12 + 8
    v = np.arange(layout.size, dtype=float)
    main, probe, pos = layout.split(v)
    assert probe.shape == (2, 3) and probe[0, 0] == 5 + 6j and pos.shape == (4, 2)
    np.testing.assert_array_equal(layout.join(main, probe, pos), v)
    with pytest.raises(ConfigError, match="can refine only"):
        CalibrationLayout(5, (2, 3), 4, refine=("scale",))


def test_cubic_weights_interpolate_and_are_continuously_differentiable():
    f = np.linspace(0, 1, 11, endpoint=False)
    w, dw = cubic_weights(f), cubic_weights(f, derivative=True)
    np.testing.assert_allclose(w.sum(axis=-1), 1, atol=1e-15)  # constants are reproduced
    np.testing.assert_allclose(w @ np.arange(-1.0, 3.0), f, atol=1e-14)  # and so are linear ramps
    np.testing.assert_allclose(w[0], [0, 1, 0, 0], atol=0)
    np.testing.assert_allclose(dw.sum(axis=-1), 0, atol=1e-14)
    # at f -> 1 the taps (c-1 .. c+2) must continue as the next cell's taps (c .. c+3) at f = 0
    end, start = cubic_weights(np.array(1.0)), cubic_weights(np.array(0.0))
    np.testing.assert_allclose(end[1:], start[:3], atol=1e-15) and np.testing.assert_allclose(end[0], 0)
    dend, dstart = cubic_weights(np.array(1.0), True), cubic_weights(np.array(0.0), True)
    np.testing.assert_allclose(dend[1:], dstart[:3], atol=1e-15)


@given(n0=st.integers(6, 14), n1=st.integers(6, 14), w0=st.integers(1, 5), w1=st.integers(1, 5),
       seed=st.integers(0, 2**16))
def test_cubic_patches_adjoint_and_derivatives(n0, n1, w0, w1, seed):
    """Sampling and its scatter are adjoint (edge extension included), and the position derivatives match
    central differences, for windows anywhere, also hanging over the edge."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform([-1.5, -1.5], [n0 - w0 + 1.5, n1 - w1 + 1.5], (5, 2))
    cp = CubicPatches(pos, (w0, w1), (n0, n1))
    z = rng.standard_normal((n0, n1)) + 1j * rng.standard_normal((n0, n1))
    g = rng.standard_normal((5, w0, w1)) + 1j * rng.standard_normal((5, w0, w1))
    s = cp.sample(cp.pad(z), slice(None))
    acc = np.zeros((n0 + 2 * cp.PAD, n1 + 2 * cp.PAD), complex)
    cp.scatter(acc, g, slice(None))
    lhs, rhs = np.vdot(s, g).real, np.vdot(z, CubicPatches.unpad_adjoint(acc)).real
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))
    h = 1e-6
    for k, d in enumerate(cp.derivatives(cp.pad(z), slice(None))):
        up, down = pos.copy(), pos.copy()
        up[:, k] += h
        down[:, k] -= h
        fd = (CubicPatches(up, (w0, w1), (n0, n1)).sample(cp.pad(z), slice(None))
              - CubicPatches(down, (w0, w1), (n0, n1)).sample(cp.pad(z), slice(None))) / (2 * h)
        np.testing.assert_allclose(d, fd, atol=1e-6 * max(1.0, float(np.abs(d).max())))
    gp = cp.position_gradient(cp.pad(z), slice(None), g)
    np.testing.assert_allclose(gp[:, 0], [np.vdot(d, gi).real for d, gi in zip(cp.derivatives(cp.pad(z),
                                                                                            slice(None))[0], g)])


def test_cubic_patches_whole_pixels_are_plain_windows():
    z = np.arange(48.0).reshape(6, 8) * (1 + 1j)
    cp = CubicPatches([[0, 0], [2, 5], [3, 1]], (3, 3), (6, 8))
    s = cp.sample(cp.pad(z), slice(None))
    for k, (r, c) in enumerate([(0, 0), (2, 5), (3, 1)]):
        np.testing.assert_array_equal(s[k], z[r : r + 3, c : c + 3])


def test_cubic_patches_compiled_and_numpy_paths_agree(monkeypatch):
    """The numba loops (sample, scatter, fused position gradient) equal the numpy passes."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(3)
    pos = rng.uniform(-1, 9, (7, 2))
    cp = CubicPatches(pos, (5, 6), (14, 15))
    zp = cp.pad(rng.standard_normal((14, 15)) + 1j * rng.standard_normal((14, 15)))
    g = rng.standard_normal((7, 5, 6)) + 1j * rng.standard_normal((7, 5, 6))

    def run():
        acc = np.zeros_like(zp)
        cp.scatter(acc, g.copy(), slice(None))
        return cp.sample(zp, slice(None)), acc, cp.position_gradient(zp, slice(None), g)

    compiled = run()
    monkeypatch.setenv("MMIP_NUMBA", "0")
    for a, b in zip(compiled, run()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
