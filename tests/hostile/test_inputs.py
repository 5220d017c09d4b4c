"""Hostile inputs, third pass (issue 36, items 5, 8, 10, 11, 12): option values, run files and facility files that
used to end in an internal error, a hang under MPI, a silent surprise or a traceback. Each case: its exit code, one
line, the inputs unchanged."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multimodal_ip.cli import main
from multimodal_ip.io import save_dataset


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_dataset):
    path = tmp_path_factory.mktemp("inputs") / "base.h5"
    save_dataset(path, tiny_dataset)
    return path


@pytest.fixture
def root(tmp_path, base):
    """A case folder holding ``d.h5``, a copy of the small simulated dataset."""
    (tmp_path / "d.h5").write_bytes(base.read_bytes())
    return tmp_path


def run(root, argv, code, message, capsys):
    """``mmip argv``: exit ``code``, for an error one line holding ``message``; every file of ``root`` unchanged
    (new files may appear on success). The stderr text."""
    before = {p: _digest(p) for p in root.rglob("*") if p.is_file()}
    capsys.readouterr()
    got = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert got == code, err
    if code:
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err
    assert {p: _digest(p) for p in before if p.exists()} == before
    assert all(p.exists() for p in before)
    return err


def _edit(path, fn):
    with h5py.File(path, "a") as f:
        fn(f)


def _set(key, value, attr=None):
    """An edit replacing dataset ``key`` (or its attribute ``attr``) of a file by ``value``."""
    def edit(f):
        if attr is not None:
            f[key].attrs[attr] = value
            return
        if key in f:
            del f[key]
        f[key] = value
    return edit


# ---- item 10: malformed values are bad input (exit 2), not internal errors ----------------------------------------
RUN_FILES = {
    "maxiter as a solver option": ("[solver_options]\nmaxiter = 5\n", "'maxiter' is set by --iterations"),
    "max_time_s not a number": ('[solver_options]\nmax_time_s = "abc"\n', "max_time_s='abc': expected a number"),
    "admm tau not a number": ('solver = "admm"\nregularizers = [{name = "tv", strength = 1e-4, variables = ["x"]}]\n'
                              '[solver_options]\ntau = "abc"\n', "tau='abc': expected a number > 0"),
    "admm tau zero": ('solver = "admm"\nregularizers = [{name = "tv", strength = 1e-4, variables = ["x"]}]\n'
                      "[solver_options]\ntau = 0\n", "tau=0: expected a number > 0"),
    "wolfe constants": ("[solver_options]\nc1 = 0.95\n", "expected 0 < c1 < c2 < 1"),
    "gauss-newton inner_rtol": ('solver = "gauss-newton"\n[solver_options]\ninner_rtol = 1e308\n',
                                "inner_rtol=1e+308: expected a number in (0, 1]"),
    "term options not a table": ('term_options.ptychography = "abc"\n', "term_options.ptychography must be a table"),
    "term option set by the builder": ("[term_options.ptychography]\nrefine = 0\n", "is set by --refine"),
    "unknown fluorescence method": ('[term_options.fluorescence]\nmethod = "bogus"\n',
                                    "fluorescence method must be 'auto', 'fft' or 'gather'"),
    "huge tv eps": ('regularizers = [{name = "tv", strength = 1e-4, variables = ["x"], eps = 1e308}]\n',
                    "setting 'eps' must be finite, >= 0 and < 1e100"),
}


@pytest.mark.parametrize("name", RUN_FILES)
def test_malformed_run_file_values(root, capsys, name):
    body, message = RUN_FILES[name]
    (root / "run.toml").write_text(body)
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1", "--config", root / "run.toml"],
        2, message, capsys)
    assert not (root / "r.h5").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--solver-option", "maxiter=5"], "'maxiter' is set by --iterations"),
    (["--solver-option", "max_time_s=abc"], "max_time_s='abc': expected a number >= 0"),
    (["--solver", "admm", "--regularizer", "tv:1e-4:x", "--solver-option", "tau=abc"], "tau='abc'"),
])
@pytest.mark.parametrize("command", ["reconstruct", "tune"])
def test_malformed_solver_flags(root, capsys, flags, message, command):
    run(root, [command, root / "d.h5", "-o", root / "out", "--iterations", "1", *flags], 2, message, capsys)


@pytest.mark.parametrize(("edit", "message"), [
    (_set("/", "abc", attr="balance_c"), "root attribute balance_c must be a finite number > 0; got 'abc'"),
    (_set("/", np.array([1.0, 2.0]), attr="balance_c"), "root attribute balance_c must be a finite number"),
])
def test_malformed_dataset_attributes(root, capsys, edit, message):
    _edit(root / "d.h5", edit)
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1"], 2, message, capsys)


@pytest.fixture(scope="module")
def tomo(tmp_path_factory):
    path = tmp_path_factory.mktemp("tomo") / "t.h5"
    assert main(["simulate", "tomo-phantom", "-o", str(path), "--n", "16", "--angles", "8"]) == 0
    return path


@pytest.mark.parametrize(("edit", "message"), [
    (_set("terms/transmission", "abc", attr="ray_step"), "attribute 'ray_step' = 'abc' is not a valid float"),
    (_set("terms/transmission", -1.0, attr="ray_step"), "attribute 'ray_step' must be a finite number of pixels"),
    # item 8: transmissions are I/I0, the known attenuation is not negative
    (lambda f: f["terms/transmission/data"].__setitem__((0, 0), 1.5), "transmissions I/I0 must lie in [0, 1]"),
    (lambda f: f["terms/transmission/data"].__setitem__(slice(None), 5000.0), "raw counts?"),
    (_set("terms/transmission/matrix", -0.01 * np.ones((16, 16))), "a known attenuation must be >= 0"),
])
def test_malformed_tomography_files(tmp_path, tomo, capsys, edit, message):
    (tmp_path / "t.h5").write_bytes(tomo.read_bytes())
    _edit(tmp_path / "t.h5", edit)
    run(tmp_path, ["reconstruct", tmp_path / "t.h5", "-o", tmp_path / "r.h5", "--iterations", "1"], 2, message,
        capsys)


@pytest.fixture(scope="module")
def result(tmp_path_factory, base):
    path = tmp_path_factory.mktemp("result") / "r.h5"
    assert main(["reconstruct", str(base), "-o", str(path), "--iterations", "2"]) == 0
    return path


def _history(kind):
    def edit(f):
        h = f["results/history"]
        names = list(h)
        if kind == "empty":
            for k in names:
                del h[k]
                h[k] = np.zeros(0)
        else:
            del h[names[0]]
            h[names[0]] = np.zeros(1) if kind == "ragged" else np.zeros((3, 2))
    return edit


@pytest.mark.parametrize("kind", ["empty", "ragged", "2-D"])
def test_report_on_a_malformed_history(tmp_path, result, capsys, kind):
    (tmp_path / "r.h5").write_bytes(result.read_bytes())
    _edit(tmp_path / "r.h5", _history(kind))
    run(tmp_path, ["report", tmp_path / "r.h5", "-o", tmp_path / "rep"], 2,
        "expected numeric columns of one length >= 1", capsys)
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("command", ["reconstruct", "report", "import", "compare"])
def test_output_names_too_long_are_refused_up_front(root, result, capsys, command):
    """A 5000-character -o (internal error before); a 243-character -o of a file output fits the file system but
    not with its checkpoint and temporaries: refused before the solve, not after it (a folder's files are named
    inside it: 243 characters are fine there)."""
    source = {"report": result, "import": root / "d.h5"}.get(command, root / "d.h5")
    argv = {"report": ["report", source], "import": ["import", "--ptycho", source]}.get(command, [command, source])
    for length in (5000, 243) if command in ("reconstruct", "import") else (5000,):
        start = time.perf_counter()
        err = run(root, [*argv, "-o", root / ("a" * length), *(["--iterations", "50"] if command in
                                                                  ("reconstruct", "compare") else [])],
                  2, "bytes long; this file system allows", capsys)
        assert time.perf_counter() - start < 5, err  # refused before any work
    assert not list(root.glob("a*"))


def test_a_read_only_output_is_kept(root, capsys):
    """Replacing a result its owner made read-only (chmod a-w) would be a surprise: refused (README, exit codes)."""
    out = root / "r.h5"
    out.write_bytes(b"keep me")
    out.chmod(0o444)
    try:
        run(root, ["reconstruct", root / "d.h5", "-o", out, "--iterations", "1"], 2,
            "the file exists and is read-only", capsys)
        assert out.read_bytes() == b"keep me"
    finally:
        out.chmod(0o644)


def test_report_into_a_read_only_folder(root, result, capsys):
    """Was an internal error (PermissionError) for a user; refused up front, whoever runs it."""
    out = root / "rep"
    out.mkdir()
    out.chmod(0o555)
    try:
        run(root, ["report", result, "-o", out], 2, "refusing to write into", capsys)
        assert not list(out.iterdir())
    finally:
        out.chmod(0o755)


# ---- item 8: import ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("edit", "message"), [
    (lambda f: (f["entry_1/instrument_1/detector_1/x_pixel_size"].__setitem__((), 1e-300),
                f["entry_1/instrument_1/detector_1/y_pixel_size"].__setitem__((), 1e-300)),
     "outside [1e-12, 0.001] m"),
    (lambda f: _set("entry_1/data_1/data", np.ones((25, 16, 12)))(f), "patterns must be square"),
])
def test_import_refuses_impossible_geometry(tmp_path, tiny_dataset, capsys, edit, message):
    from mmip_ptychography.cxi import export_cxi

    export_cxi(tmp_path / "scan.cxi", tiny_dataset.terms["ptychography"], pixel_size_m=1e-8)
    _edit(tmp_path / "scan.cxi", edit)
    run(tmp_path, ["import", "--ptycho", tmp_path / "scan.cxi", "-o", tmp_path / "d.h5"], 2, message, capsys)
    assert not (tmp_path / "d.h5").exists()


def test_import_refuses_positions_that_collapse(tmp_path, tiny_dataset, capsys):
    """Translations 1e-12 m apart with an object pixel of 1e-8 m: every position would be (0, 0)."""
    from mmip_ptychography.cxi import export_cxi

    export_cxi(tmp_path / "scan.cxi", tiny_dataset.terms["ptychography"], pixel_size_m=1e-8)
    _edit(tmp_path / "scan.cxi", lambda f: f["entry_1/sample_1/geometry_1/translation"].__setitem__(
        slice(None), f["entry_1/sample_1/geometry_1/translation"][()] * 1e-4))
    run(tmp_path, ["import", "--ptycho", tmp_path / "scan.cxi", "-o", tmp_path / "d.h5"], 2,
        "every position collapses onto one", capsys)


# ---- item 11: settings that do nothing warn --------------------------------------------------------------------
@pytest.mark.parametrize(("flags", "message"), [
    (["--patience", "3", "--stop", "iterations"], "patience has no effect without --stop validation"),
    (["--refine-after", "2"], "refine_after (--refine-after) has no effect without --refine"),
    (["--likelihood", "poisson", "--balance-c", "0.1"], "balance_c has no effect with --likelihood poisson"),
])
def test_settings_without_effect_warn(root, capsys, flags, message):
    capsys.readouterr()
    assert main(["reconstruct", str(root / "d.h5"), "-o", str(root / "r.h5"), "--iterations", "1", *flags]) == 0
    err = capsys.readouterr().err
    assert f"mmip reconstruct: warning: {message}" in err and err.count(message) == 1, err


@pytest.mark.parametrize("command", ["reconstruct", "tune", "compare"])
def test_a_refused_run_prints_its_error_alone(root, capsys, command):
    """The warnings wait until the inputs are checked: bad input is still one line (then exit 2)."""
    (root / "d.h5").write_bytes(b"not HDF5")
    unused = ["--patience", "3", "--refine-after", "2", "--balance-c", "0.1"] + (["--c", "0.1,0.1"] if command == "tune"
                                                                                 else [])
    run(root, [command, root / "d.h5", "-o", root / "out", "--iterations", "1", *unused], 2, "d.h5", capsys)


def test_repeated_tune_values_warn_and_run_once(root, capsys):
    capsys.readouterr()
    assert main(["tune", str(root / "d.h5"), "-o", str(root / "tune"), "--iterations", "1", "--c", "0.01,0.01",
                 "--likelihoods", "balanced,balanced"]) == 0
    out, err = capsys.readouterr()
    assert "--c: 0.01 given more than once" in err and "--likelihoods: balanced given more than once" in err, err
    rows = [line for line in (root / "tune" / "table.md").read_text().splitlines() if line.startswith("|")]
    assert sum("c=0.01" in line and "model=" not in line for line in rows) == 1, rows  # the grid: tied model


# ---- item 12: messages and signals -----------------------------------------------------------------------------
def test_escape_characters_in_names_do_not_reach_the_terminal(root, capsys):
    name = root / "a\x1b[2J\x1b]0;pwned\x07.h5"
    err = run(root, ["reconstruct", name, "-o", root / "r.h5"], 2, "\\x1b[2J", capsys)
    assert not any(c in err for c in "\x1b\x07"), repr(err)


def test_values_that_overflow_float32_are_named(root, capsys):
    _edit(root / "d.h5", lambda f: f["terms/ptychography/data"].__setitem__((24, 0, 0), 1e300))
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1"], 2,
        "values up to 1e+300 overflow float32 (largest 3.4e+38); use --dtype float64", capsys)


def test_exit_code_of_sigterm_is_documented_once():
    from multimodal_ip.errors import EXIT_CODES

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "SIGTERM" in EXIT_CODES[130] and 143 not in EXIT_CODES
    assert "130 interrupted (Ctrl-C or SIGTERM" in " ".join(readme.split())


def test_an_interrupt_during_start_up_is_one_line(tmp_path):
    """Ctrl-C while the command line is parsed (the plugins load there): exit 130, one line, no traceback."""
    code = ("import sys, time, multimodal_ip.cli as cli\n"
            "def slow():\n    print('parsing', flush=True)\n    time.sleep(30)\n"
            "cli.build_parser = slow\nsys.exit(cli.main())\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline().strip() == "parsing"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and err.strip() == "mmip: interrupted", err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_program_interrupted_while_it_loads(sig):
    """The program's entry point (console script, python -m multimodal_ip) loads the command line (numpy, the
    plugins) with both signals ending it as 130 and one line: a slowed import of multimodal_ip.cli stands for it."""
    code = ("import importlib.abc, sys, time\n"
            "class Slow(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name == 'multimodal_ip.cli':\n"
            "            print('loading', flush=True)\n"
            "            time.sleep(30)\n"
            "sys.meta_path.insert(0, Slow())\n"
            "from multimodal_ip._entry import main\n"
            "sys.exit(main())\n")
    proc = subprocess.Popen([sys.executable, "-c", code, "reconstruct", "x.h5", "-o", "r.h5"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline().strip() == "loading"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and err.strip() == "mmip: interrupted", err


@pytest.fixture(scope="module")
def long_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("long") / "d.h5"
    assert main(["simulate", "phantom", "-o", str(path), "--n", "96", "--probe-size", "32", "--step", "4",
                 "--noise", "0.1"]) == 0
    return path


def _long_run(data, out, sigint):
    return subprocess.Popen([sys.executable, "-m", "multimodal_ip.cli", "reconstruct", str(data), "-o", str(out),
                             "--iterations", "100000", "--checkpoint-every", "1", "--solver-option", "gtol=0"],
                            stderr=subprocess.PIPE, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))


def _wait_for(path, proc, seconds=60):
    deadline = time.time() + seconds
    while not path.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert path.exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_storm_of_signals_ends_130(tmp_path, long_data, sig):
    """Signals every millisecond for two seconds: the run ends once, with 130 and one line (was 143, or a traceback
    from a signal inside the handler of the first)."""
    proc = _long_run(long_data, tmp_path / "r.h5", signal.SIG_DFL)
    _wait_for(tmp_path / "r.h5.ckpt.h5", proc)
    end = time.time() + 2
    while time.time() < end:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:  # pragma: no cover - it has exited
            break
        time.sleep(0.001)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip() == "mmip reconstruct: interrupted", err


def test_an_ignored_sigint_interrupts_no_checkpoint(tmp_path, long_data):
    """Started with SIGINT ignored (a shell's background job): SIGINTs during the checkpoint writes change nothing;
    a SIGTERM still ends the run (130)."""
    proc = _long_run(long_data, tmp_path / "r.h5", signal.SIG_IGN)
    _wait_for(tmp_path / "r.h5.ckpt.h5", proc)
    end = time.time() + 1.5
    while time.time() < end:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.002)
    assert proc.poll() is None, proc.communicate()[1]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip() == "mmip reconstruct: interrupted", err


def test_deferred_interrupts_respect_an_ignored_sigint():
    from multimodal_ip.safety import deferred_interrupts

    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with deferred_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, old)


# ---- item 5: MPI ranks agree on bad input ----------------------------------------------------------------------
@pytest.mark.parametrize(("edit", "ranks", "message"), [
    (lambda f: f["terms/ptychography/positions"].__setitem__((24, 0), np.nan), 2,
     "/terms/ptychography/positions: contains NaN or Inf (MPI rank 1 of 2)"),
    (lambda f: f["terms/ptychography/data"].__setitem__((24, 0, 0), -5.0), 2,
     "intensities must be non-negative (min -5) (MPI rank 1 of 2)"),
    (lambda f: (_set("terms/ptychography/data", f["terms/ptychography/data"][:2])(f),
                _set("terms/ptychography/positions", f["terms/ptychography/positions"][:2])(f)), 3,
     "2 entries to split over 3 MPI ranks; run with at most 2 ranks"),
])
def test_bad_input_read_by_one_rank_ends_every_rank(root, mpiexec, edit, ranks, message):
    _edit(root / "d.h5", edit)
    before = _digest(root / "d.h5")
    proc = subprocess.run([mpiexec, "-n", str(ranks), sys.executable, "-m", "multimodal_ip.cli", "reconstruct",
                           str(root / "d.h5"), "-o", str(root / "r.h5"), "--iterations", "1"],
                          capture_output=True, text=True, timeout=120)
    # one line per rank, the same on each (mpiexec forwards the ranks' stderr as it comes: cut at the prefix)
    lines = [line.strip() for line in proc.stderr.split("mmip reconstruct: ")[1:]]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == ranks and len(set(lines)) == 1 and message in lines[0], proc.stderr[-2000:]
    assert proc.stderr.replace(f"mmip reconstruct: {lines[0]}", "").strip() == "", proc.stderr[-2000:]
    assert _digest(root / "d.h5") == before and not (root / "r.h5").exists()


# ---- the option-value fuzzer of item 10, kept: nested tables of every solver, term and regularizer ----------------
def _toml(v) -> str:
    from multimodal_ip.config import _toml_value

    return _toml_value(v)


_values = st.one_of(st.integers(-3, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4),
                    st.booleans(), st.lists(st.integers(0, 3), max_size=2), st.sampled_from([0, 1e-300, 1e308]))
_TABLES = {
    "solver_options": ["maxiter", "gtol", "ftol", "max_time_s", "align", "memory", "c1", "c2", "method"],
    "term_options.ptychography": ["loss", "dtype", "coupling", "refine", "photon_weighted", "nonsense"],
    "term_options.fluorescence": ["loss", "method", "calibration"],
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=st.sampled_from([*_TABLES, "admm", "gauss-newton", "tv"]), data=st.data())
def test_option_values_end_cleanly(root, capsys, table, data):
    """Any value of any option of a solver, term or regularizer: exit 0, 2 (one line), 3 or 4; never 1."""
    value = data.draw(_values)
    if table == "admm":
        body = ('solver = "admm"\nregularizers = [{name = "tv", strength = 1e-4, variables = ["x"]}]\n'
                f"[solver_options]\n{data.draw(st.sampled_from(['tau', 'inner', 'inner_iterations']))} = "
                f"{_toml(value)}\n")
    elif table == "gauss-newton":
        body = (f'solver = "gauss-newton"\n[solver_options]\n'
                f"{data.draw(st.sampled_from(['damping', 'inner_rtol', 'mode', 'max_rejections']))} = {_toml(value)}\n")
    elif table == "tv":
        body = (f'regularizers = [{{name = "tv", variables = ["x"], '
                f"{data.draw(st.sampled_from(['strength', 'eps']))} = {_toml(value)}}}]\n")
    else:
        body = f"[{table}]\n{data.draw(st.sampled_from(_TABLES[table]))} = {_toml(value)}\n"
    (root / "run.toml").write_text(body)
    capsys.readouterr()
    code = main(["reconstruct", str(root / "d.h5"), "-o", str(root / "r.h5"), "--iterations", "1", "--config",
                 str(root / "run.toml")])
    err = capsys.readouterr().err
    assert code in (0, 2, 3, 4), f"{body}\n{err}"
    if code == 2:
        lines = [ln for ln in err.strip().splitlines() if ": warning: " not in ln]
        assert len(lines) == 1 and "Traceback" not in err, f"{body}\n{err}"
