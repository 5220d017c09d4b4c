"""Joint Gauss-Newton on the run's own problem, ptychography and XRF (issue 33,
``examples/beyond_paper/joint_gauss_newton_xrf.py``): the XRF's block is in the Gauss-Newton operator the
experiment solves with (against finite differences of its gradient, and the joint product the sum of the terms'),
and the script on a tiny case."""

import contextlib
import json
import re
import runpy
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from multimodal_ip.cli import main
from multimodal_ip.cli.common import build
from multimodal_ip.config import DEFAULTS
from multimodal_ip.start import read_start, start_point

SCRIPT = Path(__file__).resolve().parents[2] / "examples/beyond_paper/joint_gauss_newton_xrf.py"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The acceptance's command pair at the smallest size: a 32 x 32 cameraman, 16 px probe, 49 positions off the
    raster by up to a pixel, 3 % noise; six joint iterations, the positions refined after two."""
    folder = tmp_path_factory.mktemp("jgn")
    data, result = folder / "d.h5", folder / "r.h5"
    assert main(["simulate", "cameraman", "-o", str(data), "--n", "32", "--probe-size", "16", "--step", "4",
                 "--position-jitter", "1", "--seed", "1", "--noise", "0.03"]) == 0
    assert main(["reconstruct", str(data), "-o", str(result), "--refine", "positions", "--refine-after", "2",
                 "--iterations", "6"]) == 0
    return data, result


def _problem(data, result, terms=None):
    """The run's problem as the script builds it (float64), at the result's point."""
    with h5py.File(result, "r") as f:
        saved = json.loads(f["results"].attrs["config"])
    cfg = dict(DEFAULTS, **{k: v for k, v in saved.items() if k in DEFAULTS})
    cfg.update(dtype="float64", terms=terms)
    with pytest.warns(UserWarning, match="XRF positions are not the scan positions"):
        _, problem = build(str(data), cfg)
    return problem, start_point(problem, read_start(str(result), problem.space))


def test_xrf_block_in_the_joint_gauss_newton_operator(run):
    """The XRF term's Gauss-Newton product is its Hessian (a linear model, least squares): it matches central
    differences of its weighted gradient along a change of ``w``; the joint product along a change of all the
    unknowns is the sum of the ptychography's and the XRF's, and the XRF adds to it."""
    problem, x = _problem(*run)
    assert set(problem.term_names) == {"ptychography", "fluorescence"}
    assert {"x", "w", "positions"} <= set(problem.space.names)
    rng = np.random.default_rng(0)
    dw, w = np.zeros_like(x), problem.space.slice("w")
    dw[w] = rng.standard_normal(dw[w].size)
    xrf = problem.with_terms(["fluorescence"])
    h = 1e-3 * np.linalg.norm(x[w]) / np.linalg.norm(dw)
    fd = (xrf.gradient(x + h * dw) - xrf.gradient(x - h * dw)) / (2 * h)
    gn = xrf.linearize(x).gauss_newton().matvec(dw)
    assert np.linalg.norm(gn - fd) <= 1e-6 * np.linalg.norm(gn)
    assert np.linalg.norm(gn) > 0
    v = rng.standard_normal(x.size)
    joint = problem.linearize(x).gauss_newton().matvec(v)
    parts = [problem.with_terms([t]).linearize(x).gauss_newton().matvec(v) for t in ("ptychography", "fluorescence")]
    assert np.allclose(joint, parts[0] + parts[1], rtol=1e-10, atol=1e-12 * np.abs(joint).max())
    assert np.linalg.norm(parts[1]) > 1e-6 * np.linalg.norm(joint)


def _table(out):
    """The rows of the script's table: ``(step, objective, rms)``."""
    head = next(line for line in out.splitlines() if line.startswith("| step"))
    cols = [c.strip() for c in head.strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
            if re.match(r"\| \d+ \|", line)]
    i, j = cols.index("objective"), cols.index("rms position error (px)")
    return cols, [(int(r[0]), float(r[i]), float(r[j])) for r in rows]


@pytest.mark.parametrize("extra", [[], ["--from-truth", "--terms", "ptychography"]])
def test_joint_gauss_newton_xrf_script(run, extra, monkeypatch, capsys):
    """Two accepted steps from the result (and from the truth without the XRF): the objective falls at each, the
    table has a column per term of the problem, the start row at the truth scores zero."""
    data, result = run
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--data", str(data), "--result", str(result), "--steps", "2",
                                      "--cg", "10", *extra])
    xrf = not extra  # the XRF's own positions (its grid, not the scan's) are said to stay fixed
    with pytest.warns(UserWarning, match="XRF positions") if xrf else contextlib.nullcontext():
        runpy.run_path(str(SCRIPT), run_name="__main__")
    out = capsys.readouterr().out
    cols, rows = _table(out)
    assert ("fluorescence" in cols) == xrf
    assert [r[0] for r in rows] == [0, 1, 2]
    assert rows[2][1] < rows[1][1] < rows[0][1]
    assert (rows[0][2] == 0.0) == bool(extra)
