"""Hostile flags and environment: bad solver options, terms, balancing, regularizers, simulations, report and
hessian flags, environment variables, an overflowing balance; each one line, exit 2."""

import pytest
from hostile_helpers import run

from multimodal_ip.cli import main


# ---- run files, flags and environment ------------------------------------------------------------------------
@pytest.mark.parametrize(("flags", "message"), [
    (["--solver-option", "gtol=abc"], "option gtol='abc': expected a finite number"),
    (["--solver-option", "memory=abc"], "option memory='abc': expected a positive integer"),
    (["--solver-option", "memory=0"], "expected a positive integer"),
    (["--solver", "gauss-newton", "--solver-option", "inner_iterations=-5"], "expected a positive integer"),
    (["--solver-option", "method=nope"], "lbfgs method must be"),
    (["--terms", ""], "terms must be a non-empty list"),
    (["--terms", "ptychography,ptychography"], "lists a term twice"),
    (["--balance-c", "nan"], "balance_c must be a finite number > 0"),
    (["--balance-c", "-1"], "balance_c must be a finite number > 0"),
    (["--balance-c", "1e308"], "balance_c must be a finite number > 0"),
    (["--balance-reference", "sonar"], "is not one of the terms"),
    (["--refine", "wobble"], "cannot refine ['wobble']"),
    (["--regularizer", "tv:abc:x"], "strength must be a number"),
    (["--regularizer", "tv:1e-3:nope"], "nope"),
    (["--regularizer", "sharpen:1:x"], "no regularizer 'sharpen'"),
    (["--solver", "admm"], "needs at least one regularizer"),
])
def test_bad_flags(case, capsys, flags, message):
    root, _ = case
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1", *flags], 2, message, capsys)


def test_admm_from_the_command_line(case, capsys):
    root, _ = case
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "2", "--solver", "admm",
               "--regularizer", "tv:1e-4:x,w", "--regularizer", "nonnegative::w"], 0, "", capsys)


@pytest.mark.parametrize(("var", "value", "message"), [("PMI_SIZE", "abc", "PMI_SIZE='abc'"),
                                                       ("MMIP_FFT_WORKERS", "0", "MMIP_FFT_WORKERS='0'"),
                                                       ("MMIP_MAX_MEMORY", "lots", "MMIP_MAX_MEMORY='lots'"),
                                                       ("MMIP_BLAS_THREADS", "0", "MMIP_BLAS_THREADS='0'")])
def test_bad_environment(case, capsys, monkeypatch, var, value, message):
    root, _ = case
    monkeypatch.setenv(var, value)
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1"], 2, message, capsys)


@pytest.mark.parametrize(("argv", "message"), [
    (["simulate", "phantom", "--n", "0"], "--n must be >= 1"),
    (["simulate", "phantom", "--step", "0"], "--step must be >= 1"),
    (["simulate", "phantom", "--probe-size", "0"], "--probe-size must be >= 1"),
    (["simulate", "phantom", "--n-elements", "0"], "--n-elements must be >= 1"),
    (["simulate", "phantom", "--seed", "-1"], "--seed must be >= 0"),
    (["simulate", "phantom", "--noise", "nan"], "--noise must be"),
    (["simulate", "phantom", "--position-jitter", "nan"], "--position-jitter must be"),
    (["simulate", "phantom", "--n", "200000"], "memory budget"),
    (["simulate", "phantom", "--n", "32", "--probe-size", "8"], "zone-plate"),
])
def test_bad_simulations(case, capsys, argv, message):
    root, _ = case
    run(root, [*argv, "-o", root / "s.h5"], 2, message, capsys)
    assert not (root / "s.h5").exists()


def test_report_and_hessian_flags(case, capsys):
    root, _ = case
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "2"], 0, "", capsys)
    run(root, ["report", root / "r.h5", "-o", root / "r.h5"], 2, "it is the input", capsys)
    run(root, ["report", root / "d.h5", "-o", root / "rep"], 2, "not a multimodal_ip result file", capsys)
    for flag in ("--grid", "--k", "--dense-max"):
        run(root, ["hessian", root / "d.h5", "-o", root / "h", flag, "0"], 2, f"{flag} must be >= 1", capsys)


@pytest.mark.parametrize(("command", "dtype", "message"), [
    ("reconstruct", "float64", "balancing against"),
    ("tune", "float64", "held-out loss at the flat start is not finite"),
    ("reconstruct", "float32", "do not fit the compute precision float32"),
    ("tune", "float32", "do not fit the compute precision float32")])
def test_overflowing_balance_is_one_line(case, capsys, command, dtype, message):
    """A coupling so large the start gradients overflow (float64), or that float32 cannot hold: one error line, no
    numpy warnings before it (found by the flag fuzzer: tune --coupling 1e308)."""
    root, _ = case
    capsys.readouterr()
    assert main([command, str(root / "d.h5"), "-o", str(root / "out"), "--iterations", "1", "--coupling",
                 "1e308", "--dtype", dtype]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
