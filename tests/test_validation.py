"""Held-out validation: masks, losses, history columns, early stopping, chunks, MPI, resume and the CLI."""

import subprocess
import sys

import numpy as np
import pytest
from mmip_paper import simulate

from multimodal_ip.cli import main
from multimodal_ip.io import build_problem, load_result, save_dataset
from multimodal_ip.losses import Amplitude, LeastSquares, Poisson
from multimodal_ip.regularizers import NonNegative
from multimodal_ip.solvers import solve_staged
from multimodal_ip.validation import StopOnValidation, holdout_mask


@pytest.fixture(scope="module")
def noisy():
    return simulate("phantom", n=64, probe_size=16, step=8, noise=0.1, seed=0)


def test_masks_do_not_depend_on_the_split():
    whole = holdout_mask((23, 4, 5), 0.2, 7, "t", axis=0)
    parts = [holdout_mask((b - a, 4, 5), 0.2, 7, "t", axis=0, offset=a) for a, b in ((0, 5), (5, 17), (17, 23))]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert 0.12 < whole.mean() < 0.28
    assert not np.array_equal(whole, holdout_mask((23, 4, 5), 0.2, 8, "t", axis=0))  # the seed matters
    assert not np.array_equal(whole, holdout_mask((23, 4, 5), 0.2, 7, "u", axis=0))  # so does the term


CASES = [(loss, kind) for loss in (LeastSquares(scale=0.3), Amplitude(scale=0.5), Poisson(photons_per_unit=40.0))
         for kind in ("real", "complex")] + [(Poisson(photons_per_unit=3.0, intensity=True), "real")]


@pytest.mark.parametrize(("loss", "kind"), CASES, ids=repr)
def test_split_losses_add_up_to_the_whole(loss, kind):
    rng = np.random.default_rng(0)
    y = rng.standard_normal(50) + (1j * rng.standard_normal(50) if kind == "complex" else 0)
    if getattr(loss, "intensity", False):
        y = y - 0.5  # some predictions below the Poisson floor: the quadratic continuation
    d = rng.random(50) * 2
    value, grad = loss.value_and_gradient(y, d)
    values, g2 = loss.elementwise(y, d)
    assert float(values.sum()) == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(g2, grad, rtol=1e-12, atol=1e-14)
    held = rng.random(50) < 0.3
    fit, gfit, out = loss.split(y, d, held)
    assert fit + out == pytest.approx(value, rel=1e-12)
    assert np.all(gfit[held] == 0) and np.allclose(gfit[~held], grad[~held])


def test_validation_columns_and_fit_objective(noisy):
    plain = build_problem(noisy)
    val = build_problem(noisy, validation=0.2, validation_seed=3)
    v = val.start()
    lin, lin0 = val.linearize(v), plain.linearize(v)
    assert set(lin.validation) == {"ptychography", "fluorescence"} and not lin0.validation
    for name in lin.validation:  # fit + held out = the whole term at equal weights
        whole = lin0.objectives[name] / plain.weights[name]
        assert (lin.objectives[name] + lin.validation[name]) / val.weights[name] == pytest.approx(whole, rel=1e-10)
    res = solve_staged(val, v, "lbfgs", maxiter=3)
    assert {"validation_ptychography", "validation_fluorescence", "validation_total"} <= set(res.history.columns)


def test_chunked_validation_equals_whole(noisy):
    whole = build_problem(noisy, validation=0.1, chunk_bytes=0)
    parts = build_problem(noisy, validation=0.1, chunk_bytes=100_000)
    ptycho = parts.terms[parts.term_names.index("ptychography")]
    assert ptycho.streamed and len(ptycho.operator.blocks()) > 2  # held-out values sliced block by block
    v = whole.start() * 1.1
    a, b = whole.linearize(v), parts.linearize(v)
    assert a.validation == pytest.approx(b.validation, rel=1e-12)
    np.testing.assert_allclose(b.gradient, a.gradient, rtol=1e-10, atol=1e-14 * np.abs(a.gradient).max())


@pytest.mark.parametrize(("solver", "regs"), [("lbfgs", ()), ("lbfgs", ("nonneg",)), ("gauss-newton", ()),
                                              ("admm", ("nonneg",))])
def test_early_stopping_returns_the_best_validation_iterate(noisy, solver, regs):
    problem = build_problem(noisy, validation=0.1, regularizers=[NonNegative(["x", "w"])] if regs else ())
    stop = StopOnValidation(patience=3)
    res = solve_staged(problem, problem.start(), solver, maxiter=60, stopping=stop)
    val = res.history["validation_total"]
    best = int(np.nanargmin(val))
    assert res.returned_iteration == res.history["iteration"][best] == stop.best_iteration
    np.testing.assert_array_equal(res.x, stop.best_x)
    assert problem.value(res.x) == pytest.approx(res.history["objective"][best], rel=1e-9)
    if res.status == "validation":
        assert len(val) - 1 - best == 3
        assert "best validation loss" in res.message


