"""Facility files as the tools people use write them (issue 30): CXI translations as probe centres, probes and
patterns at their CXI places, XRF-Maps v9/v10 layouts, ``--ptycho`` alone, compressed detector data."""

import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
from mmip_fluorescence.maps import export_maps
from mmip_paper import simulate
from mmip_ptychography.cxi import HC_J_M, Frame, export_cxi

from multimodal_ip import solve
from multimodal_ip.cli import main
from multimodal_ip.io import build_problem, load_dataset

PIXEL = 10e-9
NPX = 16
ENERGY_J = 8.8 * 1.602176634e-16
DISTANCE_M = 2.0
STAGE_M = np.array([-3.2e-6, 1.7e-6])  # (y, x) of object pixel (0, 0) on the stage: not the origin


@pytest.fixture(scope="module")
def native():
    """48 x 48 phantom, 16 px probe, 5 x 5 scan; XRF measured at the scan points (an interior raster)."""
    return simulate("phantom", seed=4, noise=0.03, n=48, probe_size=NPX, step=8, xrf_grid="scan")


def _error(ds, truth, iterations=8):
    problem = build_problem(ds)
    res = solve(problem, problem.space.full(1.0), "lbfgs", maxiter=iterations)
    t = problem.space.pack(truth)
    return np.linalg.norm(res.x - t) / np.linalg.norm(t)


def _write_cxi(path, ds, shift_px=0.0, probe_modes=1, data_key="entry_1/instrument_1/detector_1/data",
               probe_key="entry_1/instrument_1/source_1/illumination", compression=None, counts=None):
    """A CXI file written with plain h5py, as ptychodus lays it out: translations (x, y, z) of the probe's centre
    (pixel (Np - 1)/2 of the window) in stage metres, shifted by ``shift_px`` object pixels."""
    term = ds.terms["ptychography"]
    data = np.asarray(term.arrays["data"]) if counts is None else counts
    centres = np.asarray(term.arrays["positions"], float) + (NPX - 1) / 2 + shift_px
    yx = STAGE_M + centres * PIXEL
    det_pix = HC_J_M / ENERGY_J * DISTANCE_M / (NPX * PIXEL)
    probe = np.asarray(term.arrays["probe"])
    modes = np.stack([probe] + [0.1 * probe.conj()] * (probe_modes - 1))
    with h5py.File(path, "w") as f:
        f["cxi_version"] = 160
        f.create_dataset(data_key, data=data, compression=compression, chunks=(1, NPX, NPX) if compression else None)
        f["entry_1/instrument_1/source_1/energy"] = ENERGY_J
        f["entry_1/instrument_1/detector_1/distance"] = DISTANCE_M
        f["entry_1/instrument_1/detector_1/x_pixel_size"] = det_pix
        f["entry_1/instrument_1/detector_1/y_pixel_size"] = det_pix
        f["entry_1/sample_1/geometry_1/translation"] = np.stack([yx[:, 1], yx[:, 0], np.zeros(len(yx))], axis=1)
        f[probe_key] = modes if probe_modes > 1 or probe_key != "entry_1/instrument_1/source_1/probe" else probe
    return path


def _write_maps(path, ds, layout="v10-nnls"):
    """XRF-Maps file with plain h5py: beam positions (the probe centres) in um on the same stage."""
    term = ds.terms["fluorescence"]
    rows, cols = (int(v) for v in term.attrs["grid_shape"])
    centres = np.asarray(term.arrays["positions"], float) + (NPX - 1) / 2
    yx = (STAGE_M + centres * PIXEL) / 1e-6
    counts = np.asarray(term.arrays["data"]).reshape(-1, rows, cols)
    names = np.array([str(e) for e in term.attrs["elements"]], dtype="S256")
    maps, names_key, axes = {
        "v10-nnls": ("MAPS/XRF_Analyzed/NNLS/Counts_Per_Sec", "MAPS/XRF_Analyzed/NNLS/Channel_Names", "MAPS/Scan"),
        "v10-fitted": ("MAPS/XRF_Analyzed/Fitted/Counts_Per_Sec", "MAPS/XRF_Analyzed/Fitted/Channel_Names",
                       "MAPS/Scan"),
        "v10-fitted-v9-names": ("MAPS/XRF_Analyzed/Fitted/Counts_Per_Sec", "MAPS/channel_names", "MAPS/Scan"),
        "v9": ("MAPS/XRF_fits", "MAPS/channel_names", "MAPS"),
    }[layout]
    with h5py.File(path, "w") as f:
        f[maps] = counts
        f[names_key] = names
        f[f"{axes}/y_axis"] = yx[:, 0].reshape(rows, cols)[:, 0]
        f[f"{axes}/x_axis"] = yx[:, 1].reshape(rows, cols)[0, :]
    return path


