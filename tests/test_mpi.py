"""K = 2 and 3 MPI ranks give the single-process result (positions partitioned, gradients reduced)."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from multimodal_ip.cli import main
from multimodal_ip.io import load_result

pytest.importorskip("mpi4py", reason="MPI needs mpi4py (make test installs mpich + mpi4py from wheels)")
pytest.importorskip("pylops_mpi", reason="MPI runs need pylops-mpi (make test installs it)")
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec on PATH (pip install mpich)")


@pytest.mark.parametrize("solver", ["lbfgs", "gauss-newton"])
def test_ranks_reproduce_single_process(tmp_path, solver):
    data = tmp_path / "d.h5"
    assert main(["simulate", "phantom", "-o", str(data), "--n", "48", "--probe-size", "16", "--step", "8",
                 "--noise", "0.03"]) == 0
    flags = ["--iterations", "8", "--solver", solver, "--dtype", "float64"]  # equality to 1e-9: float64
    assert main(["reconstruct", str(data), "-o", str(tmp_path / "r1.h5"), *flags]) == 0
    single = load_result(tmp_path / "r1.h5")
    for k in (2, 3):
        out = tmp_path / f"r{k}.h5"
        proc = subprocess.run([MPIEXEC, "-n", str(k), sys.executable, "-m", "multimodal_ip.cli", "reconstruct",
                               str(data), "-o", str(out), *flags], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        res = load_result(out)
        assert res["config"]["mpi_ranks"] == k
        for v in ("x", "w"):
            np.testing.assert_allclose(res["variables"][v], single["variables"][v], rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(res["history"]["objective"], single["history"]["objective"], rtol=1e-10)


def test_float32_default_ranks_agree_to_single_precision(tmp_path):
    """The default precision (float32) under MPI: the ranks' reductions run in another order than one process's,
    so equality is to float32 rounding carried through a few iterations, not to 1e-9; results stay float32."""
    data = tmp_path / "d.h5"
    assert main(["simulate", "phantom", "-o", str(data), "--n", "48", "--probe-size", "16", "--step", "8",
                 "--noise", "0.03"]) == 0
    assert main(["reconstruct", str(data), "-o", str(tmp_path / "r1.h5"), "--iterations", "5"]) == 0
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "multimodal_ip.cli", "reconstruct", str(data),
                           "-o", str(tmp_path / "r2.h5"), "--iterations", "5"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one, two = load_result(tmp_path / "r1.h5"), load_result(tmp_path / "r2.h5")
    assert one["config"]["dtype"] == "float32" and two["variables"]["x"].dtype == np.float32
    np.testing.assert_allclose(two["history"]["objective"], one["history"]["objective"], rtol=1e-4)
    np.testing.assert_allclose(two["variables"]["x"], one["variables"]["x"], rtol=0, atol=1e-3)


def test_each_rank_reads_only_its_share(tmp_path, tiny_dataset):
    from multimodal_ip.io import load_dataset, save_dataset

    save_dataset(tmp_path / "d.h5", tiny_dataset)
    full = load_dataset(tmp_path / "d.h5")
    parts = [load_dataset(tmp_path / "d.h5", part=(r, 3)) for r in range(3)]
    for term, axis in (("ptychography", 0), ("fluorescence", 1)):
        pieces = [p.terms[term].arrays["data"] for p in parts]
        assert sum(p.shape[axis] for p in pieces) == full.terms[term].arrays["data"].shape[axis]
        np.testing.assert_array_equal(np.concatenate(pieces, axis=axis), full.terms[term].arrays["data"])
        assert parts[1].terms[term].attrs["split_total"] == full.terms[term].arrays["positions"].shape[0]


def test_probe_refinement_under_mpi_matches_single_process(tmp_path):
    """The probe and the positions' affine map are unknowns shared by all ranks: their gradients are summed like
    the object's (the affine frame depends on the object and window only, so every rank uses the same)."""
    data = tmp_path / "d.h5"
    assert main(["simulate", "phantom", "-o", str(data), "--n", "48", "--probe-size", "16", "--step", "8",
                 "--noise", "0.03", "--probe-error", "0.2"]) == 0
    flags = ["--iterations", "8", "--refine", "probe,affine", "--refine-after", "3", "--dtype", "float64"]
    assert main(["reconstruct", str(data), "-o", str(tmp_path / "r1.h5"), *flags]) == 0
    single = load_result(tmp_path / "r1.h5")
    out = tmp_path / "r2.h5"
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "multimodal_ip.cli", "reconstruct",
                           str(data), "-o", str(out), *flags], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = load_result(out)
    assert np.any(single["variables"]["affine"] != 0)
    for v in ("x", "w", "probe", "affine"):
        np.testing.assert_allclose(res["variables"][v], single["variables"][v], rtol=1e-8, atol=1e-10)
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "multimodal_ip.cli", "reconstruct",
                           str(data), "-o", str(out), "--refine", "positions"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "not available with MPI" in proc.stderr


UNSPLIT = '''
from mmip_toy import Toy
from multimodal_ip import hookimpl


class Unsplit(Toy):
    """The toy without a split declaration: every rank holds the whole term."""
    split_axes = {}


@hookimpl
def mmip_register_modalities(register):
    register("toy-unsplit", Unsplit())
'''


def test_example_modality_and_an_unsplit_term_under_mpi(tmp_path):
    """The example modality (split along its rows) and a term whose modality declares no split (counted once,
    not once per rank) give the single-process result with 2 ranks."""
    pytest.importorskip("mmip_toy", reason="install examples/custom_modality (make test does)")
    (tmp_path / "mmipfix_unsplit.py").write_text(UNSPLIT)
    info = tmp_path / "mmip_fixture_unsplit-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mmip-fixture-unsplit\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[multimodal_ip]\nunsplit = mmipfix_unsplit\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    rng = np.random.default_rng(5)
    import h5py

    data = tmp_path / "toy.h5"
    with h5py.File(data, "w") as f:
        f.attrs["format"], f.attrs["format_version"] = "multimodal_ip", 1
        for name, modality in (("split", "toy"), ("whole", "toy-unsplit")):
            g = f.create_group(f"terms/{name}")
            g.attrs["modality"] = modality
            g["matrix"] = 0.3 * rng.standard_normal((9, 5))
            g["data"] = np.exp(-g["matrix"][()] @ rng.standard_normal(5))
    # joint (balanced against the split term) and the unsplit term alone (no balancing to hide a double count)
    for flags in (["--balance-reference", "split"], ["--terms", "whole"]):
        results = {}
        for k in (1, 2):
            out = tmp_path / f"r{k}.h5"
            cmd = [sys.executable, "-m", "multimodal_ip.cli", "reconstruct", str(data), "-o", str(out),
                   "--iterations", "6", "--accept-stall", "--dtype", "float64", *flags]
            proc = subprocess.run(([MPIEXEC, "-n", str(k)] if k > 1 else []) + cmd, capture_output=True,
                                  text=True, timeout=300, env=env)
            assert proc.returncode == 0, proc.stderr[-2000:]
            results[k] = load_result(out)
        for col in ("objective", "objective_whole"):
            np.testing.assert_allclose(results[2]["history"][col], results[1]["history"][col], rtol=1e-10)
        np.testing.assert_allclose(results[2]["variables"]["x"], results[1]["variables"]["x"], rtol=1e-9,
                                   atol=1e-12)
