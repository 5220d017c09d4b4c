"""Band-limited windows at positions moved by the ptychography term's estimator only (issue 33): the model's
sampler follows the positions input (equal to a model built at those positions), the model has no derivatives in
them (a nonzero position tangent is refused, the gradient slot is zeros), and a run that would move them by
gradient steps is refused in one line, while the alternation (``calibration=estimator``) runs."""

from pathlib import Path

import h5py
import numpy as np
import pytest
from mmip_ptychography import PtychographyModel
from mmip_ptychography.scan import raster_positions

from multimodal_ip.cli import main
from multimodal_ip.errors import SolverError

N, NP = 20, 8


def _models(rng):
    """A band-limited model refining positions, its input at moved positions, and a fixed-position band-limited
    model built at those positions."""
    probe = rng.standard_normal((NP, NP)) + 1j * rng.standard_normal((NP, NP))
    nominal = raster_positions(N, NP, step_px=4) + rng.uniform(-0.4, 0.4, (16, 2))
    moved = nominal + rng.uniform(-1.5, 1.5, nominal.shape)
    x, w = rng.standard_normal(N * N), rng.standard_normal(N * N)
    refined = PtychographyModel(probe, nominal, (N, N), 1, refine=("positions",), windows="band-limited")
    fresh = PtychographyModel(probe, moved, (N, N), 1, windows="band-limited")
    return refined, fresh, np.concatenate([x, w, moved.ravel()]), np.concatenate([x, w])


def test_the_sampler_follows_the_positions_input():
    """Forward, tangent in the object and adjoint at moved positions equal a model built there (1e-12)."""
    rng = np.random.default_rng(0)
    refined, fresh, v, main_v = _models(rng)
    assert refined.windows == fresh.windows == "band-limited" and refined.no_derivatives == ("positions",)
    scale = np.abs(fresh.forward(main_v)).max()
    np.testing.assert_allclose(refined.forward(v), fresh.forward(main_v), rtol=0, atol=1e-12 * scale)
    jac, jac_fresh = refined.jacobian(v), fresh.jacobian(main_v)
    dv = np.concatenate([rng.standard_normal(2 * N * N), np.zeros(v.size - 2 * N * N)])
    np.testing.assert_allclose(jac.matvec(dv), jac_fresh.matvec(dv[: 2 * N * N]), rtol=0, atol=1e-12 * scale)
    r = rng.standard_normal(jac.shape[0]) + 1j * rng.standard_normal(jac.shape[0])
    g, g_fresh = jac.rmatvec(r), jac_fresh.rmatvec(r)
    np.testing.assert_allclose(g[: 2 * N * N], g_fresh, rtol=0, atol=1e-12 * np.abs(g_fresh).max())
    assert not np.any(g[2 * N * N:])  # no derivatives in the positions: zeros (a run holds them)


def test_a_position_tangent_is_refused():
    refined, _, v, _ = _models(np.random.default_rng(1))
    dv = np.zeros(v.size)
    dv[-1] = 0.1
    with pytest.raises(SolverError, match="no derivatives in the positions"):
        refined.jacobian(v).matvec(dv)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    path = tmp_path_factory.mktemp("blalt") / "sim.h5"
    assert main(["simulate", "phantom", "-o", str(path), "--n", "32", "--probe-size", "16", "--step", "4",
                 "--position-jitter", "1", "--seed", "1", "--noise", "0.03"]) == 0
    run = path.parent / "bl.toml"
    run.write_text('[term_options.ptychography]\nwindows = "band-limited"\n')
    return path, run


def test_gradient_steps_on_the_positions_are_refused_in_one_line(sim, tmp_path, capsys):
    path, run = sim
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(path), "-o", str(out), "--config", str(run), "--terms", "ptychography",
                 "--refine", "positions", "--refine-after", "2", "--iterations", "4",
                 "--solver-option", "calibration=gradient"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no derivatives in positions" in err and not Path(out).exists()


def test_the_alternation_runs_with_band_limited_windows(sim, tmp_path):
    """``calibration=estimator``: the gradient rounds hold the positions, only the estimates move them."""
    path, run = sim
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(path), "-o", str(out), "--config", str(run), "--terms", "ptychography",
                 "--refine", "positions", "--refine-after", "10", "--iterations", "22", "--dtype", "float64",
                 "--stop", "iterations", "--solver-option", "calibration=estimator", "--solver-option",
                 "calibration_round=10"]) == 0
    with h5py.File(out) as f:
        h = {k: f["results/history"][k][()] for k in ("error_positions", "estimator_iterations")}
    moved = np.flatnonzero(np.diff(h["error_positions"]))  # rows whose positions differ from the row before
    np.testing.assert_array_equal(moved + 1, [11, 22])  # the estimates: after 10 held iterations, then 10 more
    assert np.all(np.isfinite(h["error_positions"])) and h["estimator_iterations"][-1] > 0
