"""The posterior of each scan position at a known object and probe (grid refined around its modes), and the
estimator's ``estimate="map"`` / ``"mean"`` options built on it."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mmip_paper.cases import band_limited_spectra, poisson_noise
from mmip_ptychography import raster_positions
from mmip_ptychography.position_estimator import PositionEstimator
from mmip_ptychography.position_posterior import PositionPosterior
from scipy.ndimage import gaussian_filter

from multimodal_ip.errors import ConfigError

N, NP, STEP = 40, 16, 8


def _probe(rng):
    r2 = np.add.outer((np.arange(NP) - NP / 2) ** 2, (np.arange(NP) - NP / 2) ** 2)
    return np.exp(-r2 / 18) * np.exp(1j * gaussian_filter(rng.standard_normal((NP, NP)), 2) * 4)


def _scene(seed=0, jitter=2.0):
    """A textured 40 x 40 object, a 16 x 16 probe, a 4 x 4 raster (step 8 px) jittered by uniform +-``jitter``
    px, clipped into the object (as the simulator does)."""
    rng = np.random.default_rng(seed)
    x, w = (gaussian_filter(rng.standard_normal((N, N)), 1.5) for _ in range(2))
    z = 1 + 2 * x + 2j * w
    nominal = raster_positions(N, NP, step_px=STEP).astype(float)
    truth = np.clip(nominal + rng.uniform(-jitter, jitter, nominal.shape), 0, N - NP)
    return z, _probe(rng), nominal, truth


def _brute_force(est, nominal, radius, bounds, spacing):
    """Mean and covariance of one position's posterior on a uniform grid, the prior's atoms on the bounds."""
    axes, weights = [], []
    for c in range(2):
        lo, hi = max(nominal[c] - radius, bounds[0]), min(nominal[c] + radius, bounds[1])
        k = np.arange(int(round((hi - lo) / spacing)) + 1)
        x = lo + k * (hi - lo) / k[-1]
        w = np.full(x.size, (x[1] - x[0]) / (2 * radius))
        w[[0, -1]] /= 2
        w[0] += (lo - (nominal[c] - radius)) / (2 * radius)
        w[-1] += (nominal[c] + radius - hi) / (2 * radius)
        axes.append(x)
        weights.append(w)
    g0, g1 = np.meshgrid(*axes, indexing="ij")
    pts = np.stack([g0.ravel(), g1.ravel()], axis=1)
    nll = est.misfit(pts, np.zeros(len(pts), dtype=int))
    w = np.outer(*weights).ravel() * np.exp(nll.min() - nll)
    mean = w @ pts / w.sum()
    d = pts - mean
    return mean, (w[:, None, None] * d[:, :, None] * d[:, None, :]).sum(axis=0) / w.sum()


def test_the_posterior_peaks_at_the_truth_without_noise():
    z, probe, nominal, truth = _scene()
    data = np.abs(band_limited_spectra(z, probe, truth)) ** 2
    est = PositionEstimator(z, probe, data, photons_per_unit=1e3)  # noise-free data, a likelihood as of 1e3 photons
    post = PositionPosterior(est, 2.0, bounds=(0, N - NP))(nominal)
    assert not post.unconverged.any()
    assert np.all(np.abs(post.ml - truth) <= post.spacing / 2 + 1e-9)  # the grid's best point: the nearest
    spread = np.sqrt(np.trace(post.covariance, axis1=1, axis2=2))
    offset = np.linalg.norm(post.mean - truth, axis=1) / spread  # measured: median 0.02, largest 0.98 (an edge)
    assert np.median(offset) < 0.1 and offset.max() < 1.5
    fit = est.fit(nominal, estimate="map", radius=2.0, bounds=(0, N - NP))
    assert np.abs(fit.positions - truth).max() < 1e-3  # polished by Levenberg-Marquardt (measured 3e-8)
    assert fit.posterior is not None and fit.iterations > 0


@pytest.mark.parametrize("index", [0, 5])  # a corner position (atoms of the clipped prior on two edges), an inner one
def test_the_posterior_mean_is_the_fine_grid_mean(index):
    z, probe, nominal, truth = _scene(seed=1, jitter=1.0)
    data, photons = poisson_noise(np.abs(band_limited_spectra(z, probe, truth)) ** 2, 0.2, np.random.default_rng(2))
    est = PositionEstimator(z, probe, data[index : index + 1], photons_per_unit=photons)
    post = PositionPosterior(est, 1.0, bounds=(0, N - NP))(nominal[index : index + 1])
    mean, cov = _brute_force(est, nominal[index], 1.0, (0, N - NP), 1 / 32)
    # measured (20 % noise, rms spread 0.17-0.5 px, radius 2, against 1/64 px): means within 0.0006 px
    np.testing.assert_allclose(post.mean[0], mean, atol=0.005)
    np.testing.assert_allclose(np.sqrt(np.trace(post.covariance[0])), np.sqrt(np.trace(cov)), rtol=0.02)
    assert post.evaluations[0] < 0.5 * 65**2  # fewer likelihoods than the uniform grid


def test_the_posterior_mean_beats_the_maximum_likelihood_where_the_likelihood_is_bimodal():
    """An object periodic in its columns (period 3 px): a column within the box 3 px from the truth fits as well
    as the truth, so the likelihood has two equal maxima for about half the positions."""
    rng = np.random.default_rng(3)
    n = 48
    rows = 1 + gaussian_filter(rng.standard_normal(n), 1.5)[:, None]
    z = rows * (1 + 0.6 * np.exp(2j * np.pi * np.arange(n) / 3))[None, :]
    probe = _probe(rng)
    nominal = np.full((12, 2), 16.0)  # windows and their 8 px margins inside the periodic object
    ml_err, mean_err = [], []
    for draw in range(4):
        truth = nominal + np.random.default_rng([draw, 1]).uniform(-2, 2, nominal.shape)
        data, photons = poisson_noise(np.abs(band_limited_spectra(z, probe, truth)) ** 2, 0.002,
                                      np.random.default_rng(draw))
        est = PositionEstimator(z, probe, data, photons_per_unit=photons)
        fit = est.fit(nominal, estimate="map", radius=2.0, iterations=20)
        ml_err.append(np.sum((fit.positions - truth) ** 2, axis=1))
        mean_err.append(np.sum((fit.posterior.mean - truth) ** 2, axis=1))
    ml, mean = np.mean(ml_err), np.mean(mean_err)
    # measured: 1.88 and 1.05 px^2 (a tie costs the maximum likelihood 9 px^2 half the time, the mean 2.25)
    assert ml > 1.0  # the maximum likelihood picks the wrong one of two equal modes (3 px off) for some positions
    assert mean < 0.75 * ml  # the mean sits between them: the squared error of a tie halves on average


def test_the_posterior_options_are_checked():
    z, probe, nominal, truth = _scene()
    data = np.abs(band_limited_spectra(z, probe, truth)) ** 2
    with pytest.raises(ConfigError, match="estimate must be one of"):
        PositionEstimator(z, probe, data, photons_per_unit=1e4).fit(nominal, estimate="median")
    with pytest.raises(ConfigError, match="needs radius > 0"):
        PositionEstimator(z, probe, data).fit(nominal, estimate="mean", radius=2.0)
    with pytest.raises(ConfigError, match="threshold must be finite"):
        PositionPosterior(PositionEstimator(z, probe, data, photons_per_unit=1e4), threshold=0)


def test_position_posterior_example_small(tmp_path):
    script = Path(__file__).resolve().parents[2] / "examples/beyond_paper/position_posterior.py"
    proc = subprocess.run([sys.executable, str(script), "--case", "cameraman", "--n", "64", "--probe-size", "16",
                           "--step", "8", "--seeds", "1", "--iterations", "10", "--figure", str(tmp_path / "f.png")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in proc.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| estimate")}
    assert len(rows) == 4 and (tmp_path / "f.png").stat().st_size > 0
    assert rows["posterior mean (mean)"] <= 1.05 * rows["search + Levenberg-Marquardt (local)"]