def test_validation_picks_the_stopping_point_of_a_semi_converging_run(noisy):
    """10 % noise: the error rises after an early minimum; validation stops near it, fixed 100 iterations do not."""
    problem = build_problem(noisy, validation=0.1)
    full = solve_staged(problem, problem.start(), "lbfgs", maxiter=100)
    err = full.history["error_total"]
    stopped = solve_staged(problem, problem.start(), "lbfgs", maxiter=100, stopping=StopOnValidation(10))
    chosen = problem.relative_errors(stopped.x)["total"]
    assert chosen <= 1.03 * err.min() and chosen < err[-1]


def test_cli_stop_validation_and_run_file(tmp_path, noisy, capsys):
    data = tmp_path / "d.h5"
    save_dataset(data, noisy)
    assert main(["reconstruct", str(data), "-o", str(tmp_path / "a.h5"), "--stop", "validation", "--patience", "4",
                 "--iterations", "80", "--no-refit"]) == 0  # the refit: tests/test_validation_refit.py
    out = capsys.readouterr().out
    res = load_result(tmp_path / "a.h5")
    assert res["status"] == "validation" and "(best validation)" in out
    best = res["config"]["returned_iteration"]
    assert best == int(np.nanargmin(res["history"]["validation_total"]))
    run = tmp_path / "run.toml"
    run.write_text('iterations = 80\n[stopping]\nrule = "validation"\npatience = 4\nrefit = false\n')
    assert main(["reconstruct", str(data), "-o", str(tmp_path / "b.h5"), "--config", str(run)]) == 0
    np.testing.assert_array_equal(load_result(tmp_path / "b.h5")["variables"]["x"], res["variables"]["x"])
    # a fraction alone records the validation loss, runs every iteration
    assert main(["reconstruct", str(data), "-o", str(tmp_path / "c.h5"), "--validation-fraction", "0.05",
                 "--iterations", "5"]) == 0
    c = load_result(tmp_path / "c.h5")
    assert c["status"] == "maxiter" and "validation_total" in c["history"]


@pytest.mark.parametrize(("text", "message"), [
    ('[stopping]\nrule = "sometimes"\n', "stopping rule"),
    ('[stopping]\nfraction = 1.5\n', "fraction"),
    ('[stopping]\npatience = 0\n', "patience"),
    ('[stopping]\nwhen = 3\n', "unknown stopping setting"),
])
def test_bad_stopping_settings_exit_2(tmp_path, noisy, capsys, text, message):
    data = tmp_path / "d.h5"
    save_dataset(data, noisy)
    run = tmp_path / "run.toml"
    run.write_text(text)
    capsys.readouterr()
    assert main(["reconstruct", str(data), "-o", str(tmp_path / "r.h5"), "--config", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_resume_keeps_the_best_iterate(tmp_path, killed_and_resumed):
    data = tmp_path / "d.h5"
    save_dataset(data, simulate("phantom", n=96, probe_size=32, step=8, noise=0.1, seed=1))
    full, resumed = killed_and_resumed([sys.executable, "-m", "multimodal_ip.cli", "reconstruct", str(data),
                                        "--iterations", "60", "--checkpoint-every", "2", "--stop", "validation",
                                        "--patience", "15"])
    np.testing.assert_array_equal(resumed["variables"]["x"], full["variables"]["x"])
    assert resumed["config"]["returned_iteration"] == full["config"]["returned_iteration"]


def test_mpi_ranks_hold_out_the_same_values(tmp_path, noisy, mpiexec):
    data = tmp_path / "d.h5"
    save_dataset(data, noisy)
    flags = ["--iterations", "30", "--stop", "validation", "--patience", "3", "--dtype", "float64", "--no-refit"]
    assert main(["reconstruct", str(data), "-o", str(tmp_path / "r1.h5"), *flags]) == 0
    proc = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "multimodal_ip.cli", "reconstruct", str(data),
                           "-o", str(tmp_path / "r2.h5"), *flags], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one, two = load_result(tmp_path / "r1.h5"), load_result(tmp_path / "r2.h5")
    np.testing.assert_allclose(two["history"]["validation_total"], one["history"]["validation_total"], rtol=1e-9)
    assert two["config"]["returned_iteration"] == one["config"]["returned_iteration"]
