"""The run as a process under attack: resume from another dataset or a bad checkpoint, SIGINT/SIGTERM (exit 130,
a consistent checkpoint), an unexpected exception (one line and a log)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hostile_helpers import run

from multimodal_ip.cli import main
from multimodal_ip.io import save_dataset


# ---- checkpoints and resume ---------------------------------------------------------------------------------
def test_resume_refuses_another_dataset_and_bad_checkpoints(case, capsys, tiny_dataset):
    from dataclasses import replace

    root, _ = case
    argv = ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "6", "--checkpoint-every", "2"]
    run(root, argv[:5] + ["2", "--checkpoint-every", "1"], 0, "", capsys)
    # a checkpoint as an interrupted run leaves it
    from multimodal_ip.io.results import load_checkpoint, save_checkpoint
    from multimodal_ip.safety import file_fingerprint

    (root / "keep").mkdir()
    state = {"solver": "lbfgs", "iteration": 1, "elapsed": 0.1, "scalars": {},
             "arrays": {"x": np.ones(2 * 48 * 48), "s_list": np.zeros((0, 2 * 48 * 48)),
                        "y_list": np.zeros((0, 2 * 48 * 48))}, "history": {"iteration": np.zeros(1)}}
    from multimodal_ip.cli import build_parser
    from multimodal_ip.config import run_config

    cfg = run_config(build_parser().parse_args([str(a) for a in argv]))
    ckpt = root / "r.h5.ckpt.h5"
    other = root / "other.h5"
    ds = replace(tiny_dataset, terms={k: replace(t, arrays={**t.arrays, "data": t.arrays["data"] * 1.01})
                                      for k, t in tiny_dataset.terms.items()})
    save_dataset(other, ds)
    save_checkpoint(ckpt, state, cfg, file_fingerprint(other))
    run(root, [*argv, "--resume"], 2, "made from another input", capsys)
    state["arrays"]["x"] = np.full(2 * 48 * 48, np.nan)
    save_checkpoint(ckpt, state, cfg, file_fingerprint(root / "d.h5"))
    run(root, [*argv, "--resume"], 2, "contains NaN or Inf", capsys)
    ckpt.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(2000))
    run(root, [*argv, "--resume"], 2, "r.h5.ckpt.h5", capsys)
    state["arrays"]["x"] = np.ones(7)
    save_checkpoint(ckpt, state, cfg, file_fingerprint(root / "d.h5"))
    run(root, [*argv, "--resume"], 2, "holds x of shape (7,)", capsys)
    assert load_checkpoint(ckpt)[1]["fingerprint"] == file_fingerprint(root / "d.h5")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_exits_130_with_a_consistent_checkpoint(case, sig):
    root, _ = case
    from multimodal_ip.io.results import load_checkpoint

    # a run long enough to be interrupted: 625 patterns at 10 % noise, far from round-off convergence
    assert main(["simulate", "phantom", "-o", str(root / "d.h5"), "--n", "128", "--probe-size", "32", "--step", "4",
                 "--noise", "0.1"]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "multimodal_ip.cli", "reconstruct", str(root / "d.h5"), "-o",
                             str(root / "r.h5"), "--iterations", "100000", "--checkpoint-every", "1",
                             "--solver-option", "gtol=0"], stderr=subprocess.PIPE, text=True,
                            # a shell's background job inherits SIGINT ignored; a terminal user's run does not
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    ckpt = root / "r.h5.ckpt.h5"
    deadline = time.time() + 60
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].endswith("interrupted") and "Traceback" not in err
    state, _ = load_checkpoint(ckpt)
    assert state["iteration"] >= 1 and not list(root.glob(".*.tmp"))


def test_unexpected_exceptions_are_one_line_with_a_log(case, capsys, monkeypatch):
    root, _ = case
    import multimodal_ip.cli as cli

    def boom(args):
        msg = "a bug"
        raise ZeroDivisionError(msg)

    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser(), boom))
    assert main(["plugins"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "internal error: ZeroDivisionError: a bug" in err
    log = Path(err.split("traceback in ")[1].split(";")[0])
    assert "Traceback" in log.read_text()
    log.unlink()


def _with_func(parser, func):
    for action in parser._subparsers._group_actions:
        for sub in action.choices.values():
            sub.set_defaults(func=func)
    return parser
