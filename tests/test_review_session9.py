"""Regressions found reviewing session 9's default stop rule (``--stop auto``): ``mmip compare`` keeps the fixed
rule on a file of one term too, and a known-object calibration (every variable frozen) runs its iterations instead
of stopping on held-out values at its start."""

import json

import h5py
import pytest

from multimodal_ip.cli import main
from multimodal_ip.cli.common import resolve_stop
from multimodal_ip.io import load_result, save_dataset


@pytest.fixture(scope="module")
def jittered(tmp_path_factory):
    """A small phantom (n = 32, Np = 16, step 4) with 0.5 px position jitter, 2 % noise; and the same with the
    ptychography term alone."""
    from mmip_paper import simulate

    folder = tmp_path_factory.mktemp("review9")
    both, one = folder / "d.h5", folder / "one.h5"
    data = simulate("phantom", seed=0, noise=0.02, n=32, probe_size=16, step=4, position_jitter_px=0.5)
    save_dataset(both, data)
    save_dataset(one, data)
    with h5py.File(one, "a") as f:
        del f["terms/fluorescence"]
    return both, one


def _errors(folder):
    rows = json.loads((folder / "errors.json").read_text())
    return {m: {k: v for k, v in r.items() if k != "time_s"} for m, r in rows.items()}


def test_compare_of_one_term_runs_its_iterations(jittered, tmp_path):
    """``mmip compare`` without ``--stop`` is ``--stop iterations`` on a one-term file (it held 10 % out, as
    ``--stop auto`` would)."""
    _, one = jittered
    for name, flags in (("default", []), ("fixed", ["--stop", "iterations"])):
        assert main(["compare", str(one), "-o", str(tmp_path / name), "--iterations", "15", *flags]) == 0
    assert _errors(tmp_path / "default") == _errors(tmp_path / "fixed")


def test_known_object_calibration_runs_its_iterations(jittered, tmp_path):
    """``--freeze x,w``: the default rule runs the iterations (validation stopped at the start and returned the
    file's positions), the same result as ``--stop iterations``."""
    both, _ = jittered
    flags = ["--terms", "ptychography", "--refine", "positions,probe", "--freeze", "x,w", "--start", "truth:x,w",
             "--iterations", "20", "--checkpoint-every", "0"]
    out = {}
    for name, extra in (("default", []), ("fixed", ["--stop", "iterations"])):
        assert main(["reconstruct", str(both), "-o", str(tmp_path / f"{name}.h5"), *flags, *extra]) == 0
        out[name] = load_result(tmp_path / f"{name}.h5")
    cfg = out["default"]["config"]
    assert cfg["stopping"]["rule"] == "iterations"
    assert "frozen" in cfg["stop_auto"]
    assert "validation_run" not in cfg
    assert len(out["default"]["history"]["iteration"]) == 21
    assert out["default"]["history"]["error_positions"][-1] == out["fixed"]["history"]["error_positions"][-1]
    assert out["default"]["history"]["error_positions"][-1] < 0.8 * out["default"]["history"]["error_positions"][0]


def test_resolve_stop_with_a_free_variable_still_holds_out(jittered):
    """Freezing a part of the object leaves the one-term default on validation."""
    both, _ = jittered
    cfg = {"stopping": {}, "iterations": 40, "freeze": ["x"]}
    why = resolve_stop(both, cfg, ["ptychography"])
    assert cfg["stopping"]["rule"] == "validation", why
    cfg = {"stopping": {}, "iterations": 40, "freeze": ["w", "x"]}
    assert resolve_stop(both, cfg, ["ptychography"]).startswith("auto: iterations (w, x frozen")
    cfg = {"stopping": {}, "iterations": 40, "solver_options": {"calibration": "estimator"}}
    assert resolve_stop(both, cfg, ["ptychography"]).startswith("auto: iterations (calibration=estimator")
    assert cfg["stopping"]["rule"] == "iterations"


def test_estimator_alternation_runs_under_the_default_stop(jittered, tmp_path):
    """``calibration=estimator`` with the object moving and no ``--stop``: the default runs its iterations (it was
    refused for ``--stop validation``, a flag the user never typed)."""
    both, _ = jittered
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(both), "-o", str(out), "--terms", "ptychography", "--refine", "positions",
                 "--iterations", "14", "--checkpoint-every", "0", "--solver-option", "calibration=estimator",
                 "--solver-option", "calibration_round=4"]) == 0
    assert "estimator_iterations" in load_result(out)["history"]


def test_curvature_preconditioner_with_estimated_band_limited_positions(jittered, tmp_path):
    """``precondition=auto`` where the positions are moved by the term's estimator through band-limited windows (no
    derivatives in them): the curvature offer leaves the held positions out (was an AttributeError, exit 1)."""
    both, _ = jittered
    run_file = tmp_path / "run.toml"
    run_file.write_text('[term_options.ptychography]\nwindows = "band-limited"\n')
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(both), "-o", str(out), "--config", str(run_file), "--terms", "ptychography",
                 "--refine", "positions", "--iterations", "8", "--stop", "iterations", "--checkpoint-every", "0",
                 "--solver-option", "calibration=estimator", "--solver-option", "precondition=auto",
                 "--solver-option", "calibration_round=3"]) == 0
    history = load_result(out)["history"]
    assert "estimator_iterations" in history
    assert history["objective"][-1] < history["objective"][0]


@pytest.mark.parametrize(("bound", "how"), [("1.5", "posterior mean"), ("6", "per-position Levenberg-Marquardt")])
def test_the_posterior_mean_only_within_its_radius(jittered, tmp_path, bound, how):
    """The known-object estimate takes the posterior mean within ``MEAN_RADIUS_PX`` of the file's positions; a wider
    ``--refine-bound`` takes the whole-pixel search (the posterior's grid grows with the radius squared)."""
    both, _ = jittered
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(both), "-o", str(out), "--terms", "ptychography", "--refine", "positions",
                 "--freeze", "x,w", "--start", "truth:x,w", "--iterations", "10", "--refine-bound",
                 f"positions={bound}", "--dtype", "float64"]) == 0
    with h5py.File(out) as f:
        assert f["results"].attrs["message"].startswith(f"positions by {how}"), f["results"].attrs["message"]
