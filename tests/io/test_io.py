import h5py
import numpy as np
import pytest

from multimodal_ip.errors import DataError
from multimodal_ip.io import build_problem, load_dataset, save_dataset


@pytest.fixture
def dataset_file(tmp_path, tiny_dataset):
    path = tmp_path / "data.h5"
    save_dataset(path, tiny_dataset)
    return path


def test_roundtrip(dataset_file, tiny_dataset):
    back = load_dataset(dataset_file)
    assert {v.name for v in back.variables} == {"x", "w"}
    for name, t in tiny_dataset.terms.items():
        for k, a in t.arrays.items():
            np.testing.assert_array_equal(back.terms[name].arrays[k], a)
    with h5py.File(dataset_file) as f:
        assert f.attrs["format"] == "multimodal_ip" and f.attrs["format_version"] == 1
        assert f["terms/ptychography"].attrs["modality"] == "ptychography"
        assert f["terms/ptychography/probe"].dtype.kind == "c"


def corrupt(path, fn):
    with h5py.File(path, "a") as f:
        fn(f)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f["terms/ptychography/data"].__setitem__((0, 0, 0), np.nan),
         r"data\.h5:/terms/ptychography/data: contains NaN or Inf"),
        (lambda f: f["terms/ptychography/data"].__setitem__((0, 0, 0), -1.0), "intensities must be non-negative"),
        (lambda f: (f.__delitem__("terms/ptychography/probe"), f["terms/ptychography"].create_dataset(
            "probe", data=np.ones((3, 3), complex))), r"probe: expected shape \(16, 16\), got \(3, 3\)"),
        (lambda f: f["terms/ptychography/positions"].__setitem__((0, 0), 400.0), r"outside the \(48, 48\) object"),
        (lambda f: f.__delitem__("terms/fluorescence/kernel"), "missing dataset 'kernel'"),
        (lambda f: (f.__delitem__("terms/fluorescence/data"), f["terms/fluorescence"].create_dataset(
            "data", data=np.ones((2, 5)))), r"fluorescence/data: expected shape \(1, \*\), got \(2, 5\)"),
        (lambda f: f["terms/fluorescence"].attrs.__setitem__("modality", "sonar"), "no modality 'sonar'"),
        (lambda f: f.attrs.__setitem__("format", "other"), "not a multimodal_ip file"),
        (lambda f: f.__delitem__("terms"), "missing group /terms"),
    ],
)
def test_bad_files_name_file_and_dataset(dataset_file, mutate, message):
    corrupt(dataset_file, mutate)
    with pytest.raises(Exception, match=message) as info:
        build_problem(load_dataset(dataset_file))
    assert isinstance(info.value, (DataError, LookupError))


def test_missing_truncated_and_empty_files(tmp_path, dataset_file):
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "nope.h5")
    raw = dataset_file.read_bytes()
    (tmp_path / "cut.h5").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(DataError, match="cut.h5"):
        build_problem(load_dataset(tmp_path / "cut.h5"))
    (tmp_path / "empty.h5").write_bytes(b"")
    with pytest.raises(DataError, match="not a readable HDF5 file"):
        load_dataset(tmp_path / "empty.h5")


def test_failed_write_keeps_previous_file(tmp_path, tiny_dataset, dataset_file):
    before = dataset_file.read_bytes()
    bad = type(tiny_dataset)(tiny_dataset.variables, {"t": None}, {}, {})
    with pytest.raises(AttributeError):
        save_dataset(dataset_file, bad)
    assert dataset_file.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["data.h5"]  # no temporary file left behind


def test_write_error_leaves_no_partial_file(tmp_path, tiny_dataset, monkeypatch):
    import h5py as h5

    from multimodal_ip.io import dataset as dsmod

    real_file = h5.File

    def failing_file(path, mode="r", *a, **k):
        f = real_file(path, mode, *a, **k)
        if mode == "w":
            f.close()
            raise OSError(28, "No space left on device")
        return f

    monkeypatch.setattr(dsmod.h5py, "File", failing_file)
    with pytest.raises(DataError, match="No space left on device"):
        save_dataset(tmp_path / "out.h5", tiny_dataset)
    assert list(tmp_path.iterdir()) == []
