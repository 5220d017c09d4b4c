"""The loosened tie of ptychography's phase to the element maps (docs/real_samples.md): the matrix and coupling
unknowns, the model axis and score of ``mmip tune``, flags and run files."""

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest
from mmip_ptychography import PtychographyModel
from mmip_ptychography.phase_matrix import MODEL_UNKNOWNS, PhaseCoupling, smoothing_matrix

from multimodal_ip.cli import main
from multimodal_ip.io import build_problem, load_dataset, load_result
from multimodal_ip.operators import StreamedAfter
from multimodal_ip.plugins import get_registry
from multimodal_ip.testing.checks import check_adjoint, check_jacobian
from multimodal_ip.tune import Setting, Trial, choose, score_trials

ROOT = Path(__file__).resolve().parents[1]


def _cases():
    spec = importlib.util.spec_from_file_location("real_sample_cases", ROOT / "examples/real_samples/cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(path, **kw):
    return _cases().write_case(path, **{"n": 32, "npx": 16, "step": 4, **kw})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("phase_matrix")
    return {"tied": _write(d / "tied.h5", noise=0.03), "matrix": _write(d / "matrix.h5", matrix=1.0, noise=0.03),
            "coupling": _write(d / "coupling.h5", coupling_error=0.2, noise=0.0)}


@pytest.mark.parametrize(("refine", "nk"), [(("coupling",), 1), (("coupling",), 2), (("matrix",), None),
                                            (MODEL_UNKNOWNS, 2)])
def test_phase_coupling_jacobian_and_adjoint(refine, nk):
    rng = np.random.default_rng(1)
    op = PhaseCoupling((9, 7), 2, [1.0, 0.4], refine, nk, 1.5, n_rest=5)
    v = 1 + rng.random(op.shape[1])
    check_adjoint(op.jacobian(v), rng=rng)
    slope = check_jacobian(op, v, rng=rng)
    assert slope is None or slope > 1.8  # None: linear in the direction (the matrix alone)
    assert np.allclose(smoothing_matrix(7, 1.5).sum(axis=1), 1.0)


def test_the_conformance_case_of_the_loosened_model():
    """The plugin's own conformance case (composition with a refined probe) passes the kit's checks."""
    modality = get_registry().get("modality", "ptychography")
    cases = {name: (op, v) for name, op, v in modality.conformance_cases(np.random.default_rng(0))}
    op, v = cases["coupling-matrix-probe"]
    check_adjoint(op.jacobian(v))
    assert check_jacobian(op, v) > 1.8


def test_default_off_builds_the_tied_model_and_refine_adds_the_unknowns(files):
    ds = load_dataset(files["matrix"])
    tied = build_problem(ds)
    term = next(t for t in tied.terms if t.name == "ptychography")
    assert isinstance(term.operator, PtychographyModel) and term.inputs == ("x", "w")
    loose = build_problem(ds, refine=("matrix", "coupling"))
    term = next(t for t in loose.terms if t.name == "ptychography")
    assert isinstance(term.operator, StreamedAfter) and term.inputs == ("x", "w", "coupling", "matrix")
    start = loose.space.unpack(loose.start())
    assert np.all(start["coupling"] == 0.0) and np.all(start["matrix"] == 0.0) and start["matrix"].shape == (32, 32)
    # at the start (factors 1, matrix 0) the loosened model predicts what the tied one does
    np.testing.assert_allclose(loose.objectives(loose.start())["ptychography"],
                               tied.objectives(tied.start())["ptychography"], rtol=1e-10)


def test_refining_coupling_off_by_20_percent_recovers_it(files, tmp_path):
    assert main(["reconstruct", str(files["coupling"]), "-o", str(tmp_path / "r.h5"), "--iterations", "25",
                 "--refine", "coupling", "--refine-after", "0", "--solver", "gauss-newton", "--dtype",
                 "float64", "--balance-c", "1"]) == 0
    u = load_result(tmp_path / "r.h5")["variables"]["coupling"]
    factor = 1 + u / np.sqrt(32 * 32)  # PhaseCoupling.factors
    assert factor.shape == (1,) and abs(factor[0] - 1.2) < 0.01, factor  # the file says 1


def _tune(data, out, *flags):
    assert main(["tune", str(data), "-o", str(out), "--iterations", "40", "--c", "0.1,1", "--models",
                 "tied,matrix", *flags]) == 0
    text = (out / "table.md").read_text()
    return next(ln for ln in text.splitlines() if ln.startswith("chosen: ")), text


def test_tuner_prefers_the_matrix_model_with_a_matrix_and_the_tied_model_without(files, tmp_path, capsys):
    chosen, text = _tune(files["matrix"], tmp_path / "m")
    assert "model=matrix" in chosen and "why: model matrix" in text
    chosen, text = _tune(files["tied"], tmp_path / "t", "--tolerance", "0.01")
    assert "model=" not in chosen and "why: model tied" in text
    assert 'refine = ["matrix"]' in (tmp_path / "m" / "chosen.toml").read_text()
    capsys.readouterr()


def test_worst_ratio_score_punishes_a_setting_that_gives_a_term_up():
    """A term whose held-out loss falls by most from the flat start outweighs, in the flat-start sum, one whose
    held-out loss grows many times; the worst ratio to each term's best does not let it (measured in the issue)."""
    def trial(c, xrf, ptycho):
        return Trial(Setting(c), 0.0, {}, 10, "validation", 0.1, 1.0, {"xrf": xrf, "ptycho": ptycho},
                     {"xrf": 1.0, "ptycho": 1.0})

    # c = 1 halves the XRF's held-out loss and gives up 7.5x the ptychography's
    trials = [trial(0.01, 0.5, 0.001), trial(0.1, 0.06, 0.002), trial(1.0, 0.03, 0.015)]
    assert choose(score_trials(trials, "start")).setting.balance_c == 1.0
    worst = score_trials(trials, "worst")
    assert choose(worst).setting.balance_c == 0.1
    assert worst[2].per_term == {"xrf": 1.0, "ptycho": pytest.approx(15.0)} and worst[2].score == pytest.approx(15.0)
    assert choose(score_trials(trials, "sum")).setting.balance_c == 0.1


def test_run_file_refines_the_matrix_with_its_smoothing(files, tmp_path):
    run = tmp_path / "run.toml"
    run.write_text('iterations = 3\nrefine = ["matrix"]\n[term_options.ptychography]\nmatrix_smoothing_px = 2.0\n')
    assert main(["reconstruct", str(files["matrix"]), "-o", str(tmp_path / "r.h5"), "--config", str(run)]) == 0
    result = load_result(tmp_path / "r.h5")
    assert result["variables"]["matrix"].shape == (32, 32) and np.any(result["variables"]["matrix"] != 0)


@pytest.mark.parametrize(("flags", "message"), [
    (["reconstruct", "--refine", "matrix", "--config", "{bad}"], "matrix_smoothing_px"),
    (["tune", "--models", "tied,+"], "--models"),
    (["tune", "--refine", "matrix", "--models", "matrix"], "already refined"),
    (["tune", "--models", "tied,bogus"], "bogus"),
])
def test_bad_values_are_one_line_exit_2(files, tmp_path, capsys, flags, message):
    bad = tmp_path / "bad.toml"
    bad.write_text("[term_options.ptychography]\nmatrix_smoothing_px = -1.0\n")
    data = files["tied"]
    before = h5py.File(data).id.get_filesize()
    args = [flags[0], str(data), "-o", str(tmp_path / "out"), "--iterations", "2",
            *[str(bad) if f == "{bad}" else f for f in flags[1:]]]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists() and h5py.File(data).id.get_filesize() == before


@pytest.mark.slow
def test_study_example_small(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(ROOT / "examples/real_samples/study.py"), "-o", str(tmp_path), "--n",
                           "48", "--iterations", "3", "--cases", "m0.3", "--c", "1", "--models", "tied,matrix"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| m0.3 |" in proc.stdout and (tmp_path / "results.json").exists()


def test_tuner_tries_the_matrix_smoothing_candidates_and_writes_the_chosen_one(files, tmp_path, capsys):
    """``matrix@matrix_smoothing_px=V`` models: each candidate reaches its trial (the labels, the scorer's model) and
    the chosen one goes into chosen.toml as a term option; an option no term takes is one line, exit 2."""
    out = tmp_path / "t"
    assert main(["tune", str(files["matrix"]), "-o", str(out), "--iterations", "4", "--c", "0.1", "--models",
                 "matrix@matrix_smoothing_px=1,matrix@matrix_smoothing_px=8,tied"]) == 0
    text = (out / "table.md").read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and "setting" not in ln]
    assert [r.split("|")[1].strip().strip("*") for r in rows] == [
        "balanced, c=0.1, model=matrix@matrix_smoothing_px=1", "balanced, c=0.1, model=matrix@matrix_smoothing_px=8",
        "balanced, c=0.1"]
    held = [tuple(r.split("|")[3:5]) for r in rows[:2]]
    assert held[0] != held[1]  # the smoothing reached the fits: other held-out losses
    chosen = next(ln for ln in text.splitlines() if ln.startswith("chosen: "))
    run = (out / "chosen.toml").read_text()
    if "model=matrix@" in chosen:
        px = chosen.split("matrix_smoothing_px=")[1].split(",")[0].split(" ")[0]
        assert "[term_options.ptychography]" in run and f"matrix_smoothing_px = {float(px)}" in run
        assert 'refine = ["matrix"]' in run
    else:
        assert "matrix_smoothing_px" not in run
    capsys.readouterr()
    assert main(["tune", str(files["matrix"]), "-o", str(tmp_path / "bad"), "--iterations", "2", "--models",
                 "matrix@no_such_option=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no_such_option" in err and len(err.splitlines()) == 1
