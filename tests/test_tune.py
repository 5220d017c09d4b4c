"""mmip tune: the grid, the score, the chosen run file, refit, budget, bad flags."""

import numpy as np
import pytest
from mmip_paper import simulate

from multimodal_ip.cli import main
from multimodal_ip.io import build_problem, load_result, save_dataset
from multimodal_ip.tune import Setting, settings_grid, validation_score


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("tune") / "d.h5"
    save_dataset(path, simulate("phantom", n=64, probe_size=16, step=8, noise=0.1, seed=0))
    return path


def test_grid_and_score():
    grid = settings_grid([0.01, 0.1], ["balanced", "poisson"], {0: [0.0, 1e-3]})
    assert len(grid) == 2 * 2 + 2  # every c x strength for balanced; strengths only for poisson
    assert Setting(0.1, "balanced", ((0, 1e-3),)).label(["tv"]) == "balanced, c=0.1, tv=0.001"
    ds = simulate("phantom", n=48, probe_size=16, step=8, noise=0.05, seed=0)
    scorer = build_problem(ds, balance=False, validation=0.1)
    ref = scorer.linearize(scorer.start()).validation
    score, ratios = validation_score(scorer, scorer.start(), ref)
    assert score == pytest.approx(len(ref)) and all(r == pytest.approx(1.0) for r in ratios.values())


def test_tune_writes_table_figure_and_a_run_file_reconstruct_takes(data, tmp_path, capsys):
    out = tmp_path / "tune"
    assert main(["tune", str(data), "-o", str(out), "--c", "0.01,1", "--likelihoods", "balanced,poisson",
                 "--iterations", "40", "--refit", "--solver-option", "memory=7"]) == 0
    printed = capsys.readouterr().out
    assert "chosen:" in printed and "refit on all the data" in printed
    table = (out / "table.md").read_text()
    for label in ("balanced, c=0.01", "balanced, c=1", "poisson"):
        assert label in table
    assert table.count("**") == 2  # the chosen row is marked
    assert (out / "tune.png").stat().st_size > 1000
    chosen, held = (out / "chosen.toml").read_text(), (out / "chosen_validation.toml").read_text()
    assert 'rule = "iterations"' in chosen and 'rule = "validation"' in held  # chosen: the plain run, explicitly
    assert "memory = 7" in chosen and "memory = 7" in held  # what the tune ran with (was dropped before)
    assert main(["reconstruct", str(data), "-o", str(tmp_path / "r.h5"), "--config", str(out / "chosen.toml")]) == 0
    refit = load_result(out / "refit.h5")
    assert refit["status"] == "maxiter" and "validation_total" not in refit["history"]
    np.testing.assert_array_equal(load_result(tmp_path / "r.h5")["variables"]["x"], refit["variables"]["x"])
    assert main(["reconstruct", str(data), "-o", str(tmp_path / "v.h5"), "--config",
                 str(out / "chosen_validation.toml")]) == 0
    assert load_result(tmp_path / "v.h5")["status"] in ("validation", "maxiter")


def test_strength_grid_and_budget(data, tmp_path, capsys):
    out = tmp_path / "t"
    assert main(["tune", str(data), "-o", str(out), "--c", "0.01,0.1,1", "--iterations", "10",
                 "--regularizer", "tikhonov:1e-3:x", "--strength", "0:0,1e-2", "--budget", "0"]) == 0
    rows = [ln for ln in (out / "table.md").read_text().splitlines() if ln.startswith("| balanced")
            or ln.startswith("| **balanced")]
    assert len(rows) == 1  # a zero budget: the first setting only
    assert main(["tune", str(data), "-o", str(tmp_path / "u"), "--c", "0.1", "--iterations", "10",
                 "--regularizer", "tikhonov:1e-3:x", "--strength", "0:0,1e-2"]) == 0
    table = (tmp_path / "u" / "table.md").read_text()
    assert "balanced, c=0.1, tikhonov=0 |" in table.replace("**", "") and "tikhonov=0.01" in table
    chosen = (tmp_path / "u" / "chosen.toml").read_text()
    assert 'name = "tikhonov"' in chosen and "strength = " in chosen
    capsys.readouterr()


