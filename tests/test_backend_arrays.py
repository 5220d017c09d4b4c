"""The array-module helpers the GPU path takes, run with numpy (the same code; tests/test_gpu.py runs them on cupy)."""

import numpy as np
import pytest

from multimodal_ip.backend import add_at, scatter_add
from multimodal_ip.losses import Amplitude


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_add_at_accumulates_repeats_like_ufunc_at(dtype):
    """``add_at`` adds complex values as (real, imaginary) pairs (cupy.add.at takes no complex arrays): the result
    equals ``np.add.at`` with repeated indices, in the array's own precision."""
    rng = np.random.default_rng(0)
    index = rng.integers(0, 7, size=40)
    values = rng.standard_normal(40).astype(dtype)
    if np.iscomplexobj(values):
        values = values + 1j * rng.standard_normal(40).astype(values.real.dtype)
    got = np.zeros(7, dtype=dtype)
    add_at(got, index, values)
    want = np.zeros(7, dtype=dtype)
    np.add.at(want, index, values)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(scatter_add(index, values, 7), want, rtol=1e-5)


def test_add_at_writes_through_a_flattened_view():
    """The scan-probe scatter adds into ``acc.reshape(-1)``: the 2-D accumulator itself must change."""
    acc = np.zeros((3, 4), dtype=np.complex64)
    add_at(acc.reshape(-1), np.array([5, 5, 0]), np.array([1 + 2j, 1 - 1j, 3j], dtype=np.complex64))
    assert acc[1, 1] == 2 + 1j and acc[0, 0] == 3j and np.count_nonzero(acc) == 2


class _NoWriteableFlags:
    """cupy's ``ndarray.flags`` has ``c_contiguous`` and ``owndata`` but no ``writeable`` (the device run's
    second failure): the loss must not ask for it."""

    def __init__(self, a):
        self.c_contiguous, self.f_contiguous, self.owndata = a.flags.c_contiguous, a.flags.f_contiguous, True


class _CupyLikeFlags(np.ndarray):
    @property
    def flags(self):  # type: ignore[override]
        return _NoWriteableFlags(np.asarray(self))


def test_amplitude_fused_path_without_a_writeable_flag():
    rng = np.random.default_rng(1)
    y = (rng.standard_normal(12) + 1j * rng.standard_normal(12)).astype(np.complex128)
    d = rng.random(12) * 4
    loss = Amplitude()
    want_value, want_grad = loss.value_and_gradient(y.copy(), d)
    value, grad = loss.value_and_gradient_(y.copy().view(_CupyLikeFlags), d)
    assert value == pytest.approx(want_value, rel=1e-12)
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-12)
