"""XRF at the scan positions evaluated a block of positions at a time: equal to the unblocked operator, bounded."""

import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
from mmip_fluorescence import FluorescenceMap, FluorescenceModel, fluorescence_map
from mmip_scanprobe import AFFINE_SIZE, SubpixelShift

from multimodal_ip.cli import main
from multimodal_ip.io import build_problem, load_dataset, load_result
from multimodal_ip.modality import split_term
from multimodal_ip.testing import check_adjoint

TOL = 1e-10


def _scan(rng, n, k, j, inside):
    lo, hi = (0, n - k) if inside else (-(k - 1), n - 1)
    return rng.integers(lo, hi + 1, (j, 2)).astype(float)


def _close(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert np.max(np.abs(a - b)) <= TOL * max(1.0, float(np.max(np.abs(b))))


@pytest.mark.parametrize("inside", [True, False], ids=["inside", "over-the-edge"])
@pytest.mark.parametrize("kind", ["shared", "stack", "fractions-kept", "fractions-per-block"])
@pytest.mark.parametrize("block", [1, 4, 7])
@pytest.mark.parametrize("k", [5, 6], ids=["odd-kernel", "even-kernel"])
def test_blocked_map_equals_unblocked(kind, inside, block, k, monkeypatch):
    if kind == "fractions-per-block":  # shifted footprints made per block, in every product
        monkeypatch.setattr(fluorescence_map, "KEEP_STACK_BYTES", 0)
    rng = np.random.default_rng(0)
    n, ne, j = 16, 2, 23
    pos = _scan(rng, n, k, j, inside)
    kernel = rng.random((j, k, k)) if kind == "stack" else rng.random((k, k))
    fractions = rng.uniform(-0.5, 0.5, (j, 2)) if kind.startswith("fractions") else None
    whole = FluorescenceMap(kernel, pos, (n, n), ne, method="gather", fractions=fractions, block=j)
    blocked = FluorescenceMap(kernel, pos, (n, n), ne, method="gather", fractions=fractions, block=block)
    assert (blocked.fractions is not None) == (kind == "fractions-per-block")
    assert len(blocked.blocks()) == -(-j // block) and len(whole.blocks()) == 1
    w, d = rng.random(ne * n * n), rng.standard_normal(ne * j)
    _close(blocked @ w, whole @ w)
    _close(blocked.H @ d, whole.H @ d)
    _close(blocked.kernel_adjoint(w, d), whole.kernel_adjoint(w, d))
    check_adjoint(blocked, rng=rng)
    if fractions is not None:  # the shifted footprints are the complex Fourier shift's real part
        stack = SubpixelShift(fractions, (k, k), dtype="float64")(kernel).real
        _close(blocked @ w, FluorescenceMap(stack, pos, (n, n), ne, method="gather", block=j) @ w)


def _model_input(rng, probe, pos, n, refine):
    parts = [rng.random(2 * n * n)] + [probe.view(float).ravel()] * ("probe" in refine) \
        + [pos.ravel()] * ("positions" in refine) + [rng.uniform(-0.1, 0.1, AFFINE_SIZE)] * ("affine" in refine)
    return np.concatenate(parts)


@pytest.mark.parametrize("refine", [(), ("probe",), ("positions",), ("probe", "positions", "affine")],
                         ids=lambda r: "-".join(r) or "none")
@pytest.mark.parametrize("subpixel", [True, False], ids=["subpixel", "whole-pixel"])
@pytest.mark.parametrize("block", [3, None], ids=["blocks-of-3", "kept"])
def test_blocked_model_equals_unblocked(refine, subpixel, block):
    """Value, Jacobian and adjoint products, gradient and Gauss-Newton products of the refined-probe model, in
    blocks of 3 positions or (default, small scan) one block kept in the state, against one block of all."""
    rng = np.random.default_rng(1)
    n, k, j = 14, 4, 19
    probe = rng.standard_normal((k, k)) + 1j * rng.standard_normal((k, k))
    pos = _scan(rng, n, k, j, inside=False) + (rng.uniform(-0.3, 0.3, (j, 2)) if subpixel else 0)
    pos = np.clip(pos, -(k - 1) + 0.4, n - 1.4)
    v = _model_input(rng, probe, pos, n, refine)
    ops = [FluorescenceModel(probe, pos, (n, n), 2, kernel_scale=0.5, refine=refine, block=b) for b in (j, block)]
    (y0, jac0), (y1, jac1) = (op.linearize(v) for op in ops)
    _close(y1, y0)
    dv, r = rng.standard_normal(v.size), rng.standard_normal(jac0.shape[0])
    for _ in range(2):  # twice: a kept block serves the second products
        _close(jac1 @ dv, jac0 @ dv)
        _close(jac1.H @ r, jac0.H @ r)
        _close(jac1.H @ (jac1 @ dv), jac0.H @ (jac0 @ dv))  # Gauss-Newton product
    if block is None and (subpixel or "positions" in refine):  # footprints differ by position: kept once
        assert len(jac1.s["kept"]) == 1
    check_adjoint(jac1, rng=rng)


def write_scan_file(path, n=24, npx=8, step=4, subpixel=False, seed=0):
    """A README-schema file (plain h5py): ptychography and one element's XRF at the same scan positions."""
    from mmip_ptychography import raster_positions

    rng = np.random.default_rng(seed)
    pos = raster_positions(n, npx, step_px=step).astype(float)
    if subpixel:
        pos = np.clip(pos + rng.uniform(-0.3, 0.3, pos.shape), 0, n - npx)
    probe = rng.standard_normal((npx, npx)) + 1j * rng.standard_normal((npx, npx))
    with h5py.File(path, "w") as f:
        f.attrs["format"], f.attrs["format_version"] = "multimodal_ip", 1
        g = f.create_group("terms/ptychography")
        g.attrs["modality"] = "ptychography"
        g.attrs["object_shape"] = [n, n]
        g.create_dataset("data", data=rng.random((len(pos), npx, npx)))
        g.create_dataset("probe", data=probe)
        g.create_dataset("positions", data=pos)
        g = f.create_group("terms/fluorescence")
        g.attrs["modality"] = "fluorescence"
        g.attrs["object_shape"] = [n, n]
        g.attrs["elements"] = np.array(["Fe"], dtype=h5py.string_dtype())
        g.create_dataset("data", data=rng.random((1, len(pos))))
        g.create_dataset("kernel", data=np.abs(probe) ** 2)
        g.create_dataset("positions", data=pos)
    return pos


@pytest.mark.parametrize("subpixel", [False, True], ids=["whole-pixel", "subpixel"])
def test_chunk_memory_sizes_the_blocks_and_keeps_the_objective(tmp_path, subpixel):
    """``chunk_bytes`` (``--chunk-memory``) sets the XRF term's blocks; objective and gradient do not change."""
    write_scan_file(tmp_path / "d.h5", subpixel=subpixel)
    ds = load_dataset(tmp_path / "d.h5")
    whole = build_problem(ds, terms=["fluorescence"], balance=False, dtype="float64", chunk_bytes=0)
    small = build_problem(ds, terms=["fluorescence"], balance=False, dtype="float64", chunk_bytes=3000)
    (tw,), (ts,) = whole.terms, small.terms
    assert ts.operator.block == ts.operator.block_for_bytes(3000) < 5 < tw.operator.op.dimsd[1]
    assert len(ts.operator.op.blocks()) > 5 and len(tw.operator.op.blocks()) == 1
    v = whole.space.full(1.0) + 0.1 * np.random.default_rng(2).random(whole.space.size)
    (f0, g0), (f1, g1) = whole.value_and_gradient(v), small.value_and_gradient(v)
    assert abs(f1 - f0) <= TOL * abs(f0)
    _close(g1, g0)


def test_parts_sum_to_the_whole_term(tmp_path):
    """The term split into parts (contiguous runs of positions, as chunks and MPI ranks take them), each blocked:
    the parts' objectives and gradients sum to the unsplit term's."""
    write_scan_file(tmp_path / "d.h5", subpixel=True)
    ds = load_dataset(tmp_path / "d.h5")
    whole = build_problem(ds, terms=["fluorescence"], balance=False, dtype="float64", chunk_bytes=0)
    td = ds.terms["fluorescence"]
    from multimodal_ip.modality import capabilities
    from multimodal_ip.plugins import get_registry

    info = capabilities(get_registry().get("modality", "fluorescence"))
    space = whole.space
    v = space.full(1.0) + 0.1 * np.random.default_rng(3).random(space.size)
    u = whole._term_input(0, v)  # the maps w, as the joint evaluation passes them
    f0, g0, _ = whole.terms[0].linearize_input(u)
    f, g = 0.0, np.zeros_like(g0)
    for i in range(3):
        part = split_term(td, info.split_axes, i, 3)
        term = info.obj.build_term(part, space, dtype="float64")
        term.operator.block = 2
        val, grad, _ = term.linearize_input(u)
        f, g = f + val, g + grad
    assert abs(f - f0) <= TOL * abs(f0)
    _close(g, g0)


def test_one_evaluation_allocates_one_block_not_the_scan():
    """tracemalloc peak of a product and its adjoint: the maps, one accumulator and one block, far below the
    whole-scan windows the unblocked gather allocated (J x Kh x Kw values, plus as many int64 indices)."""
    rng = np.random.default_rng(4)
    n, k, j = 160, 32, 1200
    pos = _scan(rng, n, k, j, inside=True)
    fmap = FluorescenceMap(rng.random((k, k)), pos, (n, n), 1, method="gather")
    fmap.block = fmap.block_for_bytes(1 << 20)
    w, d = rng.random(n * n), rng.random(j)
    fmap @ w, fmap.H @ d  # warm-up: lazily built helpers are not counted
    tracemalloc.start()
    try:
        fmap @ w
        fmap.H @ d
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    bound = (1 << 20) + 3 * w.nbytes  # one block's temporaries + the accumulator and result
    old_windows = j * k * k * 8  # what the unblocked gather held before contracting (its indices doubled it)
    assert peak < bound < old_windows / 4, (peak, bound, old_windows)


MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec on PATH (pip install mpich)")
def test_blocked_xrf_under_mpi_matches_single_process(tmp_path):
    pytest.importorskip("mpi4py")
    pytest.importorskip("pylops_mpi")
    write_scan_file(tmp_path / "d.h5", subpixel=True)
    flags = ["--iterations", "3", "--dtype", "float64", "--chunk-memory", "4K"]
    assert main(["reconstruct", str(tmp_path / "d.h5"), "-o", str(tmp_path / "r1.h5"), *flags]) == 0
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "multimodal_ip.cli", "reconstruct",
                           str(tmp_path / "d.h5"), "-o", str(tmp_path / "r2.h5"), *flags],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one, two = load_result(tmp_path / "r1.h5"), load_result(tmp_path / "r2.h5")
    assert two["config"]["mpi_ranks"] == 2
    np.testing.assert_allclose(two["history"]["objective"], one["history"]["objective"], rtol=1e-10)
    for name in ("x", "w"):
        np.testing.assert_allclose(two["variables"][name], one["variables"][name], rtol=1e-9, atol=1e-11)
