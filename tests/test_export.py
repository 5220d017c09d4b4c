"""``mmip export RESULT --format ptychodus|cxi|xrf-maps -o OUT`` (issue 30): the exporters the plugins register,
round trips through our importers, the output checks every writer makes, and (with ``MMIP_PTYCHODUS_PYTHON``)
ptychodus's own readers on our exports."""

import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from multimodal_ip.cli import main
from multimodal_ip.io import build_problem, load_dataset, load_result
from multimodal_ip.plugins import get_registry
from multimodal_ip.start import read_start

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """ptychodus's diffraction file and product, imported, reconstructed 3 iterations refining probe and positions:
    ``(data file, result file)``."""
    folder = tmp_path_factory.mktemp("export")
    data, result = folder / "d.h5", folder / "r.h5"
    assert main(["import", "--ptycho", str(DATA / "ptychodus_diffraction.cxi"), "--product",
                 str(DATA / "ptychodus_product.h5"), "-o", str(data)]) == 0
    assert main(["reconstruct", str(data), "-o", str(result), "--iterations", "3", "--refine",
                 "positions,probe", "--dtype", "float64"]) == 0
    return data, result


def test_exporters_are_registered_and_listed(capsys):
    assert {"ptychodus", "cxi", "xrf-maps"} <= set(get_registry().names("exporter"))
    assert main(["plugins"]) in (0, 2)
    rows = [r.split() for r in capsys.readouterr().out.splitlines()]
    assert ["exporter", "xrf-maps", "mmip-fluorescence"] in [r[:3] for r in rows]


@pytest.mark.parametrize("fmt", ["ptychodus", "cxi"])
def test_product_round_trip(run, tmp_path, fmt):
    """Our product, read back by our importers: the refined positions and probe (``mmip import --product``) and the
    object (``--start``: x and w) are the result's."""
    data, result = run
    out = tmp_path / ("p.cxi" if fmt == "cxi" else "p.h5")
    assert main(["export", str(result), "--format", fmt, "-o", str(out)]) == 0
    res = load_result(result)["variables"]
    back = tmp_path / "back.h5"
    assert main(["import", "--ptycho", str(DATA / "ptychodus_diffraction.cxi"), "--product", str(out),
                 "-o", str(back)]) == 0
    ds, again = load_dataset(data), load_dataset(back)
    term = again.terms["ptychography"]
    assert not np.allclose(res["positions"], ds.terms["ptychography"].arrays["positions"])  # refined ones go out
    pixel = ds.attrs["pixel_size_m"]  # the import puts its origin at the first window: compare on the stage (m)
    np.testing.assert_allclose(again.attrs["origin_m"] + term.arrays["positions"] * pixel,
                               ds.attrs["origin_m"] + res["positions"] * pixel, rtol=0, atol=1e-6 * pixel)
    np.testing.assert_array_equal(term.arrays["probe"], res["probe"])
    values = read_start(str(out), build_problem(ds, dtype="float64").space, dataset=ds)
    np.testing.assert_array_equal(values["x"], res["x"])
    np.testing.assert_allclose(values["w"], res["w"], atol=1e-15)
    with h5py.File(out) as f:  # the beam's energy comes from the diffraction file, not a default
        energy = f.attrs["photon_energy_eV"] if fmt == "ptychodus" else f["entry_1/instrument_1/source_1/energy"][()]
    assert np.isclose(energy, 8800.0 if fmt == "ptychodus" else 8800.0 * 1.602176634e-19, rtol=1e-9)


def test_xrf_maps_round_trip(run, tmp_path):
    """w as XRF-Maps v10, read back by our XRF importer on the data's frame (1-pixel kernel): the same maps."""
    from mmip_fluorescence.maps import import_maps

    data, result = run
    out = tmp_path / "maps.h5"
    assert main(["export", str(result), "--format", "xrf-maps", "-o", str(out)]) == 0
    w = load_result(result)["variables"]["w"]
    attrs = load_dataset(data).attrs
    frame = SimpleNamespace(pixel_size_m=float(attrs["pixel_size_m"]), origin_m=tuple(attrs["origin_m"]),
                            object_shape=w.shape[1:])
    frame.to_pixels = lambda yx: (np.asarray(yx) - np.asarray(frame.origin_m)) / frame.pixel_size_m
    term = import_maps(out, frame, np.ones((1, 1)))
    np.testing.assert_allclose(term.arrays["data"], w.reshape(w.shape[0], -1), rtol=1e-12)
    assert term.attrs["elements"] == ["phase"]


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("which", ["result", "data"])
def test_output_is_never_an_input(run, tmp_path, which, capsys):
    data, result = run
    target = tmp_path / f"{which}.h5"
    target.write_bytes((result if which == "result" else data).read_bytes())
    before = target.read_bytes()
    args = ["export", str(result if which == "data" else target), "--format", "ptychodus", "-o", str(target)]
    code = main(args + (["--data", str(target)] if which == "data" else []))
    err = capsys.readouterr().err
    assert code == 2 and "refusing to write" in err and len(err.strip().splitlines()) == 1
    assert target.read_bytes() == before


