"""Cramer-Rao bounds of scan positions (mmip_ptychography.fisher) and the ``position-bound`` report."""

import numpy as np
import pytest
from mmip_ptychography import raster_positions
from mmip_ptychography.fisher import (
    fisher_weight,
    nuisance_bounds,
    nuisance_fisher,
    position_bounds,
    position_derivatives,
    position_fisher,
)

from multimodal_ip.cli import main
from multimodal_ip.errors import ConfigError


@pytest.fixture(autouse=True)
def _numpy_kernels(monkeypatch):
    """The numpy passes: on these tiny windows numba's threads cost more than they save (on a loaded machine,
    100x)."""
    monkeypatch.setenv("MMIP_NUMBA", "0")


def _case(n=20, npx=8, step=4, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:npx, :npx] - (npx - 1) / 2
    probe = np.exp(-(yy**2 + xx**2) / (npx**2 / 8)) * np.exp(0.3j * xx)
    obj = (0.8 + 0.2 * rng.random((n, n))) * np.exp(1j * rng.uniform(0, 1, (n, n)))
    pos = raster_positions(n, npx, step_px=step)
    pos = np.clip(pos + rng.uniform(-0.4, 0.4, pos.shape), 0.5, n - npx - 0.5)
    return obj, probe, pos


@pytest.mark.parametrize("model", ["cubic", "fourier"])
def test_derivatives_and_fisher_match_finite_differences(model):
    """dpsi/dp against central differences of the model; F against p sum dI dI^T / I from those differences."""
    obj, probe, pos = _case()
    psi, dpsi = position_derivatives(obj, probe, pos, model)
    h = 1e-5
    di = []
    for k in range(2):
        step = np.zeros(2)
        step[k] = h
        plus, _ = position_derivatives(obj, probe, pos + step, model)
        minus, _ = position_derivatives(obj, probe, pos - step, model)
        fd = (plus - minus) / (2 * h)
        assert np.abs(fd - dpsi[:, k]).max() < 1e-6 * np.abs(dpsi[:, k]).max()
        di.append((np.abs(plus) ** 2 - np.abs(minus) ** 2) / (2 * h))
    di = np.stack(di, axis=1).reshape(len(pos), 2, -1)
    photons = 250.0
    want = photons * np.einsum("jak,jbk->jab", di, di / (np.abs(psi) ** 2).reshape(len(pos), 1, -1))
    got = position_fisher(obj, probe, pos, fisher_weight(photons_per_unit=photons), model)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    bound, per = position_bounds(got)
    inv = np.linalg.inv(got)
    np.testing.assert_allclose(bound, np.sqrt(np.trace(inv, axis1=1, axis2=2)))
    np.testing.assert_allclose(per ** 2, np.diagonal(inv, axis1=1, axis2=2))


def test_weights_and_a_flat_window():
    assert fisher_weight(photons_per_unit=10.0) == 40.0
    assert fisher_weight(sigma=0.5) == 4.0
    for bad in ({}, {"photons_per_unit": np.inf}, {"photons_per_unit": 1.0, "sigma": 1.0}):
        with pytest.raises(ConfigError):
            fisher_weight(**bad)
    obj, probe, pos = _case()
    obj[:12, :12] = 1.0  # the first window sees a flat object: no position information
    bound, _ = position_bounds(position_fisher(obj, probe, pos, 4.0))
    assert np.isinf(bound[0]) and np.all(np.isfinite(bound[1:]))


def _scoring(obj, probe, pos, counts, photons, iterations=5):
    """Per-position Poisson maximum likelihood by Fisher scoring, the object and probe known."""
    est = pos.copy()
    for _ in range(iterations):
        psi, dpsi = position_derivatives(obj, probe, est)
        mu = photons * np.abs(psi) ** 2 + 1e-12
        dmu = photons * 2 * (psi.conj()[:, None] * dpsi).real
        score = np.einsum("jakl,jkl->ja", dmu, counts / mu - 1)
        fisher = np.einsum("jakl,jbkl->jab", dmu, dmu / mu[:, None])
        est = est + np.linalg.solve(fisher, score[..., None])[..., 0]
    return est


