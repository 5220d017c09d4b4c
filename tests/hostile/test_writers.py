"""Hostile outputs: never written over an input at any spelling, bad output names, stale temporaries removed, the
umask respected, a failed checkpoint write that does not end the run."""

import os
import shutil
from pathlib import Path

import pytest
from hostile_helpers import run

from multimodal_ip.cli import main


# ---- outputs: never over an input, at any spelling --------------------------------------------------------------
def test_output_over_an_input_at_any_spelling(case, capsys):
    root, _ = case
    data = root / "d.h5"
    os.symlink(data, root / "link.h5")
    os.link(data, root / "hard.h5")
    for out in (data, root / "link.h5", root / "hard.h5", Path(os.path.relpath(data))):
        run(root, ["reconstruct", data, "-o", out, "--iterations", "1"], 2, "it is the input", capsys)
    shutil.copy(data, root / "r.h5.ckpt.h5")  # the checkpoint name of -o r.h5
    run(root, ["reconstruct", root / "r.h5.ckpt.h5", "-o", root / "r.h5", "--iterations", "2",
               "--checkpoint-every", "1"], 2, "it is the input", capsys)
    run(root, ["compare", data, "-o", root, "--iterations", "1"], 2, "contains the input", capsys)
    (root / "cfg.toml").write_text("iterations = 1\n")
    run(root, ["reconstruct", data, "-o", root / "cfg.toml", "--config", root / "cfg.toml"], 2, "it is the input",
        capsys)


@pytest.mark.parametrize(("out", "message"), [("", "empty output name"), ("a\nb.h5", "contains a newline"),
                                              ("d.h5/r.h5", "is not a folder"), ("sub", "it is a folder")])
def test_bad_output_names(case, capsys, out, message):
    root, _ = case
    (root / "sub").mkdir()
    target = out if not out or "\n" in out else str(root / out)
    run(root, ["reconstruct", root / "d.h5", "-o", target, "--iterations", "1"], 2, message, capsys)


def test_import_never_writes_over_its_inputs(tmp_path, tiny_dataset, capsys):
    from mmip_fluorescence.maps import export_maps
    from mmip_ptychography.cxi import Frame, export_cxi

    root = tmp_path / "imp"
    root.mkdir()
    export_cxi(root / "scan.cxi", tiny_dataset.terms["ptychography"], pixel_size_m=1e-8)
    frame = Frame(1e-8, (0.0, 0.0), (48, 48))
    export_maps(root / "maps.h5", tiny_dataset.terms["fluorescence"], frame)
    os.symlink(root / "scan.cxi", root / "alias.cxi")
    for out in ("scan.cxi", "alias.cxi", "maps.h5"):
        run(root, ["import", "--ptycho", root / "scan.cxi", "--xrf", root / "maps.h5", "-o", root / out], 2,
            "it is the input", capsys)


def test_stale_temporaries_are_removed_and_umask_respected(case, capsys):
    root, _ = case
    from multimodal_ip.atomic import temporary_marker, temporary_prefix

    # a temporary of this program on this machine whose pid cannot be running, its marker inside: provably ours
    # (tests/hostile/test_storage.py: what is not provably ours stays)
    stale = root / (temporary_prefix(root / "r.h5").replace(f".{os.getpid()}.", ".999999999.", 1) + "abc.tmp")
    stale.write_bytes(temporary_marker(999999999).ljust(512, b"\0") + b"x" * 100)
    old = os.umask(0o027)
    try:
        run(root, ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "1"], 0, "", capsys,
            inputs=[root / "d.h5"])
    finally:
        os.umask(old)
    assert not stale.exists()
    assert (root / "r.h5").stat().st_mode & 0o777 == 0o640


def test_a_failed_checkpoint_write_does_not_end_the_run(case, capsys, monkeypatch):
    import multimodal_ip.io.results as results
    from multimodal_ip.errors import DataError

    root, _ = case

    def full_disk(*args, **kwargs):
        msg = "cannot write r.h5.ckpt.h5: No space left on device"
        raise DataError(msg)

    monkeypatch.setattr(results, "save_checkpoint", full_disk)
    code = main([str(a) for a in ["reconstruct", root / "d.h5", "-o", root / "r.h5", "--iterations", "3",
                                  "--checkpoint-every", "1"]])
    err = capsys.readouterr().err
    assert code == 0 and err.count("checkpoint not written") == 1
    assert not list(root.glob(".*.tmp"))
