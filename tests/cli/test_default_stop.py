"""``mmip reconstruct``'s default run (issue 34): ``--stop auto`` stops one data term on held-out validation (2 %)
and continues on all the data from the best iterate; joint runs, short runs and tiny files run their iterations;
``--stop iterations`` is the plain run; the ptychography term's ``windows = "auto"`` is band-limited for fixed
fractional positions and the plain windows (bit for bit the cubic option's) on the raster."""

import numpy as np
import pytest

from multimodal_ip.cli import main
from multimodal_ip.io import load_result, save_dataset


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small phantom (n = 48, Np = 16, step 8: 25 patterns of 256 values), ptychography + XRF, 10 % noise."""
    from mmip_paper import simulate

    path = tmp_path_factory.mktemp("default_stop") / "small.h5"
    save_dataset(path, simulate("phantom", seed=1, noise=0.1, n=48, probe_size=16, step=8))
    return path


def _run(path, out, *flags):
    assert main(["reconstruct", str(path), "-o", str(out), "--checkpoint-every", "0", *flags]) == 0
    return load_result(out)


def test_default_stops_on_validation_and_refits(small, tmp_path):
    """A small file (128 values at 2 %, under ``AUTO_MIN_HELD_OUT``): 10 % held out, the refit from the start."""
    r = _run(small, tmp_path / "d.h5", "--terms", "ptychography", "--iterations", "40")
    cfg = r["config"]
    assert cfg["stopping"]["rule"] == "validation" and cfg["stopping"]["fraction"] == 0.1
    assert cfg["stop_auto"].startswith("auto: validation (one data term of 6400 values, 0.1 held out")
    held = cfg["validation_run"]
    assert 1 <= held["returned_iteration"] <= held["iterations"] <= 40
    assert cfg["refit"]["iterations"] == held["returned_iteration"] and cfg["stopping"]["refit_from"] == "start"
    assert len(r["history"]["iteration"]) == held["returned_iteration"] + 1  # the refit's own history
    assert "validation_total" not in r["history"]  # the refit holds nothing out


@pytest.mark.parametrize(("values", "fraction", "refit_from"), [(50_000, 0.02, "best"), (49_999, 0.1, "start")])
def test_auto_holds_two_percent_out_of_a_large_term_and_continues_from_the_best(small, monkeypatch, values, fraction,
                                                                              refit_from):
    """From ``AUTO_MIN_HELD_OUT`` (1000) values at 2 % on (the paper's 409 600-value cases): 2 % and the continuation
    from the best iterate; the run's own settings win."""
    import multimodal_ip.cli.common as common
    from multimodal_ip.validation import AUTO_MIN_HELD_OUT

    assert 50_000 * 0.02 == AUTO_MIN_HELD_OUT
    monkeypatch.setattr(common, "_measured_values", lambda *a: ({"ptychography": values}, ["x", "w"]))
    cfg = {"stopping": {}, "iterations": 100, "terms": None}
    assert common.resolve_stop(str(small), cfg).startswith(f"auto: validation (one data term of {values} values, "
                                                           f"{fraction:g} held out")
    assert (cfg["stopping"]["fraction"], cfg["stopping"]["refit_from"]) == (fraction, refit_from)
    cfg = {"stopping": {"fraction": 0.05, "refit_from": "start"}, "iterations": 100, "terms": None}
    common.resolve_stop(str(small), cfg)
    assert (cfg["stopping"]["fraction"], cfg["stopping"]["refit_from"]) == (0.05, "start")


def test_refit_from_best_continues_from_the_best_iterate(small, tmp_path):
    """``--validation-fraction 0.02 --refit-from best``: on all the data from the held-out run's best iterate."""
    from multimodal_ip.cli.reconstruct import continue_iterations

    r = _run(small, tmp_path / "b.h5", "--terms", "ptychography", "--iterations", "40", "--validation-fraction",
             "0.02", "--refit-from", "best")
    cfg = r["config"]
    held = cfg["validation_run"]
    best = held["returned_iteration"]
    assert 1 <= best <= held["iterations"] <= 40
    assert cfg["refit"]["start"] == "best" and cfg["refit"]["from_iteration"] == best
    assert cfg["refit"]["iterations"] == continue_iterations(cfg, best) == min(max(best // 4, 1), 10)
    assert len(r["history"]["iteration"]) == cfg["refit"]["iterations"] + 1  # the continuation's own history
    assert "validation_total" not in r["history"]


@pytest.mark.parametrize(("flags", "why"), [
    ((), "auto: iterations (2 data terms"),
    (("--terms", "ptychography", "--iterations", "10"), "auto: iterations (10 iterations, not more than the patience"),
])
def test_falls_back_to_the_iterations(small, tmp_path, flags, why):
    r = _run(small, tmp_path / "f.h5", *flags, *(() if "--iterations" in flags else ("--iterations", "12")))
    assert r["config"]["stop_auto"].startswith(why)
    assert r["config"]["stopping"]["rule"] == "iterations"
    assert "validation_run" not in r["config"] and r["status"] == "maxiter"
    assert "validation_total" not in r["history"]


def test_a_tiny_file_runs_its_iterations(tmp_path, rng):
    """One 8 x 8 pattern: 64 values, 6.4 to hold out at the small files' 10 % (fewer than 10): a plain run."""
    from multimodal_ip.io import Dataset, TermData
    from multimodal_ip.variables import Variable

    probe = np.exp(1j * rng.uniform(0, 1, (8, 8)))
    truth = 1 + 0.1 * rng.standard_normal((8, 8))
    data = np.abs(np.fft.fft2(probe * truth, norm="ortho"))[None] ** 2
    term = TermData("ptychography", "ptychography", {"data": data, "probe": probe, "positions": np.zeros((1, 2))})
    save_dataset(tmp_path / "tiny.h5", Dataset([Variable("x", (8, 8)), Variable("w", (1, 8, 8))],
                                               {"ptychography": term}))
    r = _run(tmp_path / "tiny.h5", tmp_path / "r.h5", "--iterations", "15")
    assert r["config"]["stop_auto"].startswith("auto: iterations (64 measured values, too few to hold 0.1 out")
    assert "validation_run" not in r["config"] and "validation_total" not in r["history"]


def test_stop_iterations_is_the_plain_run(small, tmp_path):
    """``--stop iterations`` gives what a default joint run (auto: iterations) gives, bit for bit, and neither holds
    anything out; on one term it runs every iteration where the default stops and refits."""
    plain = _run(small, tmp_path / "p.h5", "--iterations", "12", "--stop", "iterations")
    joint = _run(small, tmp_path / "j.h5", "--iterations", "12")
    for k in plain["variables"]:
        np.testing.assert_array_equal(plain["variables"][k], joint["variables"][k])
    np.testing.assert_array_equal(plain["history"]["objective"], joint["history"]["objective"])
    assert "stop_auto" not in plain["config"] and "validation_total" not in plain["history"]
    alone = _run(small, tmp_path / "a.h5", "--terms", "ptychography", "--iterations", "40", "--stop", "iterations")
    assert alone["config"]["stopping"] == {"rule": "iterations"} and "validation_run" not in alone["config"]
    assert list(alone["history"]["iteration"])[-1] == 40


def test_compare_keeps_the_fixed_rule(small, tmp_path):
    """``mmip compare`` (``make demo``, the paper's table) runs its iterations: the default there is ``iterations``."""
    import json

    assert main(["compare", str(small), "-o", str(tmp_path / "c"), "--iterations", "12"]) == 0
    rows = json.loads((tmp_path / "c" / "errors.json").read_text())
    assert set(rows) == {"joint", "ptychography alone", "fluorescence alone"}


def _model(positions, windows, refine=()):
    from mmip_ptychography import PtychographyModel, fresnel_zone_plate_probe

    return PtychographyModel(fresnel_zone_plate_probe(16), positions, (40, 40), 1, refine=refine, windows=windows)


def test_windows_auto_is_plain_on_the_raster_and_band_limited_off_it(rng):
    from mmip_ptychography.scan import raster_positions

    raster = raster_positions(40, 16, step_px=8).astype(float)
    v = rng.standard_normal(2 * 40 * 40)
    y = rng.standard_normal((len(raster), 16, 16)) + 1j * rng.standard_normal((len(raster), 16, 16))
    auto, cubic = _model(raster, "auto"), _model(raster, "cubic")
    np.testing.assert_array_equal(auto.forward(v), cubic.forward(v))
    np.testing.assert_array_equal(auto.jacobian(v).rmatvec(y.ravel()), cubic.jacobian(v).rmatvec(y.ravel()))
    shifted = raster + rng.uniform(-0.5, 0.5, raster.shape)
    shifted = np.clip(shifted, 0, 24)
    assert _model(shifted, "auto").windows == "band-limited"
    np.testing.assert_array_equal(_model(shifted, "auto").forward(v), _model(shifted, "band-limited").forward(v))
    assert _model(shifted, "auto", refine=("positions",)).windows == "cubic"  # moving positions need the cubic


def test_windows_auto_is_the_term_default_and_refining_positions_takes_cubic(small):
    from multimodal_ip.io import build_problem, load_dataset

    ds = load_dataset(small)
    fixed = build_problem(ds, terms=["ptychography"])
    refined = build_problem(ds, terms=["ptychography"], refine=("positions",))
    ops = [p.terms[0].operator for p in (fixed, refined)]
    assert [getattr(op, "windows", None) for op in ops] == ["band-limited", "cubic"]


def test_patience_warns_once_where_auto_runs_the_iterations(small, tmp_path, capsys):
    capsys.readouterr()
    _run(small, tmp_path / "w.h5", "--terms", "ptychography", "--iterations", "3", "--patience", "3")
    err = capsys.readouterr().err
    assert err.count("warning: patience has no effect: --stop auto runs the iterations (3 iterations") == 1, err


@pytest.mark.parametrize("flags", [(), ("--validation-fraction", "0.02", "--refit-from", "best")])
def test_the_pty_chi_benchmark_runs_the_cli_default(small, tmp_path, flags):
    """``bench_ptychi.py --accuracy``'s "ours" is ``mmip reconstruct`` at its defaults: its final error is the
    command's result's, and its trace is the refit's after the held-out run's wall time, or with ``--refit-from
    best`` the held-out run's up to its best iterate, then the continuation's after the held-out run's wall time."""
    import sys
    from argparse import Namespace
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from _ptychi_ours import ours_cli_trace

    from multimodal_ip.io import load_dataset

    r = _run(small, tmp_path / "cli.h5", "--terms", "ptychography", "--iterations", "30", *flags)
    truth = load_dataset(small).truth
    z = truth["x"] + 1j * truth["w"][0]
    args = Namespace(ours_flags=" ".join(("--iterations", "30", *flags)), solver=None, dtype=None, likelihood=None,
                     loss=None)
    row = ours_cli_trace(small, z, np.ones(1), args)
    got = r["variables"]["x"] + 1j * r["variables"]["w"][0]
    assert row["trace"][-1][1] == pytest.approx(
        np.linalg.norm(got - z) / np.linalg.norm(z), rel=1e-6)
    assert row["returned_iteration"] == r["config"]["validation_run"]["returned_iteration"]
    assert row["stop"].startswith("auto: validation")
    if not flags:
        assert row["trace"][0][0] >= row["held_trace"][-1][0]
        return
    best = row["returned_iteration"]
    assert row["trace"][:best + 1] == row["held_trace"][:best + 1]
    assert row["trace"][best + 1][0] >= row["held_trace"][-1][0]