def _spread_against_bound(seeds, npx):
    obj, probe, pos = _case(n=3 * npx, npx=npx, step=npx // 2)
    photons = 200.0
    psi, _ = position_derivatives(obj, probe, pos)
    fisher = position_fisher(obj, probe, pos, fisher_weight(photons_per_unit=photons))
    bound, _ = position_bounds(fisher)
    err = np.stack([_scoring(obj, probe, pos, np.random.default_rng(seed).poisson(photons * np.abs(psi) ** 2),
                             photons) - pos for seed in seeds])
    spread = np.sqrt(np.mean(np.sum(err**2, axis=2)))
    # whitened: e^T F e is chi-squared with 2 degrees of freedom for an efficient estimator, every position
    # counting alike (the rms above leans on the few least informed windows)
    whitened = np.sqrt(np.mean(np.einsum("sja,jab,sjb->sj", err, fisher, err)) / 2)
    return spread, float(np.sqrt(np.mean(bound**2))), float(whitened)


def test_bound_matches_the_spread_of_known_object_estimates():
    """Maximum-likelihood positions over noise seeds scatter by the bound (3 seeds, 8 px windows: fast)."""
    spread, bound, whitened = _spread_against_bound(range(3), 8)
    assert 0.05 < bound < 0.5  # the regime where the estimate is near-efficient
    assert abs(spread / bound - 1) < 0.2 and abs(whitened - 1) < 0.15


@pytest.mark.slow
def test_bound_matches_the_spread_over_ten_seeds():
    spread, bound, whitened = _spread_against_bound(range(10), 16)
    assert abs(spread / bound - 1) < 0.2 and abs(whitened - 1) < 0.15


def test_nuisance_schur_complement_by_cg_matches_the_dense_inverse():
    """CG Schur complement against the pseudo-inverse of the dense Gauss-Newton matrix; the object unknown only
    loosens the bound; without a nuisance the diagonal blocks are the known-object Fisher matrices."""
    obj, probe, pos = _case(n=9, npx=5, step=1)  # 25 windows: more data than unknowns
    weight = fisher_weight(photons_per_unit=100.0)
    dense = nuisance_fisher(obj, probe, pos, weight, dense=True)
    cg = nuisance_fisher(obj, probe, pos, weight, rtol=1e-6, maxiter=500)
    np.testing.assert_allclose(cg, dense, atol=1e-5 * np.abs(dense).max())
    b_dense, _ = nuisance_bounds(dense)
    b_cg, per = nuisance_bounds(cg)
    np.testing.assert_allclose(b_cg, b_dense, rtol=1e-4)
    np.testing.assert_allclose(b_cg**2, (per**2).sum(axis=1))
    known = position_fisher(obj, probe, pos, weight)
    assert np.all(b_cg > position_bounds(known)[0])
    only_object = nuisance_fisher(obj, probe, pos, weight, refine_probe=False, dense=True)
    assert np.all(nuisance_bounds(only_object)[0] <= b_dense * (1 + 1e-9))
    # the positions block of H itself (no elimination): the known-object matrices on its diagonal
    from mmip_ptychography.fisher import _complex_model, _gauss_newton

    op, v = _complex_model(obj, probe, pos, ("positions",))
    hvp = _gauss_newton(op, v, weight)
    start = op.layout.bounds["positions"][0]
    e = np.zeros(v.size)
    e[start] = 1.0
    np.testing.assert_allclose(hvp(e)[start : start + 2], known[0, 0], rtol=1e-8)


def test_report_prints_the_bound_and_draws_it(tmp_path, capsys):
    """``mmip report`` of a result that refined positions: the bound's table and figure, errors against the
    truth; without the input file the report still succeeds and says so."""
    from mmip_paper import simulate

    from multimodal_ip.io import save_dataset

    ds = simulate("cameraman", seed=17, n=40, probe_size=16, step=6, noise=0.03, position_jitter_px=1.0)
    path = tmp_path / "d.h5"
    save_dataset(path, ds)
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(path), "-o", str(out), "--terms", "ptychography", "--iterations", "4",
                 "--refine", "positions", "--refine-after", "2"]) == 0
    capsys.readouterr()
    assert main(["report", str(out), "-o", str(tmp_path / "rep")]) == 0
    text = capsys.readouterr().out
    assert "bound rms (px)" in text
    row = next(line for line in text.splitlines() if line.startswith("| result |") and line.count("|") == 8)
    values = [float(c) for c in row.split("|")[2:-1]]
    assert all(np.isfinite(values)) and 0 < values[0] < values[4]  # the bound is below the error of 4 iterations
    assert (tmp_path / "rep" / "position_bound.png").stat().st_size > 1000
    assert "position_bound.png" in (tmp_path / "rep" / "report.md").read_text()
    path.unlink()
    assert main(["report", str(out), "-o", str(tmp_path / "rep2")]) == 0
    assert "was not found" in capsys.readouterr().out
    assert not (tmp_path / "rep2" / "position_bound.png").exists()