def test_failed_export_leaves_nothing(run, tmp_path, capsys):
    """A result the exporter cannot write (no object frame in the data file): one line, exit 2, no output and no
    temporary."""
    data, result = run
    bare = tmp_path / "bare.h5"
    bare.write_bytes(data.read_bytes())
    with h5py.File(bare, "a") as f:
        del f.attrs["pixel_size_m"]
    out = tmp_path / "out" / "p.h5"
    out.parent.mkdir()
    code = main(["export", str(result), "--format", "ptychodus", "--data", str(bare), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "pixel_size_m" in err and len(err.strip().splitlines()) == 1
    assert _listing(out.parent) == []


def test_export_needs_a_result_file(run, tmp_path, capsys):
    data, _ = run
    code = main(["export", str(data), "--format", "cxi", "-o", str(tmp_path / "p.cxi")])
    err = capsys.readouterr().err
    assert code == 2 and "not a multimodal_ip result file" in err
    assert _listing(tmp_path) == []


@pytest.mark.skipif(not os.environ.get("MMIP_PTYCHODUS_PYTHON"), reason="MMIP_PTYCHODUS_PYTHON: a ptychodus venv")
def test_ptychodus_reads_mmip_export(run, tmp_path):
    """ptychodus's own readers (``load_product``, ``CXIProductFileIO``, ``load_fluorescence_data``) on the files
    ``mmip export`` writes: the result's object, probe, positions (probe centres in metres) and maps."""
    data, result = run
    for fmt, name in (("ptychodus", "p.h5"), ("cxi", "p.cxi"), ("xrf-maps", "maps.h5")):
        assert main(["export", str(result), "--format", fmt, "-o", str(tmp_path / name)]) == 0
    v = load_result(result)["variables"]
    attrs = load_dataset(data).attrs
    centres = np.asarray(attrs["origin_m"]) + (v["positions"] + (v["probe"].shape[0] - 1) / 2) * attrs["pixel_size_m"]
    np.savez(tmp_path / "ref.npz", obj=v["x"] + 1j * v["w"].sum(0), probe=v["probe"], x=centres[:, 1],
             y=centres[:, 0], w=v["w"])
    script = (
        "import sys, numpy as np; from pathlib import Path as P\n"
        "from ptychodus.api.io import load_product, load_fluorescence_data\n"
        "from ptychodus.plugins.cxi_file import CXIProductFileIO\n"
        "d = P(sys.argv[1]); r = np.load(d / 'ref.npz')\n"
        "for p in (load_product(d / 'p.h5'), CXIProductFileIO().read(d / 'p.cxi')):\n"
        "    assert np.array_equal(p.object_.get_array()[0], r['obj'])\n"
        "    assert np.array_equal(p.probes.get_array().reshape(r['probe'].shape), r['probe'])\n"
        "    assert np.allclose(p.probe_positions.get_coordinates_x_m(), r['x'], rtol=0, atol=1e-15)\n"
        "    assert np.allclose(p.probe_positions.get_coordinates_y_m(), r['y'], rtol=0, atol=1e-15)\n"
        "fl = load_fluorescence_data(d / 'maps.h5')\n"
        "assert np.array_equal(np.stack([e.counts_per_second for e in fl]), r['w'])\n"
        "print('ok', [e.name for e in fl])\n")
    out = subprocess.run([os.environ["MMIP_PTYCHODUS_PYTHON"], "-c", script, str(tmp_path)], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0 and "ok ['phase']" in out.stdout, out.stderr


def test_compressed_names_with_a_missing_filter_are_named(run, tmp_path, capsys):
    """XRF-Maps channel names (a string dataset) compressed with a filter no plugin provides (id 32999, its chunk
    written raw): the message names the filter, as for numeric data, not "truncated or corrupt"."""
    _, result = run
    maps = tmp_path / "maps.h5"
    assert main(["export", str(result), "--format", "xrf-maps", "-o", str(maps)]) == 0
    names = np.array([b"phase"], dtype="S16")
    with h5py.File(maps, "a") as f:
        del f["MAPS/XRF_Analyzed/Fitted/Channel_Names"]
        d = f.create_dataset("MAPS/XRF_Analyzed/Fitted/Channel_Names", shape=(1,), dtype="S16", chunks=(1,),
                             compression=32999, allow_unknown_filter=True)
        d.id.write_direct_chunk((0,), names.tobytes())
    before = maps.read_bytes()
    code = main(["import", "--ptycho", str(DATA / "ptychodus_diffraction.cxi"), "--product",
                 str(DATA / "ptychodus_product.h5"), "--xrf", str(maps), "-o", str(tmp_path / "d.h5")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "Fitted/Channel_Names: compressed with HDF5 filter 32999" in err and "corrupt" not in err
    assert maps.read_bytes() == before and not (tmp_path / "d.h5").exists()
