"""Hostile run files and file names: directories, invalid UTF-8, deep nesting, oversized files, FIFOs and devices,
names with a NUL byte; each one line, exit 2, without hanging."""

import os

import pytest
from hostile_helpers import run

from multimodal_ip.cli import main

RUN_FILES = {
    "directory": (lambda p: p.mkdir(), "expected a regular run file, got a directory"),
    "invalid utf-8": (lambda p: p.write_bytes(b"iterations = \xff\xfe\n"), "not valid UTF-8"),
    # too deep for the parser, or (under a raised recursion limit: mypy's, when it ran in the same process) parsed
    # and refused for its unknown key: one line either way
    "deep nesting": (lambda p: p.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n"),
                     ("invalid TOML", "unknown setting 'a'")),
    "too large": (lambda p: p.write_text("# " + "x" * (2 << 20) + "\n"), "more than the"),
    "unknown method": (lambda p: p.write_text('solver_options = {method = "bogus"}\n'), "lbfgs method must be"),
    "bad regularizer table": (lambda p: p.write_text('regularizers = [{name = "tv"}]\n'), "needs name"),
    "term options for a missing term": (lambda p: p.write_text('[term_options.sonar]\nloss = "x"\n'),
                                        "term_options"),
}


@pytest.mark.parametrize("name", RUN_FILES)
def test_bad_run_files(case, capsys, name):
    root, _ = case
    build, message = RUN_FILES[name]
    build(root / "run.toml")
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--config", root / "run.toml"], 2, message,
        capsys)


def test_special_files_are_refused_without_hanging(case, capsys):
    root, _ = case
    fifo = root / "fifo"
    os.mkfifo(fifo)
    run(root, ["reconstruct", fifo, "-o", root / "r.h5"], 2, "got a FIFO", capsys, inputs=[root / "d.h5"])
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--config", fifo], 2, "got a FIFO", capsys,
        inputs=[root / "d.h5"])
    run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--config", "/dev/zero"], 2, "not a regular",
        capsys, inputs=[root / "d.h5"])
    run(root, ["import", "--ptycho", fifo, "-o", root / "x.h5"], 2, "got a FIFO", capsys, inputs=[root / "d.h5"])


@pytest.mark.parametrize("where", ["data", "output", "config"])
@pytest.mark.parametrize("command", ["reconstruct", "compare", "tune"])
def test_file_names_with_a_nul_byte_are_bad_input(case, capsys, where, command):
    """The OS cannot name such a file (os.stat raises ValueError): one line, exit 2 (was an internal error)."""
    root, _ = case
    data, out = str(root / "d.h5"), str(root / "out")
    argv = [command, data + "\x00x" if where == "data" else data, "-o", out + "\x00" if where == "output" else out,
            "--iterations", "1"] + (["--config", "\x00"] if where == "config" else [])
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "NUL byte" in err and len(err.splitlines()) == 1
