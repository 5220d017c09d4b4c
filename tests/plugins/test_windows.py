import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mmip_scanprobe import CalibrationLayout, SubpixelShift, split_positions

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
