"""A photon scale that is not a finite positive number is refused in one line when the position estimator runs
(it was taken silently for the amplitude misfit)."""

import shutil
from pathlib import Path

import h5py
import pytest

from multimodal_ip.cli import main


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    path = tmp_path_factory.mktemp("offer") / "sim.h5"
    assert main(["simulate", "phantom", "-o", str(path), "--n", "32", "--probe-size", "16", "--step", "4",
                 "--position-jitter", "1", "--seed", "1", "--noise", "0.03"]) == 0
    return path


@pytest.mark.parametrize("value", [-1.0, float("nan"), 0.0])
def test_a_bad_photon_scale_is_refused_in_one_line(sim, tmp_path, capsys, value):
    bad = tmp_path / "bad.h5"
    shutil.copy(sim, bad)
    with h5py.File(bad, "r+") as f:
        f["terms/ptychography"].attrs["photons_per_unit"] = value
    before = bad.read_bytes()
    out = tmp_path / "r.h5"
    code = main(["reconstruct", str(bad), "-o", str(out), "--terms", "ptychography", "--refine", "positions",
                 "--freeze", "x,w", "--start", "truth:x,w", "--iterations", "5", "--dtype", "float64"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "photons_per_unit" in err and "terms/ptychography" in err, err
    assert not Path(out).exists() and bad.read_bytes() == before


@pytest.mark.parametrize("value", [None, float("inf")])
def test_without_a_photon_scale_the_amplitude_misfit_is_used(sim, tmp_path, value):
    """No attribute, or ``inf`` (noise-free data, as ``mmip simulate --noise 0`` writes)."""
    plain = tmp_path / "plain.h5"
    shutil.copy(sim, plain)
    with h5py.File(plain, "r+") as f:
        if value is None:
            del f["terms/ptychography"].attrs["photons_per_unit"]
        else:
            f["terms/ptychography"].attrs["photons_per_unit"] = value
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(plain), "-o", str(out), "--terms", "ptychography", "--refine", "positions",
                 "--freeze", "x,w", "--start", "truth:x,w", "--iterations", "5", "--dtype", "float64"]) == 0
    with h5py.File(out) as f:
        assert "amplitude likelihood" in f["results"].attrs["message"]
