import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mmip_ptychography import (
    FarField,
    fermat_spiral_positions,
    fresnel_zone_plate_probe,
    ptychography_operator,
    raster_positions,
)

from multimodal_ip.errors import ShapeError
from multimodal_ip.operators import Modulus, compose
from multimodal_ip.testing import check_adjoint, check_jacobian


def far_field_loop(z, probe, positions):
    """The far-field model written with a loop over positions: Psi_j = fftshift(fft2(P * S_j z, ortho))."""
    npx = probe.shape[0]
    out = []
    for r, c in positions.astype(int):
        out.append(np.fft.fftshift(np.fft.fft2(probe * z[r : r + npx, c : c + npx], norm="ortho")))
    return np.array(out)


@given(n=st.integers(5, 14), npx=st.integers(2, 6), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_far_field_matches_formula_and_adjoint(n, npx, seed, data):
    rng = np.random.default_rng(seed)
    npx = min(npx, n)
    j = data.draw(st.integers(1, 6))
    positions = rng.integers(0, n - npx + 1, size=(j, 2)).astype(float)  # any overlap, repeats allowed
    probe = rng.standard_normal((npx, npx)) + 1j * rng.standard_normal((npx, npx))
    z = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
    op = FarField(probe, positions, (n, n))
    np.testing.assert_allclose((op @ z.ravel()).reshape(j, npx, npx), far_field_loop(z, probe, positions), atol=1e-12)
    check_adjoint(op, rng=rng)
    check_adjoint(FarField(probe, positions, (n, n), dtype="complex64"), rng=rng)


@given(n=st.integers(6, 12), npx=st.integers(2, 5), ne=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_joint_ptychography_model_conformance(n, npx, ne, seed):
    rng = np.random.default_rng(seed)
    probe = rng.standard_normal((npx, npx)) + 1j * rng.standard_normal((npx, npx))
    positions = raster_positions(n, npx, step_px=max(1, npx // 2))
    op = ptychography_operator(probe, positions, (n, n), ne)
    v = 1 + rng.random(n * n * (1 + ne))
    check_adjoint(op.jacobian(v), dtype="float64", rng=rng)
    amp = compose(Modulus(op.dimsd), op)  # the amplitude model |Psi|
    check_adjoint(amp.jacobian(v), dtype="float64", rng=rng)
    assert check_jacobian(amp, v, rng=rng) > 1.8


def test_zone_plate_probe_geometry():
    p = fresnel_zone_plate_probe(64)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(p))))
    k = np.hypot(*np.meshgrid(np.arange(-32, 32), np.arange(-32, 32), indexing="ij"))
    # the pupil is the annulus between the stop (radius ~2.1 px) and the lens edge (radius 6.4 px)
    assert spectrum[k > 6.5].max() < 1e-10 * spectrum.max()
    assert spectrum[k < 2.0].max() < 1e-10 * spectrum.max()
    assert np.all(spectrum[(k > 2.2) & (k < 6.3)] > 0)
    with pytest.raises(ValueError, match="holds no frequency"):
        fresnel_zone_plate_probe(4)


def test_scans():
    pos = raster_positions(334, 64, step_px=30)
    assert pos.shape == (100, 2) and pos.max() == 270
    assert np.array_equal(raster_positions(334, 64, overlap=0.53), pos)
    spiral = fermat_spiral_positions(200, 32, 150)
    assert spiral.shape == (150, 2) and spiral.min() >= 0 and spiral.max() <= 168
    assert len(np.unique(spiral, axis=0)) > 140


def test_positions_are_validated():
    with pytest.raises(ShapeError, match=r"positions\[1\] = \(8, 0\) puts the \(4, 4\) window outside"):
        FarField(np.ones((4, 4)), [[0, 0], [8, 0]], (10, 10))
    with pytest.raises(ShapeError, match="whole pixels"):
        FarField(np.ones((4, 4)), [[0.5, 0]], (10, 10))
