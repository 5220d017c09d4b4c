"""``mmip tune``'s default model choice (docs/real_samples.md): the grid on the tied model, then the model
alternatives the modalities offer at its choice, scored together; ``--models tied`` the grid alone; ``--start``
read against each model's own problem."""

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest

from multimodal_ip.cli import main
from multimodal_ip.modality import capabilities
from multimodal_ip.plugins import get_registry
from multimodal_ip.tune import Setting, Trial, explain

ROOT = Path(__file__).resolve().parents[1]


def _write(path, **kw):
    spec = importlib.util.spec_from_file_location("real_sample_cases", ROOT / "examples/real_samples/cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_case(path, **{"n": 32, "npx": 16, "step": 4, "noise": 0.03, **kw})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("models_default")
    return {"tied": _write(d / "tied.h5"), "matrix": _write(d / "matrix.h5", matrix=1.0)}


def _rows(out) -> dict:
    """``{setting label: table row cells}`` of a tune's table.md, in order."""
    lines = (out / "table.md").read_text().splitlines()
    return {ln.split("|")[1].strip().strip("*"): [c.strip() for c in ln.split("|")[2:-1]] for ln in lines
            if ln.startswith("| ") and not ln.startswith("| setting")}


def _chosen(out) -> str:
    return next(ln for ln in (out / "table.md").read_text().splitlines() if ln.startswith("chosen: "))


def test_the_modality_offers_its_model_alternatives():
    models = capabilities(get_registry().get("modality", "ptychography")).models
    assert "matrix" in models and "coupling" in models
    assert capabilities(get_registry().get("modality", "fluorescence")).models == ()


def test_default_tries_the_alternatives_after_the_grid_and_picks_the_matrix_model(files, tmp_path, capsys):
    """A matrix of mean(w): the tied grid first, then every offered alternative once at the grid's choice; a model
    with the matrix wins, and the reason names the tied model's held-out ptychography loss."""
    out = tmp_path / "m"
    assert main(["tune", str(files["matrix"]), "-o", str(out), "--iterations", "40", "--c", "0.1,1", "--refit"]) == 0
    rows = _rows(out)
    labels = list(rows)
    offered = capabilities(get_registry().get("modality", "ptychography")).models
    assert labels[:2] == ["balanced, c=0.1", "balanced, c=1"] and len(labels) == 2 + len(offered)
    stage = {lab.split(", model=")[0] for lab in labels[2:]}
    assert len(stage) == 1  # all at one setting: the grid's choice
    assert [lab.split(", model=")[1] for lab in labels[2:]] == list(offered)
    chosen, text = _chosen(out), (out / "table.md").read_text()
    assert "model=matrix" in chosen, text
    assert "models: the run's model over the grid, then matrix, coupling" in text
    tied_part = text.split("best of the other models: ")[1].split("; ")[0]
    assert tied_part.startswith("tied ") and "held-out ptychography loss" in tied_part, tied_part
    assert float(tied_part.split("loss ")[1].split("x the chosen")[0]) > 1.1
    assert '"matrix"' in (out / "chosen.toml").read_text() and (out / "refit.h5").exists()
    assert "chosen model matrix" in capsys.readouterr().out


def test_models_tied_is_the_grid_alone_and_equals_the_first_stage(files, tmp_path, capsys):
    """``--models tied``: today's behaviour, the grid on the tied model; its trials are the default's first stage
    (same fits, same held-out losses, same iterations)."""
    assert main(["tune", str(files["tied"]), "-o", str(tmp_path / "t"), "--iterations", "20", "--c", "0.1,1",
                 "--models", "tied"]) == 0
    assert main(["tune", str(files["tied"]), "-o", str(tmp_path / "a"), "--iterations", "20", "--c", "0.1,1",
                 "--tolerance", "0.01"]) == 0
    tied, auto = _rows(tmp_path / "t"), _rows(tmp_path / "a")
    assert list(tied) == ["balanced, c=0.1", "balanced, c=1"] and len(auto) > len(tied)
    for label, row in tied.items():  # best iteration, status (the ratios differ: the best of more trials)
        assert auto[label][-4:-2] == row[-4:-2]
    text = (tmp_path / "t" / "table.md").read_text()
    assert "model=" not in text and "models: tied, each over the grid" in text
    assert "refine" not in (tmp_path / "t" / "chosen.toml").read_text()
    # without a mismatch and with the tolerance, the tied model is kept
    assert "model=" not in _chosen(tmp_path / "a"), (tmp_path / "a" / "table.md").read_text()
    capsys.readouterr()


@pytest.mark.parametrize(("flags", "note", "models"), [
    (["--terms", "ptychography"], "no model alternatives offered", 0),  # one term: nothing to trade off
    (["--budget", "0"], "the budget ran out", 0),
    (["--refine", "coupling"], "then matrix at", 1),  # alternatives adding an unknown already refined: left out
])
def test_the_second_stage_is_skipped_or_narrowed(files, tmp_path, capsys, flags, note, models):
    out = tmp_path / "t"
    assert main(["tune", str(files["tied"]), "-o", str(out), "--iterations", "2", "--c", "1", *flags]) == 0
    assert note in (out / "table.md").read_text()
    assert sum("model=" in label for label in _rows(out)) == models
    capsys.readouterr()


def test_start_is_read_against_each_models_own_problem(files, tmp_path, capsys):
    """``--start r.h5:matrix`` with ``--models tied,matrix`` (was: read against the tied problem, "unknown
    variable"): the matrix model starts from the file's matrix, the tied model from the flat start; a variable no
    model has is still one line, exit 2."""
    data = files["matrix"]
    assert main(["reconstruct", str(data), "-o", str(tmp_path / "r.h5"), "--iterations", "10", "--refine", "matrix",
                 "--refine-after", "0"]) == 0
    with h5py.File(tmp_path / "r.h5") as f:
        assert np.any(f["results/variables/matrix"][()] != 0)
    flags = ["--iterations", "3", "--c", "1", "--score", "start", "--models", "tied,matrix", "--refit"]
    assert main(["tune", str(data), "-o", str(tmp_path / "s"), *flags, "--start", f"{tmp_path / 'r.h5'}:matrix"]) == 0
    assert main(["tune", str(data), "-o", str(tmp_path / "f"), *flags]) == 0
    started, flat = _rows(tmp_path / "s"), _rows(tmp_path / "f")
    assert started["balanced, c=1"][1:3] == flat["balanced, c=1"][1:3]  # tied: flat start either way
    assert started["balanced, c=1, model=matrix"][1:3] != flat["balanced, c=1, model=matrix"][1:3]
    assert main(["tune", str(data), "-o", str(tmp_path / "m"), *flags[:6], "--models", "matrix,tied", "--start",
                 str(tmp_path / "r.h5")]) == 0  # every variable the file holds, matrix model first
    capsys.readouterr()
    assert main(["tune", str(data), "-o", str(tmp_path / "bad"), *flags[:6], "--models", "tied,matrix", "--start",
                 f"{tmp_path / 'r.h5'}:matrix,bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert "bogus" in err and len(err.splitlines()) == 1 and not (tmp_path / "bad").exists()


def test_explain_says_which_term_the_other_models_give_up():
    def trial(refine, xrf, ptycho):
        return Trial(Setting(1.0, refine=refine), max(xrf, ptycho), {"xrf": xrf, "ptycho": ptycho}, 10, "validation",
                     0.1, 1.0, {"xrf": xrf, "ptycho": 3.1 * ptycho})

    best, tied = trial(("matrix",), 1.0, 1.0), trial((), 1.02, 3.1)
    text = explain(best, [tied, best])
    assert text.startswith("model matrix ") and "tied 3.1" in text
    assert "held-out ptycho loss 3.1x the chosen's" in text


@pytest.mark.slow
def test_validation_example_small(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(ROOT / "examples/real_samples/validate.py"), "-o", str(tmp_path),
                           "--n", "32", "--cases", "2el,sharp0.5:3"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| 2el,sharp0.5 | 3 |" in proc.stdout and (tmp_path / "results.json").exists()
