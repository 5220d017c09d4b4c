"""``mmip tune --models auto``: a model alternative is chosen only when it beats the grid's choice on the run's own
model by the margin (``--model-margin``, ``tune_choice.MODEL_MARGIN``)."""

import pytest

from multimodal_ip.cli import main
from multimodal_ip.tune import MODEL_MARGIN, Setting, Trial, choose, choose_model


def _trial(score, refine=(), c=0.01):
    return Trial(Setting(c, refine=refine), score, {}, 10, "validation", float("nan"), 1.0)


def test_an_alternative_within_the_margin_keeps_the_run_s_own_model():
    grid = [_trial(1.0060), _trial(1.02, c=0.1)]
    close = _trial(1.0000, refine=("matrix",))
    assert choose(grid + [close]) is close  # the plain lowest score would take the alternative
    assert choose_model(grid + [close], len(grid)) is grid[0]
    far = _trial(1.0060 * (1 - MODEL_MARGIN) * 0.999, refine=("matrix",))
    assert choose_model(grid + [far], len(grid)) is far
    assert choose_model(grid + [close], len(grid), margin=0.0) is close
    assert choose_model(grid, len(grid)) is grid[0]  # no alternatives ran (budget, one term)


@pytest.mark.parametrize("value", ["-0.1", "1", "nan"])
def test_model_margin_out_of_range_is_one_line(tmp_path, capsys, value):
    data = tmp_path / "d.h5"
    assert main(["simulate", "phantom", "-o", str(data), "--n", "32", "--probe-size", "16", "--step", "8"]) == 0
    capsys.readouterr()
    assert main(["tune", str(data), "-o", str(tmp_path / "t"), "--model-margin", value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--model-margin must be in [0, 1)" in err, err
    assert not (tmp_path / "t").exists()


def test_models_auto_in_a_list_is_one_line(tmp_path, capsys):
    data = tmp_path / "d.h5"
    assert main(["simulate", "phantom", "-o", str(data), "--n", "32", "--probe-size", "16", "--step", "8"]) == 0
    capsys.readouterr()
    assert main(["tune", str(data), "-o", str(tmp_path / "t"), "--models", "auto,matrix"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--models auto stands alone" in err, err


def test_a_start_value_a_model_lacks_is_refused_before_the_first_fit(tmp_path, capsys):
    """``--start truth:x,w,matrix`` with no ``/truth/matrix``: one line before any setting is fitted (it failed only
    when the matrix model's turn came, after the whole grid)."""
    data = tmp_path / "d.h5"
    assert main(["simulate", "phantom", "-o", str(data), "--n", "32", "--probe-size", "16", "--step", "8"]) == 0
    capsys.readouterr()
    assert main(["tune", str(data), "-o", str(tmp_path / "t"), "--start", "truth:x,w,matrix"]) == 2
    out, err = capsys.readouterr()
    assert "held-out" not in out, out  # no setting was fitted
    assert len(err.strip().splitlines()) == 1 and "/truth/matrix: missing" in err, err
