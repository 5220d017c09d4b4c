"""The ptychography term option ``windows = "band-limited"``: Fourier-shifted object windows at fixed sub-pixel
positions (the paper simulator's), beside the default cubic ones."""

from dataclasses import replace

import numpy as np
import pytest
from mmip_paper import simulate
from mmip_ptychography import PtychographyModel, raster_positions
from mmip_ptychography.band_limited_sampler import BandLimitedSampler
from mmip_scanprobe import BandLimitedWindows, CubicPatches

from multimodal_ip.errors import ConfigError
from multimodal_ip.io import build_problem
from multimodal_ip.operators import Modulus, compose
from multimodal_ip.testing import check_adjoint, check_jacobian


def _case(rng, windows="band-limited", ne=2):
    n, npx = 14, 6
    probe = rng.standard_normal((npx, npx)) + 1j * rng.standard_normal((npx, npx))
    pos = np.clip(raster_positions(n, npx, step_px=4) + rng.uniform(-0.4, 0.4, (9, 2)), -0.7, n - npx + 0.7)
    return PtychographyModel(probe, pos, (n, n), ne, coefficients=[1.0, 0.4][:ne], windows=windows), pos


def test_windows_equal_the_simulators_band_limited_windows():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((14, 14)) + 1j * rng.standard_normal((14, 14))
    pos = raster_positions(14, 6, step_px=4) + rng.uniform(-0.9, 0.9, (9, 2))
    sampler = BandLimitedSampler(pos, (6, 6), z.shape)
    got = sampler.sample(sampler.pad(z), slice(None))
    np.testing.assert_allclose(got, BandLimitedWindows(z, (6, 6))(pos), atol=1e-12)
    cubic = CubicPatches(pos, (6, 6), z.shape)
    assert np.max(np.abs(got - cubic.sample(cubic.pad(z), slice(None)))) > 1e-3  # a different model


def test_band_limited_model_passes_adjoint_and_taylor_checks():
    rng = np.random.default_rng(1)
    op, _ = _case(rng)
    assert op.sampled and op.sampler_class is BandLimitedSampler
    x = 1 + rng.random(14 * 14 * 3)
    assert check_adjoint(op, x=x, rng=rng) < 1e-10
    amplitude = compose(Modulus(op.dimsd, dtype="complex128"), op)
    assert check_adjoint(amplitude, x=x, rng=rng) < 1e-10
    check_jacobian(amplitude, x, rng=rng)
    with_probe = PtychographyModel(op.probe, op.positions, (14, 14), 2, refine=("probe",), windows="band-limited")
    v = np.concatenate([x, np.asarray(op.probe).view(float).ravel()])
    assert check_adjoint(with_probe, x=v, rng=rng) < 1e-10
    assert check_jacobian(with_probe, v, rng=rng) >= 1.8  # bilinear in (object, probe)


def test_default_is_cubic_and_unchanged():
    rng = np.random.default_rng(2)
    op, pos = _case(rng, windows="cubic")
    default = PtychographyModel(op.probe, pos, (14, 14), 2, coefficients=[1.0, 0.4])
    assert default.windows == "cubic" and default.sampler_class is CubicPatches
    x = 1 + rng.random(14 * 14 * 3)
    np.testing.assert_array_equal(default.forward(x), op.forward(x))
    band, _ = _case(np.random.default_rng(2))
    assert np.max(np.abs(band.forward(x) - op.forward(x))) > 1e-3 * np.max(np.abs(op.forward(x)))


def test_term_option_selects_and_refuses_in_one_line():
    ds = simulate("phantom", seed=0, n=40, probe_size=16, step=8)
    td = ds.terms["ptychography"]
    jittered = replace(ds, terms={**ds.terms, "ptychography": replace(td, arrays={
        **td.arrays, "positions": td.arrays["positions"] + 0.3})})
    assert build_problem(jittered).terms[0].operator.sampler_class is BandLimitedSampler  # "auto": fixed positions
    chosen = build_problem(jittered, term_options={"ptychography": {"windows": "cubic"}})
    assert chosen.terms[0].operator.sampler_class is CubicPatches
    refined = {"windows": "band-limited", "refine": ("affine",)}  # positions: tests/plugins/test_band_limited_alt*
    for opts, match in (({"windows": "sinc"}, r"one of \['auto', 'cubic', 'band-limited'\]; got 'sinc'"),
                        (refined, "windows = 'band-limited' takes fixed")):
        with pytest.raises(ConfigError, match=match) as err:
            build_problem(jittered, term_options={"ptychography": opts})
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="fixed positions"):
        PtychographyModel(td.arrays["probe"], td.arrays["positions"] + 0.3, (40, 40), 1, refine=("affine",),
                          windows="band-limited")
