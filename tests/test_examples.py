"""CI runs every example (reduced sizes where the example takes flags)."""

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_paper_driver_small(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples/paper/reproduce.py"), "--cases", "hessian", "--noise", "0.03",
         "--seeds", "2", "--iterations", "5", "-o", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| hessian | 0.03 | joint |" in proc.stdout
    records = json.loads((tmp_path / "results.json").read_text())
    assert len(records) == 2 * 3 and {r["method"] for r in records} == {"joint", "ptychography alone",
                                                                        "fluorescence alone"}
    assert (tmp_path / "convergence_hessian_0.03.png").stat().st_size > 1000


def _run(script, *flags):
    proc = subprocess.run([sys.executable, str(ROOT / script), *flags], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_refinement_example_small(tmp_path):
    out = _run("examples/beyond_paper/refine.py", "--n", "48", "--probe-size", "16", "--step", "8", "--seeds", "2",
               "--iterations", "12", "--refine-after", "4", "-o", str(tmp_path))
    for method in ("joint, fixed", "joint, refined", "ptychography alone, fixed", "ptychography alone, refined"):
        assert f"| {method} |" in out
    records = json.loads((tmp_path / "results.json").read_text())
    assert len(records) == 8
    fixed = [r for r in records if r["method"] == "joint, fixed"]
    refined = [r for r in records if r["method"] == "joint, refined"]
    assert all(r["positions_rms_px"] > 0 for r in fixed)
    assert [r["positions_rms_px"] for r in refined] != [r["positions_rms_px"] for r in fixed]  # positions moved
    assert (tmp_path / "refinement.png").stat().st_size > 1000
    # one method only (the overlap study's runs): the table, the records and the figure of that method alone
    out = _run("examples/beyond_paper/refine.py", "--n", "48", "--probe-size", "16", "--step", "8", "--seeds", "1",
               "--iterations", "6", "--refine-after", "2", "--methods", "joint, refined", "-o", str(tmp_path / "one"))
    assert "| joint, refined |" in out and "| joint, fixed |" not in out
    assert len(json.loads((tmp_path / "one" / "results.json").read_text())) == 1
    assert (tmp_path / "one" / "refinement.png").stat().st_size > 1000


def test_likelihood_example_small(tmp_path):
    out = _run("examples/beyond_paper/likelihood.py", "--n", "48", "--probe-size", "16", "--step", "8", "--seeds",
               "2", "--iterations", "5", "-o", str(tmp_path))
    assert "| photon-weighted (poisson): joint |" in out and "| balanced least squares (paper): joint |" in out
    records = json.loads((tmp_path / "results.json").read_text())
    photon = [r for r in records if r["method"] == "photon-weighted (poisson): joint"]
    assert {tuple(sorted(r["weights"].values())) for r in photon} == {(1.0, 1.0)}


def test_coupling_example_small():
    pytest = __import__("pytest")
    pytest.importorskip("xraylib")
    out = _run("examples/beyond_paper/coupling.py", "--n", "48", "--probe-size", "16", "--step", "8", "--seeds", "2",
               "--iterations", "10")
    assert "'Fe': 1.0" in out and "| joint, physical coupling (from the file) |" in out
    assert "| joint, the paper's a_e = 1 |" in out


def test_validation_study_small(tmp_path):
    out = _run("examples/validation/study.py", "--cases", "phantom,sparse", "--noise", "0.1", "--seeds", "2",
               "--scale", "0.3", "--iterations", "15", "-o", str(tmp_path))
    for case in ("| phantom | 0.1 |", "| sparse | 0.1 |"):
        assert case in out
    records = json.loads((tmp_path / "records.json").read_text())
    assert len(records) == 4
    for r in records:  # the tuned setting is on the grid and its error is the grid's, never better than the best
        assert r["grid_best"] <= r["tuned"] + 1e-12 and r["oracle"] <= r["stopped"] + 1e-12


def test_validation_stopping_example_small():
    out = _run("examples/validation/stopping.py", "--cases", "sparse", "--noise", "0.1", "--seeds", "2", "--scale",
               "0.3", "--iterations", "12", "--patience", "3,30")
    row = next(line for line in out.splitlines() if line.startswith("| sparse | 0.1 |"))
    cells = [c.strip() for c in row.strip("|").split("|")][2:]
    assert len(cells) == 5 * 2  # five scores x two patiences
    for cell in cells:  # worst / mean (last iteration): ratios to the oracle are >= 1, the worst >= the mean
        worst, mean = (float(v) for v in re.match(r"([0-9.]+) / ([0-9.]+) \(", cell).groups())
        assert worst >= mean >= 1.0 - 1e-12
    # a patience longer than the run never stops early: the returned iterate is the validation's minimum over all
    assert all(cell.endswith("(12)") for cell in cells[1::2])


def test_position_information_example_small():
    out = _run("examples/beyond_paper/position_information.py", "--n", "64", "--probe-size", "16", "--step", "8",
               "--radius", "1", "--iterations", "5")
    # the simulator's band-limited windows are another model than the cubic ones: a small model error at the truth
    found = re.search(r"true positions ([0-9.e-]+), at the nominal raster ([0-9.e-]+)", out)
    at_truth, at_nominal = (float(v) for v in found.groups())
    assert 0 < at_truth < 0.3 * at_nominal
    assert "positions have an offset that fits the noisy data better" in out and "L-BFGS on the positions" in out


def test_drift_example_small():
    out = _run("examples/beyond_paper/drift.py", "--case", "cameraman", "--n", "64", "--probe-size", "16", "--step",
               "8", "--mode", "oracle", "--iterations", "30")
    found = re.search(r"nominal rms ([0-9.]+) px.*rms ([0-9.]+) px$", out.strip().splitlines()[-1])
    nominal, fitted = (float(v) for v in found.groups())
    assert fitted < nominal  # with the true object the affine map moves the positions towards the truth
