"""Shared by the hostile-input suites: every case ends with its documented exit code and one line, inputs untouched
(checksums), no Python-level open outside the case folder (audit hook), no leftover temporaries.

Each case builds its files in its own folder from the small simulated dataset (the fixtures ``base`` and ``case`` of
this folder's conftest.py); a ``secret.h5`` beside that folder stands for a file the program must never read.
"""

import hashlib
import os
import sys
from pathlib import Path

import h5py

from multimodal_ip.cli import main

OPENED: list = []


def _audit(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "-"


def run(root, argv, code, message, capsys, inputs=None):
    """Run ``mmip argv``; check exit code, one line, inputs unchanged, nothing opened outside ``root``."""
    inputs = [Path(p) for p in (inputs if inputs is not None else root.rglob("*")) if Path(p).is_file()]
    before = {p: digest(p) for p in inputs}
    OPENED.clear()
    got = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    outside = [p for p in OPENED if "secret" in p]
    assert got == code, err
    if code:
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert any(m in err for m in (message if isinstance(message, tuple) else (message,))), err
    assert not outside, outside
    assert {p: digest(p) for p in inputs} == before
    assert not list(root.rglob("*.tmp")), list(root.rglob("*.tmp"))
    return err


def edit(path, fn):
    with h5py.File(path, "a") as f:
        fn(f)


def replace_dataset(path, value):
    def fn(f):
        del f[path]
        f[path] = value
    return fn


def bomb(f, path, shape):
    """A dataset of ``shape`` that is a few kB on disk (chunked, compressed, all fill value)."""
    if path in f:
        del f[path]
    f.create_dataset(path, shape=shape, dtype="f4", compression="gzip", fillvalue=1.0,
                     chunks=(1,) * (len(shape) - 2) + shape[-2:])


def cxi_file(root, tiny_dataset):
    from mmip_ptychography.cxi import export_cxi

    export_cxi(root / "scan.cxi", tiny_dataset.terms["ptychography"], pixel_size_m=1e-8)
    return root / "scan.cxi"
