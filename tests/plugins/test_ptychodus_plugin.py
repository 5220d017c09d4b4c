"""The optional ``mmip-ptychodus`` plugin (``mmip import --ptychodus FILE``): ptychodus's readers mapped to our schema.

The default suite runs the plugin against a small fake of ptychodus's API (its plugin registry, diffraction
dataset, position and probe sequences) that reads the committed ptychodus-written fixtures with h5py: the term
must equal what our own CXI importer makes of the same files. With ``MMIP_PTYCHODUS_PYTHON`` naming a python where
ptychodus and our packages are installed, the real readers run too; another test regenerates the fixtures there."""

import os
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from mmip_ptychodus import ptychodus_term

from multimodal_ip.cli import main
from multimodal_ip.errors import DataError
from multimodal_ip.io import load_dataset

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
DIFFRACTION, PRODUCT = DATA / "ptychodus_diffraction.cxi", DATA / "ptychodus_product.h5"
EV_J = 1.602176634e-19
PTYCHODUS_PYTHON = os.environ.get("MMIP_PTYCHODUS_PYTHON")


class _Array:
    def __init__(self, indexes, patterns):
        self._indexes, self._patterns = indexes, patterns

    def get_indexes(self):
        return self._indexes

    def get_patterns(self):
        return self._patterns


class _Dataset(list):
    """ptychodus's ``DiffractionDataset``: a sequence of arrays, metadata, bad pixels."""

    def __init__(self, arrays, meta, bad):
        super().__init__(arrays)
        self._meta, self._bad = meta, bad

    def get_metadata(self):
        return self._meta

    def get_bad_pixels(self):
        return self._bad


def _read_diffraction(path, split=2):
    """Patterns of a CXI file in ``split`` arrays, as ptychodus's CXI reader returns them."""
    with h5py.File(path) as f:
        det = f["entry_1/instrument_1/detector_1"]
        data, pix = det["data"][()], float(det["x_pixel_size"][()])
        meta = SimpleNamespace(photon_energy_eV=float(f["entry_1/instrument_1/source_1/energy"][()]) / EV_J,
                               detector_distance_m=float(det["distance"][()]),
                               detector_pixel_geometry=SimpleNamespace(width_m=pix, height_m=pix))
        bad = det["mask"][()] != 0
    parts = np.array_split(np.arange(len(data)), split)
    return _Dataset([_Array(p, data[p]) for p in parts], meta, bad)


def _read_positions(path):
    with h5py.File(path) as f:
        idx, x, y = (f[k][()] for k in ("probe_position_indexes", "probe_position_x_m", "probe_position_y_m"))
    return SimpleNamespace(get_indexes=lambda: idx, get_coordinates_x_m=lambda: x, get_coordinates_y_m=lambda: y)


def _read_probe(path):
    with h5py.File(path) as f:
        probe = f["probe"][()]
    return SimpleNamespace(get_array=lambda: probe)


def _chooser(**readers):
    return [SimpleNamespace(simple_name=name, display_name=display, strategy=SimpleNamespace(read=read))
            for name, (display, read) in readers.items()]


class _Registry:
    """ptychodus's ``PluginRegistry``: choosers of readers, with ``.h5`` matched by two (as in ptychodus)."""

    def __init__(self):
        self.diffraction_file_readers = _chooser(CXI=("Coherent X-ray Imaging Files (*.cxi)", _read_diffraction),
                                                 NPZ=("Ptychodus NumPy Zipped Archive (*.npz)", None))
        h5 = ("Ptychodus Product Files (*.h5 *.hdf5)", _read_positions)
        self.probe_position_file_readers = _chooser(HDF5=h5, NSLS_II_1=("NSLS-II Files (*.h5 *.hdf5)", None),
                                                    CSV=("Comma-Separated Values Files (*.csv)", None))
        self.probe_file_readers = _chooser(HDF5=("Ptychodus Product Files (*.h5 *.hdf5)", _read_probe))

    @classmethod
    def load_plugins(cls):
        return cls()


