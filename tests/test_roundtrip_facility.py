"""Export -> import of our own result in the facility formats: ``mmip export --format cxi`` (the product) and
``--format xrf-maps``, read back together by ``mmip import --ptycho DIFFRACTION --product D.cxi --xrf M.h5``, give
the result's positions and maps on the same object grid, in metres too (a non-square grid, a non-zero origin, an
even probe window, where the maps' object pixels and the beam windows' corners differ by half a pixel)."""

import h5py
import numpy as np
import pytest

from multimodal_ip.cli import main
from multimodal_ip.io import TermData, load_result

PIXEL_M, ORIGIN_M = 2e-8, (1.5e-6, -2.25e-6)
NP, STEP, GRID = 16, 6, (2, 3)  # object (22, 28)
TOL_PX = 1e-6  # positions and origin, in object pixels (metres go through the CXI geometry's float rounding)


def _data_file(path):
    """A joint dataset written with plain h5py (ptychography + XRF at the scan positions, kernel |P|^2) with the
    object frame's root attributes, and the CXI diffraction file of its patterns (what a facility writes)."""
    from mmip_ptychography import fresnel_zone_plate_probe, ptychography_operator, raster_positions
    from mmip_ptychography.cxi import export_cxi

    shape = tuple((g - 1) * STEP + NP for g in GRID)
    pos = raster_positions(max(shape), NP, step_px=STEP, grid=GRID).astype(float)
    probe = fresnel_zone_plate_probe(NP)
    rng = np.random.default_rng(0)
    x, w = 1 + 0.1 * rng.random(shape), 0.1 * rng.random((1, *shape))
    op = ptychography_operator(probe, pos, shape, 1)
    state = op.stream_prepare(np.concatenate([x.ravel(), w.ravel()]))
    intens = np.empty(op.dimsd)
    for rows in op.blocks():
        intens[rows] = np.abs(op.stream_forward(state, rows)) ** 2
    kernel = np.abs(probe) ** 2
    counts = np.array([[np.sum(kernel * w[0, r : r + NP, c : c + NP]) for r, c in pos.astype(int)]])
    with h5py.File(path, "w") as f:
        f.attrs.update({"format": "multimodal_ip", "format_version": 1, "pixel_size_m": PIXEL_M,
                        "origin_m": np.array(ORIGIN_M)})
        g = f.create_group("terms/ptychography")
        g.attrs["modality"] = "ptychography"
        g.update({"data": intens, "probe": probe, "positions": pos})
        g = f.create_group("terms/fluorescence")
        g.attrs["modality"] = "fluorescence"
        g.attrs["elements"] = np.array(["Fe"], dtype=h5py.string_dtype())
        g.update({"data": counts, "kernel": kernel, "positions": pos})
    diffraction = path.with_suffix(".cxi")
    export_cxi(diffraction, TermData("p", "ptychography", {"data": intens, "probe": probe, "positions": pos}, {}),
               PIXEL_M, origin_m=ORIGIN_M)
    return pos, diffraction


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``(folder, positions, diffraction file, result's w)`` after reconstruct, export cxi and export xrf-maps."""
    folder = tmp_path_factory.mktemp("roundtrip")
    data = folder / "F.h5"
    pos, diffraction = _data_file(data)
    assert main(["reconstruct", str(data), "-o", str(folder / "R.h5"), "--iterations", "1"]) == 0
    for fmt, name in (("cxi", "D.cxi"), ("xrf-maps", "M.h5")):
        assert main(["export", str(folder / "R.h5"), "--format", fmt, "-o", str(folder / name)]) == 0
    w = load_result(folder / "R.h5")["variables"]["w"]
    assert w.shape == (1, 22, 28)  # the non-square grid the test is about
    return folder, pos, diffraction, w


def test_export_import_gives_back_positions_and_maps(exported):
    folder, pos, diffraction, w = exported
    out = folder / "I.h5"
    assert main(["import", "--ptycho", str(diffraction), "--product", str(folder / "D.cxi"), "--xrf",
                 str(folder / "M.h5"), "-o", str(out)]) == 0
    with h5py.File(out) as f:
        pixel, origin = float(f.attrs["pixel_size_m"]), np.asarray(f.attrs["origin_m"])
        ptycho = f["terms/ptychography/positions"][()]
        maps, kernel = f["terms/fluorescence/data"][()], f["terms/fluorescence/kernel"][()]
        corners, grid = f["terms/fluorescence/positions"][()], f["terms/fluorescence"].attrs["grid_shape"]
    assert abs(pixel / PIXEL_M - 1) < 1e-9
    np.testing.assert_allclose((origin - ORIGIN_M) / PIXEL_M, 0, atol=TOL_PX)
    np.testing.assert_allclose(ptycho, pos, atol=TOL_PX)  # the same scan, top-left object pixels
    # the maps: one value per object pixel (1 x 1 kernel), on the result's grid, at the same metres
    assert kernel.shape == (1, 1) and tuple(grid) == w.shape[1:]
    every = np.stack(np.meshgrid(*map(np.arange, w.shape[1:]), indexing="ij"), axis=-1).reshape(-1, 2)
    np.testing.assert_array_equal(corners, every)
    np.testing.assert_allclose(origin + corners * pixel, np.asarray(ORIGIN_M) + every * PIXEL_M,
                               atol=TOL_PX * PIXEL_M, rtol=0)
    np.testing.assert_allclose(maps, w.reshape(1, -1), rtol=1e-12)


def test_maps_without_their_kernel_attribute_are_refused_by_name(exported, capsys):
    """Object-pixel maps that do not say so (an export before the ``kernel`` attribute) read as beam counts fall
    half a pixel off every even beam window: one line naming file, datasets, expected and got; exit 2."""
    folder, _, diffraction, _ = exported
    old = folder / "M_old.h5"
    old.write_bytes((folder / "M.h5").read_bytes())
    with h5py.File(old, "a") as f:
        del f["MAPS/XRF_Analyzed/Fitted/Counts_Per_Sec"].attrs["kernel"]
    before = old.read_bytes()
    assert main(["import", "--ptycho", str(diffraction), "--xrf", str(old), "-o", str(folder / "I_old.h5")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"{old}:/MAPS/Scan/y_axis, /MAPS/Scan/x_axis: " in err
    assert "expected whole pixels, got (-7.5, -7.5)" in err and 'kernel = "pixel"' in err
    assert old.read_bytes() == before and not (folder / "I_old.h5").exists()


def test_a_kernel_attribute_of_another_value_is_refused(exported, capsys):
    folder, _, diffraction, _ = exported
    bad = folder / "M_bad.h5"
    bad.write_bytes((folder / "M.h5").read_bytes())
    with h5py.File(bad, "a") as f:
        f["MAPS/XRF_Analyzed/Fitted/Counts_Per_Sec"].attrs["kernel"] = "point"
    assert main(["import", "--ptycho", str(diffraction), "--xrf", str(bad), "-o", str(folder / "I_bad.h5")]) == 2
    err = capsys.readouterr().err
    assert (f"{bad}:/MAPS/XRF_Analyzed/Fitted/Counts_Per_Sec: attribute kernel: expected \"pixel\" or \"beam\", "
            "got 'point'") in err
