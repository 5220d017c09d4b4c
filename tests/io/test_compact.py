"""Compact measurements: a detector's integer counts and float64 files in a float32 run (issue 16, deliver 2).

Files are written with plain h5py, as a beamline's software would, not by our simulator's writer.
"""

import tracemalloc

import h5py
import numpy as np
import pytest

from multimodal_ip.cli import main
from multimodal_ip.io import build_problem, load_dataset, load_result
from multimodal_ip.io.dataset import compact_dtype
from multimodal_ip.kernels import amplitude_misfit_


def _write(path, ds, data_dtype=None, scale_counts=True):
    """The schema by plain h5py; the ptychography data as rounded photon counts (probe scaled to match) in
    ``data_dtype``, or as they are when ``data_dtype`` is None."""
    p = float(ds.terms["ptychography"].attrs["photons_per_unit"]) if scale_counts else 1.0
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "multimodal_ip"
        f.attrs["format_version"] = 1
        for name, t in ds.terms.items():
            g = f.create_group(f"terms/{name}")
            g.attrs["modality"] = t.modality
            for k, v in t.attrs.items():
                g.attrs[k] = v
            for k, a in t.arrays.items():
                a = np.asarray(a)
                if name == "ptychography" and k == "data" and data_dtype is not None:
                    a = np.rint(a * p).astype(data_dtype)
                elif name == "ptychography" and k == "probe" and data_dtype is not None:
                    a = a * np.sqrt(p)
                g.create_dataset(k, data=a)
            if name == "ptychography" and data_dtype is not None:
                g.attrs["photons_per_unit"] = 1.0
        for k, v in ds.truth.items():
            f.create_dataset(f"truth/{k}", data=v)


def test_compact_dtype_rule():
    assert compact_dtype(np.uint16) is None and compact_dtype(np.int32, "float32") is None  # counts stay
    assert compact_dtype(np.int64, "float32") == np.float32 and compact_dtype(np.uint64) == np.float64
    assert compact_dtype(np.float64, "float32") == np.float32 and compact_dtype(np.float64, "float64") is None
    assert compact_dtype(np.float32, "float64") is None and compact_dtype(np.float64) is None


@pytest.mark.parametrize("counts", ["uint16", "int32", "uint32", "int64"])
def test_integer_counts_evaluate_like_the_same_values_as_floats(tmp_path, tiny_dataset, counts):
    """The same counts stored as integers and as float64: equal objective and gradient (float64 run); integer
    counts of <= 32 bits stay integers in memory, wider ones are converted while read."""
    _write(tmp_path / "int.h5", tiny_dataset, counts)
    _write(tmp_path / "float.h5", tiny_dataset, "float64")
    a = load_dataset(tmp_path / "int.h5")
    b = load_dataset(tmp_path / "float.h5")
    kept = np.asarray(a.terms["ptychography"].arrays["data"]).dtype
    assert kept == (np.dtype(counts) if np.dtype(counts).itemsize <= 4 else np.float64)
    pa, pb = build_problem(a), build_problem(b)
    assert pa.terms[0].data.dtype == kept or pa.terms[1].data.dtype == kept
    v = pb.start() + 0.01 * np.random.default_rng(0).standard_normal(pb.start().size)
    (fa, ga), (fb, gb) = pa.value_and_gradient(v), pb.value_and_gradient(v)
    assert fa == pytest.approx(fb, rel=1e-12)
    np.testing.assert_allclose(ga, gb, rtol=0, atol=1e-12 * np.abs(gb).max())


def test_integer_counts_reconstruct_through_the_cli(tmp_path, tiny_dataset):
    """A uint16-count file (refused before: 'expected float dtype') reconstructs in float32 and float64, to the
    same error as the float file of the same counts."""
    _write(tmp_path / "int.h5", tiny_dataset, "uint16")
    _write(tmp_path / "float.h5", tiny_dataset, "float64")
    flags = ["--iterations", "15", "--checkpoint-every", "0", "--accept-stall"]
    assert main(["reconstruct", str(tmp_path / "int.h5"), "-o", str(tmp_path / "a.h5"), *flags]) == 0
    assert main(["reconstruct", str(tmp_path / "float.h5"), "-o", str(tmp_path / "b.h5"), *flags]) == 0
    for name, data in (("c", "int.h5"), ("d", "float.h5")):
        assert main(["reconstruct", str(tmp_path / data), "-o", str(tmp_path / f"{name}.h5"), *flags,
                     "--dtype", "float32"]) == 0
    a, b, c, d = (load_result(tmp_path / f"{k}.h5") for k in "abcd")
    for v in ("x", "w"):
        np.testing.assert_allclose(a["variables"][v], b["variables"][v], rtol=0, atol=1e-10)
        assert c["variables"][v].dtype == np.float32
        np.testing.assert_allclose(c["variables"][v], d["variables"][v], rtol=0, atol=1e-4)


def test_negative_signed_counts_refused_in_one_line(tmp_path, tiny_dataset, capsys):
    _write(tmp_path / "int.h5", tiny_dataset, "int16")
    with h5py.File(tmp_path / "int.h5", "a") as f:
        f["terms/ptychography/data"][0, 0, 0] = -3
    assert main(["reconstruct", str(tmp_path / "int.h5"), "-o", str(tmp_path / "a.h5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "/terms/ptychography/data" in err[0] and "non-negative (min -3)" in err[0]


def test_float64_file_read_in_float32_without_a_float64_copy(tmp_path):
    """precision='float32' converts the measurements while HDF5 reads them: the traced peak stays near the
    float32 array (a float64 read then astype would be 3x it); positions keep their float64."""
    j, npx = 400, 64
    rng = np.random.default_rng(1)
    with h5py.File(tmp_path / "big.h5", "w") as f:
        f.attrs["format"] = "multimodal_ip"
        f.attrs["format_version"] = 1
        g = f.create_group("terms/ptychography")
        g.attrs["modality"] = "ptychography"
        g.create_dataset("data", data=rng.random((j, npx, npx)), chunks=(8, npx, npx))
        g.create_dataset("probe", data=np.ones((npx, npx), complex))
        g.create_dataset("positions", data=rng.random((j, 2)) * 10 + 0.123456789)
        for name, shape in (("x", (80, 80)), ("w", (1, 80, 80))):
            d = f.create_dataset(f"variables/{name}", data=h5py.Empty("f8"))
            d.attrs["shape"], d.attrs["dtype"] = shape, "float64"
    tracemalloc.start()
    try:
        ds = load_dataset(tmp_path / "big.h5", precision="float32")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    data = ds.terms["ptychography"].arrays["data"]
    assert data.dtype == np.float32 and ds.terms["ptychography"].arrays["positions"].dtype == np.float64
    assert peak < 1.3 * data.nbytes, (peak, data.nbytes)
    assert load_dataset(tmp_path / "big.h5").terms["ptychography"].arrays["data"].dtype == np.float64


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_amplitude_kernel_takes_integer_counts(dtype):
    rng = np.random.default_rng(2)
    y = (rng.standard_normal((3, 8, 8)) + 1j * rng.standard_normal((3, 8, 8))).astype(dtype)
    counts = rng.integers(0, 50, (3, 8, 8)).astype(np.uint16)
    ya, yb = y.copy(), y.copy()
    va = amplitude_misfit_(ya, counts, 0.5)
    vb = amplitude_misfit_(yb, counts.astype(y.real.dtype), 0.5)
    assert ya.dtype == dtype and va == pytest.approx(vb, rel=1e-6)
    np.testing.assert_allclose(ya, yb, rtol=1e-6)