def _import(tmp_path, cxi, maps=None, *extra):
    out = tmp_path / "d.h5"
    argv = ["import", "--ptycho", str(cxi), *(["--xrf", str(maps)] if maps else []), *extra, "-o", str(out)]
    return main(argv), out


def test_centre_referenced_cxi_reconstructs_to_the_native_error(native, tmp_path, capsys):
    """The acceptance fixture: ptychodus's layout (patterns at detector_1/data, a two-mode probe at
    source_1/illumination, centre translations on a stage offset), an interior XRF raster (XRF-Maps v10 NNLS):
    registered exactly as the native file, and the same error after a few iterations."""
    cxi = _write_cxi(tmp_path / "scan.cxi", native, probe_modes=2)
    maps = _write_maps(tmp_path / "maps.h5", native)
    code, out = _import(tmp_path, cxi, maps)
    err = capsys.readouterr().err
    assert code == 0, err
    assert "a probe of 2 modes; using the first" in err and len(err.strip().splitlines()) == 1
    back = load_dataset(out)
    for name in ("ptychography", "fluorescence"):
        np.testing.assert_allclose(back.terms[name].arrays["positions"], native.terms[name].arrays["positions"],
                                   atol=1e-9)
    np.testing.assert_array_equal(back.terms["ptychography"].arrays["probe"],
                                  native.terms["ptychography"].arrays["probe"])
    np.testing.assert_allclose(back.attrs["origin_m"], STAGE_M, rtol=1e-12)
    assert back.terms["fluorescence"].attrs["elements"] == list(native.terms["fluorescence"].attrs["elements"])
    assert _error(back, native.truth) == pytest.approx(_error(native, native.truth), rel=1e-6)


def test_half_window_shift_is_refused_or_registered(native, tmp_path, capsys):
    """Translations shifted by half a window (the corner reference) never import misregistered: read as centres
    the XRF raster falls half a pixel off the object pixels (refused); said to be corners, they register exactly."""
    maps = _write_maps(tmp_path / "maps.h5", native)
    shifted = _write_cxi(tmp_path / "corner.cxi", native, shift_px=-(NPX - 1) / 2)
    code, out = _import(tmp_path, shifted, maps)
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "half a pixel off" in err and "--cxi-positions" in err and len(err.strip().splitlines()) == 1
    code, out = _import(tmp_path, shifted, maps, "--cxi-positions", "corner")
    assert code == 0, capsys.readouterr().err
    back = load_dataset(out)
    for name in ("ptychography", "fluorescence"):
        np.testing.assert_allclose(back.terms[name].arrays["positions"], native.terms[name].arrays["positions"],
                                   atol=1e-9)


def test_old_mmip_exports_and_contradictions_are_refused(native, tmp_path, capsys):
    """An mmip export of the old layout (probe at source_1/probe, corners, no declaration) needs the option; an
    option that contradicts the file's declaration is refused; our export declares centre and round-trips."""
    old = _write_cxi(tmp_path / "old.cxi", native, shift_px=-(NPX - 1) / 2, data_key="entry_1/data_1/data",
                     probe_key="entry_1/instrument_1/source_1/probe")
    code, out = _import(tmp_path, old)
    assert code == 2 and not out.exists()
    assert "pass --cxi-positions corner" in capsys.readouterr().err
    assert _import(tmp_path, old, None, "--cxi-positions", "corner")[0] == 0
    ours = tmp_path / "ours.cxi"
    export_cxi(ours, native.terms["ptychography"], PIXEL)
    with h5py.File(ours) as f:
        assert f["entry_1/sample_1/geometry_1/translation"].attrs["position_reference"] == "centre"
        assert f["entry_1/instrument_1/source_1/illumination"].shape == (1, NPX, NPX)
        assert "entry_1/instrument_1/source_1/probe" not in f
    code, out = _import(tmp_path, ours, None, "--cxi-positions", "corner")
    assert code == 2 and "declares position_reference = 'centre'" in capsys.readouterr().err
    code, out = _import(tmp_path, ours)
    assert code == 0
    np.testing.assert_allclose(load_dataset(out).terms["ptychography"].arrays["positions"],
                               native.terms["ptychography"].arrays["positions"], atol=1e-9)