@pytest.mark.parametrize(("flags", "message"), [
    (["--likelihoods", "gaussian"], "--likelihoods"),
    (["--c", "0.1,-1"], "--c"),
    (["--strength", "3:1,2"], "--strength"),
    (["--validation-fraction", "2"], "fraction"),
])
def test_bad_tune_flags_exit_2(data, tmp_path, capsys, flags, message):
    capsys.readouterr()
    assert main(["tune", str(data), "-o", str(tmp_path / "t"), "--iterations", "2", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "t").exists()


def test_tune_score_prefers_the_setting_that_predicts_held_out_data(data, tmp_path):
    """On this noisy case a tiny c throws the fluorescence away: its held-out fluorescence is worse than c = 1's."""
    out = tmp_path / "t"
    assert main(["tune", str(data), "-o", str(out), "--c", "0.0001,1", "--iterations", "40"]) == 0
    rows = {ln.split("|")[1].strip().strip("*"): ln.split("|") for ln in (out / "table.md").read_text().splitlines()
            if ln.startswith("|") and "balanced, c=" in ln}
    fluo = {k: float(v[3]) for k, v in rows.items()}
    assert fluo["balanced, c=1"] < fluo["balanced, c=0.0001"]
    assert np.isfinite(list(fluo.values())).all()


def test_choose_prefers_the_most_conservative_setting_within_the_tolerance():
    from multimodal_ip.tune import Trial, choose

    def trial(c, lik, score):
        return Trial(Setting(c, lik, ()), score, {}, 10, "validation", 0.1, 1.0)

    trials = [trial(0.01, "balanced", 0.40), trial(0.1, "balanced", 0.3310), trial(1.0, "balanced", 0.3290),
              trial(None, "poisson", 0.3280)]
    assert choose(trials).setting.likelihood == "poisson"  # the lowest score (the default)
    assert choose(trials, 0.01).setting.balance_c == 0.1  # within 1 %: balanced, smallest c
    assert choose(trials, 0.001).setting.likelihood == "poisson"  # nothing else within 0.1 %
    assert choose(trials, 0.5).setting.balance_c == 0.01


def test_tolerance_flag_is_checked(data, tmp_path, capsys):
    capsys.readouterr()
    assert main(["tune", str(data), "-o", str(tmp_path / "t"), "--iterations", "2", "--c", "0.1",
                 "--tolerance", "-1"]) == 2
    assert "--tolerance" in capsys.readouterr().err and not (tmp_path / "t").exists()


def test_run_files_round_trip_every_run_key(tmp_path):
    """chosen.toml keeps what the tune ran with (solver and term options, refinement, coupling, regularizers, ...):
    a run file written by ``to_toml`` reads back the same configuration."""
    from types import SimpleNamespace

    from multimodal_ip.config import DEFAULTS, run_config, to_toml

    cfg = dict(DEFAULTS, solver="gauss-newton", iterations=17, terms=["ptychography", "fluorescence"],
               balance_c=0.3, likelihood="poisson", dtype="float64", refine=["probe", "positions"], refine_after=4,
               coupling="absorption:10.5", checkpoint_every=3, chunk_memory="2G",
               solver_options={"align": True, "inner_iterations": 5, "damping": 0.5},
               term_options={"ptychography": {"loss": "poisson"}, "fluorescence": {}},
               balance_reference="ptychography",
               regularizers=[{"name": "tv", "variables": ["x", "w"], "strength": 1e-6},
                             {"name": "nonnegative", "variables": ["w"]}],
               refine_bound={"positions": 1.5}, stopping={"rule": "validation", "patience": 7, "fraction": 0.2})
    path = tmp_path / "run.toml"
    path.write_text(to_toml(dict(cfg, balance_c=np.float64(0.3), iterations=np.int64(17))))  # numpy scalars too
    back = run_config(SimpleNamespace(config=str(path)))
    assert {k: back[k] for k in DEFAULTS} == {k: cfg[k] for k in DEFAULTS} | {"term_options": {"ptychography":
                                                                                                {"loss": "poisson"}}}
