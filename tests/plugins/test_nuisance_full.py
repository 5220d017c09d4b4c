"""The positions' Fisher information with the object unknown, batched solves (mmip_ptychography.nuisance_full):
against the dense pseudo-inverse and the existing CG path, for both window models, with another modality's
information on the object."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mmip_fluorescence import FluorescenceMap, full_grid_positions
from mmip_ptychography.fisher import fisher_weight, nuisance_bounds, nuisance_fisher, position_fisher
from mmip_ptychography.nuisance_full import ObjectGaussNewton, nuisance_fisher_full, poisson_fisher_operator
from mmip_ptychography.nuisance_trace import nuisance_trace_samples
from mmip_scanprobe import BandLimitedWindows

from multimodal_ip.errors import ConfigError

from .test_fisher import _case


@pytest.fixture(autouse=True)
def _numpy_kernels(monkeypatch):
    """The numpy passes: on these tiny windows numba's threads cost more than they save."""
    monkeypatch.setenv("MMIP_NUMBA", "0")


def _pairs(a):
    """Complex ``(..., n0, n1)`` -> real pairs ``(..., 2 n0 n1)`` (real parts, then imaginary)."""
    a = a.reshape(*a.shape[:-2], -1)
    return np.concatenate([a.real, a.imag], axis=-1)


def _dense_schur(gn):
    """``H_pp - H_po pinv(H_oo) H_op`` from the operator's products on unit vectors."""
    shape = gn.obj.shape
    n = gn.obj.size
    units = np.eye(2 * n)
    basis = (units[:, :n] + 1j * units[:, n:]).reshape(2 * n, *shape)
    hoo = _pairs(gn.apply(basis)).T
    b = _pairs(gn.columns(range(gn.size))).T
    hpp = np.zeros((gn.size, gn.size))
    for j, block in enumerate(gn.position_blocks):
        hpp[2 * j : 2 * j + 2, 2 * j : 2 * j + 2] = block
    return hpp - b.T @ np.linalg.pinv(0.5 * (hoo + hoo.T), rcond=1e-10, hermitian=True) @ b, hoo


def test_cubic_schur_equals_the_existing_dense_and_the_correction_is_second_order():
    """Probe known, cubic windows: the batched solves equal ``nuisance_fisher``'s dense pseudo-inverse; at a loose
    tolerance the second-order correction brings the error down by an order of magnitude or more."""
    obj, probe, pos = _case(n=9, npx=5, step=1)  # 25 windows
    weight = fisher_weight(photons_per_unit=100.0)
    dense = nuisance_fisher(obj, probe, pos, weight, refine_probe=False, dense=True)
    gn = ObjectGaussNewton(obj, probe, pos, weight)
    np.testing.assert_allclose(gn.position_blocks, position_fisher(obj, probe, pos, weight), rtol=1e-10)
    exact, info = nuisance_fisher_full(gn, rtol=1e-9, batch=7)
    assert info["unconverged"] == 0
    np.testing.assert_allclose(exact, dense, atol=1e-8 * np.abs(dense).max())
    np.testing.assert_allclose(nuisance_bounds(exact)[0], nuisance_bounds(dense)[0], rtol=1e-7)
    scale = np.abs(dense).max()
    loose = np.abs(nuisance_fisher_full(gn, rtol=1e-2, batch=7)[0] - dense).max() / scale
    plain = np.abs(nuisance_fisher_full(gn, rtol=1e-2, batch=7, corrected=False)[0] - dense).max() / scale
    assert loose < 1e-3 and loose < plain / 5
    single, _ = nuisance_fisher_full(ObjectGaussNewton(obj, probe, pos, weight, single=True), rtol=1e-2, batch=7)
    assert np.abs(single - dense).max() / scale < 1e-3
    warm, again = nuisance_fisher_full(gn, rtol=1e-6, batch=25, start=info["solutions"])
    assert again["iterations"].max() < info["iterations"].min() / 3
    np.testing.assert_allclose(warm, dense, atol=1e-5 * scale)


def test_fourier_windows_adjoint_fisher_and_schur():
    """Band-limited windows: the simulator's windows, an exact adjoint, the known-object Fisher of
    ``position_fisher(model="fourier")``, and the Schur complement of the dense operator."""
    obj, probe, pos = _case(n=9, npx=5, step=1)
    weight = fisher_weight(photons_per_unit=100.0)
    gn = ObjectGaussNewton(obj, probe, pos, weight, model="fourier")
    np.testing.assert_allclose(gn.windows.forward(obj), BandLimitedWindows(obj, probe.shape)(pos), atol=1e-12)
    np.testing.assert_allclose(gn.position_blocks, position_fisher(obj, probe, pos, weight, "fourier"), rtol=1e-9)
    rng = np.random.default_rng(3)
    z = rng.standard_normal(obj.shape) + 1j * rng.standard_normal(obj.shape)
    g = rng.standard_normal((len(pos), 5, 5)) + 1j * rng.standard_normal((len(pos), 5, 5))
    lhs = np.vdot(gn.windows.forward(z), g)
    np.testing.assert_allclose(np.vdot(z, gn.windows.adjoint(g, np.arange(len(pos)))), lhs, rtol=1e-10)
    dense, _ = _dense_schur(gn)
    schur, _ = nuisance_fisher_full(gn, rtol=1e-8, batch=25)
    np.testing.assert_allclose(schur, dense, atol=1e-6 * np.abs(dense).max())
    with pytest.raises(ConfigError, match="window model"):
        ObjectGaussNewton(obj, probe, pos, weight, model="linear")