def test_ptycho_alone_imports_and_reconstructs(native, tmp_path, capsys):
    """``--ptycho`` alone: one phase map w (1, n, n) (was exit 2, "no term determines variable 'w'")."""
    ours = tmp_path / "ours.cxi"
    export_cxi(ours, native.terms["ptychography"], PIXEL)
    code, out = _import(tmp_path, ours)
    assert code == 0, capsys.readouterr().err
    back = load_dataset(out)
    assert {v.name: v.shape for v in back.variables} == {"x": (48, 48), "w": (1, 48, 48)}
    problem = build_problem(back)
    res = solve(problem, problem.space.full(1.0), "lbfgs", maxiter=3)
    assert np.isfinite(res.x).all()
    # with XRF, w comes from the maps (Ne of the XRF file), not from the ptychography term
    export_maps(tmp_path / "m.h5", native.terms["fluorescence"], Frame(PIXEL, (0.0, 0.0), (48, 48)))
    code, out = _import(tmp_path, ours, tmp_path / "m.h5")
    assert code == 0
    back = load_dataset(out)
    assert "elements" not in back.terms["ptychography"].attrs


@pytest.mark.parametrize("layout", ["v10-nnls", "v10-fitted", "v10-fitted-v9-names", "v9"])
def test_xrf_maps_layouts_import_alike(native, tmp_path, layout):
    cxi = _write_cxi(tmp_path / "scan.cxi", native)
    code, out = _import(tmp_path, cxi, _write_maps(tmp_path / "maps.h5", native, layout))
    assert code == 0
    term = load_dataset(out).terms["fluorescence"]
    np.testing.assert_array_equal(term.arrays["data"], native.terms["fluorescence"].arrays["data"])
    np.testing.assert_allclose(term.arrays["positions"], native.terms["fluorescence"].arrays["positions"], atol=1e-9)
    assert term.attrs["elements"] == list(native.terms["fluorescence"].attrs["elements"])


def test_maps_export_is_a_consistent_v10_layout(native, tmp_path):
    export_maps(tmp_path / "m.h5", native.terms["fluorescence"], Frame(PIXEL, (0.0, 0.0), (48, 48)))
    with h5py.File(tmp_path / "m.h5") as f:
        assert f["MAPS/XRF_Analyzed/Fitted/Counts_Per_Sec"].shape == (1, 5, 5)
        assert [n.decode() for n in f["MAPS/XRF_Analyzed/Fitted/Channel_Names"][()]] == ["E0"]
        assert f["MAPS/Scan/x_axis"].shape == (5,) and f["MAPS/Scan/y_axis"].shape == (5,)
        assert "MAPS/channel_names" not in f and "MAPS/x_axis" not in f


def _compressors():
    hdf5plugin = pytest.importorskip("hdf5plugin")
    return {"bitshuffle-lz4": hdf5plugin.Bitshuffle(cname="lz4"), "blosc": hdf5plugin.Blosc(),
            "zstd": hdf5plugin.Zstd()}


@pytest.mark.parametrize("codec", ["bitshuffle-lz4", "blosc", "zstd"])
def test_compressed_counts_import_and_reconstruct_bit_identically(native, tmp_path, codec):
    """An Eiger-like detector's uint32 counts, compressed as facilities write them: the same dataset and the same
    reconstruction, bit for bit, as uncompressed (hdf5plugin registered before the first read)."""
    counts = np.rint(np.asarray(native.terms["ptychography"].arrays["data"]) * 50).astype(np.uint32)
    maps = _write_maps(tmp_path / "maps.h5", native)
    results = []
    for name, compression in (("plain", None), (codec, _compressors()[codec])):
        cxi = _write_cxi(tmp_path / f"{name}.cxi", native, counts=counts, compression=compression)
        out = tmp_path / f"{name}.h5"
        assert main(["import", "--ptycho", str(cxi), "--xrf", str(maps), "-o", str(out)]) == 0
        ds = load_dataset(out)
        problem = build_problem(ds)
        results.append((ds.terms["ptychography"].arrays["data"], solve(problem, problem.space.full(1.0), "lbfgs",
                                                                        maxiter=3).x))
    with h5py.File(tmp_path / f"{codec}.cxi") as f:
        assert f["entry_1/instrument_1/detector_1/data"].id.get_create_plist().get_nfilters() >= 1
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_missing_filter_is_named(native, tmp_path, capsys):
    """Without the filter (here: bitshuffle unregistered), one line naming its id, its name and the package, exit 2
    (was "can't open directory ... the file may be truncated or corrupt")."""
    hdf5plugin = pytest.importorskip("hdf5plugin")
    cxi = _write_cxi(tmp_path / "b.cxi", native, compression=_compressors()["bitshuffle-lz4"])
    h5py.h5z.unregister_filter(32008)
    try:
        code, out = _import(tmp_path, cxi)
    finally:
        hdf5plugin.register("bshuf", force=True)
    err = capsys.readouterr().err
    assert code == 2 and not out.exists() and len(err.strip().splitlines()) == 1
    assert "detector_1/data: compressed with HDF5 filter 32008 (bitshuffle)" in err and "hdf5plugin" in err
    assert _import(tmp_path, cxi)[0] == 0  # registered again: reads


DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize("product", ["ptychodus_product.cxi", "ptychodus_product.h5"])
def test_ptychodus_written_files_reconstruct_to_the_native_error(tmp_path, capsys, product):
    """Files written by ptychodus 1.7's own writers (tests/fixtures/make_ptychodus_files.py): its CXI diffraction
    file (lzf-compressed detector_1/data, no positions) with its product (CXI: image_1/data probe (1, 1, Np, Np),
    translations; .h5: probe_position_x_m/y_m): same positions, probe and error as the native file."""
    native = load_dataset(DATA / "ptychodus_native.h5")
    maps = _write_maps(tmp_path / "maps.h5", native)  # ptychodus's XRF writer writes no beam positions
    code, out = _import(tmp_path, DATA / "ptychodus_diffraction.cxi", maps, "--product", str(DATA / product))
    assert code == 0, capsys.readouterr().err
    back = load_dataset(out)
    for name in ("ptychography", "fluorescence"):
        np.testing.assert_allclose(back.terms[name].arrays["positions"], native.terms[name].arrays["positions"],
                                   atol=1e-6)
    np.testing.assert_array_equal(back.terms["ptychography"].arrays["probe"],
                                  native.terms["ptychography"].arrays["probe"])
    np.testing.assert_array_equal(back.terms["ptychography"].arrays["data"],
                                  native.terms["ptychography"].arrays["data"])
    assert _error(back, native.truth) == pytest.approx(_error(native, native.truth), rel=1e-6)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ptycho", "ptychodus_product.cxi"], "no diffraction patterns"),
        (["--ptycho", "ptychodus_diffraction.cxi"], "give its product, .cxi or .h5, with --product"),
        (["--ptycho", "ptychodus_diffraction.cxi", "--product", "ptychodus_product.h5", "--xrf", "ptychodus_xrf.h5"],
         "MAPS/Scan/x_axis: missing"),
    ],
)
def test_ptychodus_files_alone_say_what_is_missing(tmp_path, capsys, argv, message):
    argv = [a if a.startswith("--") else str(DATA / a) for a in argv]
    assert main(["import", *argv, "-o", str(tmp_path / "d.h5")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d.h5").exists()


def test_product_is_an_input_never_overwritten(tmp_path, capsys):
    product = tmp_path / "p.h5"
    product.write_bytes((DATA / "ptychodus_product.h5").read_bytes())
    before = product.read_bytes()
    code = main(["import", "--ptycho", str(DATA / "ptychodus_diffraction.cxi"), "--product", str(product), "-o",
                 str(product)])
    assert code == 2 and product.read_bytes() == before


@pytest.mark.skipif(not os.environ.get("MMIP_PTYCHODUS_PYTHON"), reason="MMIP_PTYCHODUS_PYTHON: a ptychodus venv")
def test_ptychodus_reads_our_exports(native, tmp_path):
    """Round trip into ptychodus's own API (its CXI diffraction reader, its XRF-Maps reader): the same arrays."""
    export_cxi(tmp_path / "ours.cxi", native.terms["ptychography"], PIXEL)
    export_maps(tmp_path / "maps.h5", native.terms["fluorescence"], Frame(PIXEL, (0.0, 0.0), (48, 48)))
    np.save(tmp_path / "data.npy", native.terms["ptychography"].arrays["data"])
    np.save(tmp_path / "xrf.npy", native.terms["fluorescence"].arrays["data"])
    script = (
        "import sys, numpy as np; from pathlib import Path as P\n"
        "from ptychodus.plugins.cxi_file import CXIDiffractionFileReader\n"
        "from ptychodus.api.io import load_fluorescence_data\n"
        "d = P(sys.argv[1]); ds = CXIDiffractionFileReader().read(d / 'ours.cxi')\n"
        "assert np.array_equal(np.concatenate([a.get_patterns() for a in ds]), np.load(d / 'data.npy'))\n"
        "fl = load_fluorescence_data(d / 'maps.h5'); x = np.load(d / 'xrf.npy')\n"
        "assert np.array_equal(np.stack([e.counts_per_second for e in fl]).reshape(x.shape), x)\n"
        "print('ok', [e.name for e in fl])\n")
    out = subprocess.run([os.environ["MMIP_PTYCHODUS_PYTHON"], "-c", script, str(tmp_path)], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0 and "ok ['E0']" in out.stdout, out.stderr


@pytest.mark.parametrize("suffix", [".cxi", ".h5"])
def test_our_product_export_imports_with_the_diffraction_file(tmp_path, suffix):
    """A reconstruction (object, probe, positions) exported as a ptychodus product pairs with ptychodus's
    diffraction file: the positions and probe come back."""
    from mmip_ptychography.product import export_product

    native = load_dataset(DATA / "ptychodus_native.h5")
    term = native.terms["ptychography"]
    product = tmp_path / f"ours{suffix}"
    obj = native.truth["x"] + 1j * native.truth["w"].sum(axis=0)
    export_product(product, obj, term.arrays["probe"], term.arrays["positions"], PIXEL, origin_m=STAGE_M)
    code, out = _import(tmp_path, DATA / "ptychodus_diffraction.cxi", None, "--product", str(product))
    assert code == 0
    back = load_dataset(out).terms["ptychography"]
    np.testing.assert_allclose(back.arrays["positions"], term.arrays["positions"], atol=1e-6)
    np.testing.assert_array_equal(back.arrays["probe"], term.arrays["probe"])


@pytest.mark.skipif(not os.environ.get("MMIP_PTYCHODUS_PYTHON"), reason="MMIP_PTYCHODUS_PYTHON: a ptychodus venv")
def test_ptychodus_reads_our_products(tmp_path):
    """ptychodus's own product readers (``load_product``, ``CXIProductFileIO.read``) on our exports: equal object,
    probe and positions (probe centres in metres)."""
    from mmip_ptychography.product import export_product

    native = load_dataset(DATA / "ptychodus_native.h5")
    term = native.terms["ptychography"]
    obj = native.truth["x"] + 1j * native.truth["w"].sum(axis=0)
    for suffix in (".cxi", ".h5"):
        export_product(tmp_path / f"ours{suffix}", obj, term.arrays["probe"], term.arrays["positions"], PIXEL,
                       origin_m=STAGE_M)
    centres = STAGE_M + (np.asarray(term.arrays["positions"]) + (NPX - 1) / 2) * PIXEL
    np.savez(tmp_path / "ref.npz", obj=obj, probe=term.arrays["probe"], x=centres[:, 1], y=centres[:, 0])
    script = (
        "import sys, numpy as np; from pathlib import Path as P\n"
        "from ptychodus.api.io import load_product\n"
        "from ptychodus.plugins.cxi_file import CXIProductFileIO\n"
        "d = P(sys.argv[1]); r = np.load(d / 'ref.npz')\n"
        "for p in (load_product(d / 'ours.h5'), CXIProductFileIO().read(d / 'ours.cxi')):\n"
        "    assert np.array_equal(p.object_.get_array()[0], r['obj'])\n"
        "    assert np.array_equal(p.probes.get_array().reshape(r['probe'].shape), r['probe'])\n"
        "    assert np.array_equal(p.probe_positions.get_coordinates_x_m(), r['x'])\n"
        "    assert np.array_equal(p.probe_positions.get_coordinates_y_m(), r['y'])\n"
        "print('ok')\n")
    out = subprocess.run([os.environ["MMIP_PTYCHODUS_PYTHON"], "-c", script, str(tmp_path)], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_bad_pixel_mask_is_not_silently_dropped(tmp_path, capsys):
    diffraction = tmp_path / "d.cxi"
    diffraction.write_bytes((DATA / "ptychodus_diffraction.cxi").read_bytes())
    with h5py.File(diffraction, "a") as f:
        f["entry_1/instrument_1/detector_1/mask"][0, :3] = 1
    code, _ = _import(tmp_path, diffraction, None, "--product", str(DATA / "ptychodus_product.h5"))
    err = capsys.readouterr().err
    assert code == 0 and "detector_1/mask: 3 bad detector pixel(s) marked" in err
