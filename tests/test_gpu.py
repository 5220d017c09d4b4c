"""cupy backend: the same code paths as the numpy suite, on the GPU. Skipped where cupy or a GPU is absent."""

import numpy as np
import pytest

cupy = pytest.importorskip("cupy", reason="cupy is not installed (GPU tests run only on a machine with a GPU)")
try:
    HAVE_GPU = cupy.cuda.runtime.getDeviceCount() > 0
except Exception:  # noqa: BLE001 - no driver, no device
    HAVE_GPU = False
pytestmark = pytest.mark.skipif(not HAVE_GPU, reason="cupy is installed but no GPU is visible")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gradient_and_lbfgs_match_numpy(tiny_dataset, dtype):
    from multimodal_ip import solve
    from multimodal_ip.io import build_problem

    opts = {t: {"dtype": dtype} for t in tiny_dataset.terms}
    cpu = build_problem(tiny_dataset, term_options=opts)
    gpu = build_problem(tiny_dataset, term_options=opts, xp=cupy)
    v = cpu.space.full(1.0).astype(dtype) + 0.1
    f_cpu, g_cpu = cpu.value_and_gradient(v)
    f_gpu, g_gpu = gpu.value_and_gradient(cupy.asarray(v))
    tol = 1e-10 if dtype == "float64" else 1e-4
    assert abs(f_gpu - f_cpu) <= tol * abs(f_cpu)
    assert np.linalg.norm(cupy.asnumpy(g_gpu) - g_cpu) <= tol * np.linalg.norm(g_cpu)
    for solver in ("lbfgs", "gauss-newton"):
        r_cpu = solve(cpu, cpu.space.full(1.0).astype(dtype), solver, maxiter=5)
        r_gpu = solve(gpu, cupy.asarray(cpu.space.full(1.0).astype(dtype)), solver, maxiter=5)
        assert isinstance(r_gpu.x, cupy.ndarray)
        np.testing.assert_allclose(r_gpu.history["objective"], r_cpu.history["objective"], rtol=100 * tol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_refinement_with_cubic_windows_matches_numpy(dtype):
    """Probe and position refinement at fractional positions (the cubic windows' numpy passes run on cupy arrays;
    numba is numpy-only), with the data as integer counts: value and gradient equal to the numpy run."""
    from mmip_paper import simulate

    from multimodal_ip.io import build_problem

    ds = simulate("phantom", seed=1, noise=0.03, n=48, probe_size=16, step=8, probe_error=0.2, position_jitter_px=1.5)
    td = ds.terms["ptychography"]
    td.arrays["data"] = np.rint(td.arrays["data"] * 50).astype(np.uint16)
    cpu = build_problem(ds, refine=("probe", "positions"), dtype=dtype)
    gpu = build_problem(ds, refine=("probe", "positions"), dtype=dtype, xp=cupy)
    v = cpu.start()
    v[cpu.space.slice("positions")] += 0.3  # every window at a fractional position
    v[cpu.space.slice("x")] += 0.05 * np.random.default_rng(0).standard_normal(cpu.space["x"].size)
    f_cpu, g_cpu = cpu.value_and_gradient(v)
    f_gpu, g_gpu = gpu.value_and_gradient(cupy.asarray(v))
    tol = 1e-9 if dtype == "float64" else 1e-4
    assert abs(f_gpu - f_cpu) <= tol * abs(f_cpu)
    assert np.linalg.norm(cupy.asnumpy(g_gpu) - g_cpu) <= tol * np.linalg.norm(g_cpu)


def test_aligned_runs_match_numpy(tiny_dataset):
    """``align``: the phase search (scipy on host scalars, the group applied to cupy arrays) takes the numpy run's
    moves."""
    from multimodal_ip.io import build_problem
    from multimodal_ip.solvers import solve_staged

    cpu = build_problem(tiny_dataset, dtype="float64")
    gpu = build_problem(tiny_dataset, dtype="float64", xp=cupy)
    h_cpu = solve_staged(cpu, cpu.start(), "lbfgs", maxiter=5, align=True).history
    h_gpu = solve_staged(gpu, gpu.start(), "lbfgs", maxiter=5, align=True).history
    np.testing.assert_allclose(h_gpu["align_ptychography"][1:], h_cpu["align_ptychography"][1:], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(h_gpu["objective"], h_cpu["objective"], rtol=1e-8)