def test_xrf_information_on_the_object_tightens_the_bound():
    """Another modality's Poisson Fisher information on Im z (an XRF map of it): the operator and its diagonal
    against the dense matrix, the Schur complement against the dense pseudo-inverse, and a bound no larger than
    without it."""
    obj, probe, pos = _case(n=9, npx=5, step=1)
    weight = fisher_weight(photons_per_unit=100.0)
    kernel = np.abs(probe) ** 2
    grid = full_grid_positions(obj.shape, kernel.shape)
    xrf = FluorescenceMap(kernel, grid, obj.shape, 1)
    mean = xrf.matvec(np.abs(obj.imag).ravel() + 0.1)
    apply, diagonal_of = poisson_fisher_operator(xrf.matvec, xrf.rmatvec, mean, 50.0)
    m = np.stack([xrf.matvec(e) for e in np.eye(obj.size)], axis=1)
    matrix = 50.0 * m.T @ (m / mean[:, None])
    e = np.random.default_rng(1).standard_normal(obj.shape)
    np.testing.assert_allclose(apply(e).ravel(), matrix @ e.ravel(), rtol=1e-10)
    diag = diagonal_of(FluorescenceMap(kernel**2, grid, obj.shape, 1).rmatvec).reshape(obj.shape)
    np.testing.assert_allclose(diag.ravel(), np.diag(matrix), rtol=1e-10)
    gn = ObjectGaussNewton(obj, probe, pos, weight, imag_fisher=(apply, diag))
    dense, hoo = _dense_schur(gn)
    alone, hoo_alone = _dense_schur(ObjectGaussNewton(obj, probe, pos, weight))
    n = obj.size
    np.testing.assert_allclose(hoo[n:, n:] - hoo_alone[n:, n:], matrix, atol=1e-9 * np.abs(matrix).max())
    schur, _ = nuisance_fisher_full(gn, rtol=1e-8, batch=25)
    np.testing.assert_allclose(schur, dense, atol=1e-6 * np.abs(dense).max())
    assert np.all(nuisance_bounds(schur)[0] <= nuisance_bounds(alone)[0] * (1 + 1e-9))
    assert np.mean(nuisance_bounds(schur)[0]) < np.mean(nuisance_bounds(alone)[0])


def test_hutchinson_samples_are_the_quadratic_forms_of_the_covariance_bound():
    """Each sample is v^T C v for the dense C = Q (Q^T S Q)^+ Q^T, v the seed's Rademacher vector; their mean
    estimates trace C (the squared bounds' sum)."""
    obj, probe, pos = _case(n=9, npx=5, step=1)
    weight = fisher_weight(photons_per_unit=100.0)
    gn = ObjectGaussNewton(obj, probe, pos, weight)
    dense = nuisance_fisher(obj, probe, pos, weight, refine_probe=False, dense=True)
    n2 = dense.shape[0]
    shift = np.zeros((n2, 2))
    shift[0::2, 0] = shift[1::2, 1] = 1.0
    q = np.linalg.svd(np.eye(n2) - shift @ shift.T / (n2 // 2))[0][:, : n2 - 2]
    cov = q @ np.linalg.pinv(q.T @ dense @ q, hermitian=True) @ q.T
    values, iterations = nuisance_trace_samples(gn, samples=6, rtol=1e-4, seed=5, batch=3)
    v = np.random.default_rng(5).choice([-1.0, 1.0], size=(6, n2))
    np.testing.assert_allclose(values, np.einsum("bi,ij,bj->b", v, cov, v), rtol=1e-6)
    assert np.all(iterations > 0)
    trace = np.sum(nuisance_bounds(dense)[0] ** 2)
    assert abs(values.mean() / trace - 1) < 4 * values.std(ddof=1) / np.sqrt(len(values)) / trace + 1e-9


def test_position_bound_example_object_unknown(tmp_path):
    """The example's ``--object-unknown --xrf`` rows on a small case: the bound with the object unknown above the
    known-object one (cubic windows), the XRF's information lowering it, the Schur complement saved."""
    root = Path(__file__).resolve().parents[2]
    saved = tmp_path / "schur.npy"
    out = subprocess.run([sys.executable, str(root / "examples/beyond_paper/position_bound.py"), "--n", "32",
                          "--probe-size", "16", "--step", "4", "--seed", "4", "--object-unknown", "--xrf",
                          "--xrf-samples", "4", "--save", str(saved)], capture_output=True, text=True, check=True,
                         env={**os.environ, "MMIP_NUMBA": "0", "OMP_NUM_THREADS": "1"}, cwd=tmp_path).stdout
    rms = {label: float(value) for label, value in re.findall(r"\| ([^|]*?) \| ([0-9.]+)", out)}
    known = rms["object and probe known, cubic windows"]
    alone = rms["object unknown, probe known, cubic windows, ptychography, common shift removed"]
    joint = next(v for k, v in rms.items() if "ptychography + XRF" in k)
    assert known < alone and joint < alone
    assert np.load(saved).shape == (50, 50)