@pytest.fixture
def fake_ptychodus(monkeypatch):
    """A ``ptychodus`` package whose ``api.plugins.PluginRegistry`` is the fake above."""
    for name in ("ptychodus", "ptychodus.api"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    plugins = types.ModuleType("ptychodus.api.plugins")
    plugins.PluginRegistry = _Registry  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ptychodus.api.plugins", plugins)


@pytest.fixture(scope="module")
def by_cxi(tmp_path_factory):
    """The same files through our own CXI importer (``--ptycho`` with ``--product``)."""
    out = tmp_path_factory.mktemp("cxi") / "d.h5"
    assert main(["import", "--ptycho", str(DIFFRACTION), "--product", str(PRODUCT), "-o", str(out)]) == 0
    return load_dataset(out)


READERS = ["--ptychodus-positions", str(PRODUCT), "--ptychodus-positions-reader", "hdf5"]


def test_fake_ptychodus_import_equals_the_cxi_importer(fake_ptychodus, by_cxi, tmp_path):
    """Patterns (from two arrays), probe, positions and the object frame: equal to ``--ptycho --product``'s."""
    out = tmp_path / "d.h5"
    assert main(["import", "--ptychodus", str(DIFFRACTION), *READERS, "-o", str(out)]) == 0
    ours = load_dataset(out)
    for key in ("data", "probe", "positions"):
        np.testing.assert_array_equal(ours.terms["ptychography"].arrays[key], by_cxi.terms["ptychography"].arrays[key])
    for key in ("pixel_size_m", "origin_m"):
        np.testing.assert_array_equal(ours.attrs[key], by_cxi.attrs[key])
    assert list(ours.terms["ptychography"].attrs["elements"]) == ["phase"]
    assert np.isclose(ours.terms["ptychography"].attrs["photon_energy_eV"], 8800.0)


def test_positions_pick_their_patterns_by_index():
    """Positions listed in another order than the patterns get their own pattern (matched by ptychodus's index)."""
    diffraction = _read_diffraction(DIFFRACTION)
    positions = _read_positions(PRODUCT)
    order = np.arange(25)[::-1]
    idx, x, y = positions.get_indexes()[order], positions.get_coordinates_x_m()[order], \
        positions.get_coordinates_y_m()[order]
    shuffled = SimpleNamespace(get_indexes=lambda: idx, get_coordinates_x_m=lambda: x, get_coordinates_y_m=lambda: y)
    term, _ = ptychodus_term(diffraction, positions, _read_probe(PRODUCT))
    back, _ = ptychodus_term(diffraction, shuffled, _read_probe(PRODUCT))
    np.testing.assert_array_equal(back.arrays["data"], term.arrays["data"][order])
    np.testing.assert_allclose(back.arrays["positions"], term.arrays["positions"][order], atol=1e-9)


@pytest.mark.parametrize(("change", "message"), [
    ("no_energy", "gives no photon_energy_eV"),
    ("missing_index", "1 of 25 probe positions have no pattern"),
    ("probe_shape", "probe of shape (1, 1, 8, 8), the patterns are (16, 16)"),
])
def test_mapping_refuses_what_it_cannot_place(change, message):
    diffraction, positions, probe = _read_diffraction(DIFFRACTION), _read_positions(PRODUCT), _read_probe(PRODUCT)
    if change == "no_energy":
        diffraction._meta.photon_energy_eV = None
    if change == "missing_index":
        idx = positions.get_indexes().copy()
        idx[3] = 99
        positions.get_indexes = lambda: idx
    if change == "probe_shape":
        probe = SimpleNamespace(get_array=lambda: np.ones((1, 1, 8, 8), complex))
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ptychodus_term(diffraction, positions, probe, str(DIFFRACTION))


@pytest.mark.parametrize(("args", "message"), [
    (["--ptychodus-positions", str(PRODUCT)], "several of ptychodus's positions readers match its name; choose "
                                              "one with --ptychodus-positions-reader NAME (HDF5, NSLS_II_1)"),
    ([*READERS, "--ptychodus-reader", "TIFF"], "--ptychodus-reader 'TIFF': ptychodus has no diffraction reader of "
                                               "that name; it has: CXI, NPZ"),
    ([*READERS, "--ptycho", str(DIFFRACTION), "--product", str(PRODUCT)],
     "--ptychodus and --ptycho both import the ptychography scan"),
])
def test_reader_choice_is_one_line(fake_ptychodus, tmp_path, capsys, args, message):
    code = main(["import", "--ptychodus", str(DIFFRACTION), *args, "-o", str(tmp_path / "d.h5")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d.h5").exists()


def test_without_ptychodus_the_plugin_loads_and_names_the_extra(monkeypatch, tmp_path, capsys):
    """No ptychodus: ``mmip plugins`` lists the importer as ok; ``--ptychodus`` fails in one line naming the extra."""
    monkeypatch.setitem(sys.modules, "ptychodus", None)  # import ptychodus -> ImportError
    assert main(["plugins"]) in (0, 2)
    rows = [r.split()[:5] for r in capsys.readouterr().out.splitlines()]
    assert ["importer", "ptychodus", "mmip-ptychodus", "0.1.0", "ok"] in rows
    code = main(["import", "--ptychodus", str(DIFFRACTION), "-o", str(tmp_path / "d.h5")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "pip install 'mmip-ptychodus[ptychodus]'" in err and len(err.splitlines()) == 1


def _ptychodus_has_our_packages() -> bool:
    if not PTYCHODUS_PYTHON:
        return False
    probe = subprocess.run([PTYCHODUS_PYTHON, "-c", "import ptychodus, mmip_ptychodus"], capture_output=True,
                           check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not _ptychodus_has_our_packages(),
                    reason="MMIP_PTYCHODUS_PYTHON: a python with ptychodus and mmip-ptychodus installed")
def test_real_ptychodus_readers_equal_the_cxi_importer(by_cxi, tmp_path):
    """ptychodus's own CXI diffraction reader and product readers, through ``mmip import --ptychodus``."""
    out = tmp_path / "d.h5"
    run = subprocess.run([PTYCHODUS_PYTHON, "-m", "multimodal_ip.cli", "import", "--ptychodus", str(DIFFRACTION),
                          *READERS, "--ptychodus-probe-reader", "HDF5", "-o", str(out)], capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0, run.stderr
    ours = load_dataset(out)
    for key in ("data", "probe", "positions"):
        np.testing.assert_array_equal(ours.terms["ptychography"].arrays[key], by_cxi.terms["ptychography"].arrays[key])


@pytest.mark.slow
@pytest.mark.skipif(not PTYCHODUS_PYTHON, reason="MMIP_PTYCHODUS_PYTHON: a ptychodus venv")
def test_committed_fixtures_regenerate(tmp_path):
    """tests/fixtures/make_ptychodus_files.py, rerun into a temporary folder: the committed fixtures' arrays and
    attributes come back (HDF5 files hold timestamps, CXI's start_time and process_1/date, so files are compared by
    content; floats to 1e-12 relative)."""
    script = ROOT / "tests" / "fixtures" / "make_ptychodus_files.py"
    run = subprocess.run([sys.executable, str(script), "--ptychodus-python", PTYCHODUS_PYTHON, "--out",
                          str(tmp_path)], capture_output=True, text=True, check=False, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    names = sorted(p.name for p in DATA.glob("ptychodus_*"))
    assert sorted(p.name for p in tmp_path.glob("ptychodus_*")) == names
    for name in names:
        new, old = _content(tmp_path / name), _content(DATA / name)
        assert sorted(new) == sorted(old), name
        for key, a in old.items():  # floats to 1e-12: the simulation's sums round differently across numpy builds
            b = new[key]
            same = a.dtype == b.dtype and a.shape == b.shape and (
                np.allclose(a, b, rtol=1e-12, atol=0) if a.dtype.kind in "fc" else a.tolist() == b.tolist())
            assert same, f"{name}:/{key}"


def _value(v):
    return np.asarray(v)


def _content(path) -> dict:
    """``{name: array}`` of every dataset and attribute, timestamps left out."""
    out: dict = {}

    def visit(name, obj):
        for k, v in obj.attrs.items():
            out[f"{name}@{k}"] = _value(v)
        if isinstance(obj, h5py.Dataset) and not name.endswith(("start_time", "end_time", "date")):
            out[name] = _value(obj[()])

    with h5py.File(path) as f:
        for k, v in f.attrs.items():
            out[f"@{k}"] = _value(v)
        f.visititems(visit)
    return out
