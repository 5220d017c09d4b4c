"""Chunked evaluation: a split term built as parts gives the objective, gradient and Gauss-Newton products of the
whole term, at every chunk size (1, a few, J), with and without refined calibration, and in a whole run."""

import numpy as np
import pytest

from multimodal_ip.cli import main
from multimodal_ip.io import build_problem, load_result, save_dataset


def _compare(whole, chunked, v, rtol=1e-10):
    f0, g0 = whole.value_and_gradient(v)
    f1, g1 = chunked.value_and_gradient(v)
    assert abs(f1 - f0) <= rtol * abs(f0)
    assert np.linalg.norm(g1 - g0) <= rtol * np.linalg.norm(g0)
    assert whole.objectives(v).keys() == chunked.objectives(v).keys()
    d = np.random.default_rng(2).standard_normal(v.size)
    h0 = whole.linearize(v).gauss_newton(0.1).matvec(d)
    h1 = chunked.linearize(v).gauss_newton(0.1).matvec(d)
    assert np.linalg.norm(h1 - h0) <= rtol * np.linalg.norm(h0)


PER_POSITION = 16 * (16 * 16 * 8 + 2 * 8)  # TEMPORARY_FACTOR x (a float64 16 x 16 pattern + its position)


@pytest.mark.parametrize("block", [1, 7, 25])
@pytest.mark.parametrize("refine", [(), ("probe",), ("probe", "positions"), ("positions", "affine")])
def test_streamed_blocks_equal_the_whole(tiny_dataset, block, refine):
    """Ptychography is streamed (fixed or refined probe, positions, their affine map): one part whatever the memory,
    blocks sized by it, equal to one block."""
    from multimodal_ip.operators.streamed import BLOCK_TEMPORARIES

    whole = build_problem(tiny_dataset, chunk_bytes=0, refine=refine)
    pattern = 16 * 16 * 16  # one complex128 16 x 16 spectrum
    blocked = build_problem(tiny_dataset, chunk_bytes=block * BLOCK_TEMPORARIES * pattern, refine=refine)
    term = blocked.terms[blocked.term_names.index("ptychography")]
    j = tiny_dataset.terms["ptychography"].arrays["data"].shape[0]
    assert term.streamed and blocked.parts["ptychography"] == 1
    assert len(term.operator.blocks()) == -(-j // block)
    # the full-grid XRF map is an FFT correlation over the object: its temporaries do not grow with the positions,
    # so it stays whole (parts would each pay the whole FFT)
    assert blocked.parts["fluorescence"] == 1
    whole.terms[whole.term_names.index("ptychography")].operator.block = j  # one block
    v = whole.start() + 0.01 * np.random.default_rng(1).standard_normal(whole.space.size)
    _compare(whole, blocked, v, rtol=1e-9)


def test_auto_chunk_size_keeps_the_paper_cases_whole_and_splits_large_scans(tiny_dataset, monkeypatch):
    from multimodal_ip.modality import auto_chunk_size, capabilities
    from multimodal_ip.plugins import get_registry

    td = tiny_dataset.terms["ptychography"]
    axes = capabilities(get_registry().get("modality", "ptychography")).split_axes
    assert auto_chunk_size(td, axes) >= td.arrays["data"].shape[0]  # 25 patterns of 16 x 16: whole
    size = auto_chunk_size(td, axes, budget=4 * 10 * PER_POSITION)  # a quarter of it: ten patterns' temporaries
    assert size == 10
    monkeypatch.setenv("MMIP_MAX_MEMORY", "1M")
    assert build_problem(tiny_dataset).parts["ptychography"] == 1  # streamed: never split


def test_a_sparse_xrf_scan_is_blocked_by_its_windows(tiny_dataset):
    """XRF measured at the scan positions (gathered windows): one part, its blocks of positions sized by the memory
    target (their temporaries do not grow with the scan; tests/plugins/test_fluorescence_streamed.py)."""
    from mmip_paper import simulate

    ds = simulate("phantom", seed=1, noise=0.03, n=48, probe_size=16, step=8, xrf_grid="scan")
    whole = build_problem(ds, chunk_bytes=0)
    chunked = build_problem(ds, chunk_bytes=5 * 16 * 16 * 16)  # about 5 windows of 16 x 16 a block
    term = chunked.terms[chunked.term_names.index("fluorescence")]
    assert chunked.parts["fluorescence"] == 1 and 1 <= term.operator.block <= 5
    v = whole.start() + 0.05 * np.random.default_rng(4).standard_normal(whole.space.size)
    _compare(whole, chunked, v)


def test_a_chunked_run_reconstructs_like_a_whole_one(tmp_path, tiny_dataset):
    data = tmp_path / "d.h5"
    save_dataset(data, tiny_dataset)
    for chunk in ("0", "128K"):  # 4 positions a part
        assert main(["reconstruct", str(data), "-o", str(tmp_path / f"r{chunk}.h5"), "--iterations", "10",
                     "--chunk-memory", chunk, "--accept-stall"]) == 0
    a, b = load_result(tmp_path / "r0.h5"), load_result(tmp_path / "r128K.h5")
    for k in a["variables"]:
        np.testing.assert_allclose(b["variables"][k], a["variables"][k], rtol=1e-8, atol=1e-10)
    assert main(["reconstruct", str(data), "-o", str(tmp_path / "x.h5"), "--chunk-memory", "lots"]) == 2


def test_dtype_float32_computes_in_float32_through_the_cli(tmp_path, tiny_dataset):
    """--dtype float32 makes the unknowns float32 too (it used to round only the data: the batch ran in complex128)."""
    data = tmp_path / "d.h5"
    save_dataset(data, tiny_dataset)
    for dtype in ("float64", "float32"):
        assert main(["reconstruct", str(data), "-o", str(tmp_path / f"{dtype}.h5"), "--iterations", "15",
                     "--dtype", dtype, "--accept-stall"]) == 0
    r32, r64 = load_result(tmp_path / "float32.h5"), load_result(tmp_path / "float64.h5")
    assert all(a.dtype == np.float32 for a in r32["variables"].values())
    problem = build_problem(tiny_dataset, dtype="float32")
    assert problem.start().dtype == np.float32
    assert problem.value_and_gradient(problem.start())[1].dtype == np.float32
    e32, e64 = r32["history"]["error_total"][-1], r64["history"]["error_total"][-1]
    assert abs(e32 - e64) < 0.02 * e64
