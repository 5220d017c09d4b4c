"""``mmip reconstruct --resume`` plans the checkpoint it reads: the stacked L-BFGS pairs (the restored pairs are
views of them, held through the resumed solve), its iterate and best iterate, so a budget the run alone fits but the
resumed run does not is fitted or refused before the read instead of exceeded."""

import numpy as np

import multimodal_ip.run_budget as run_budget
from multimodal_ip.cli import main


def test_a_resumed_run_plans_its_checkpoint(tmp_path, monkeypatch):
    data, out = tmp_path / "d.h5", tmp_path / "r.h5"
    assert main(["simulate", "phantom", "-o", str(data), "--n", "20", "--probe-size", "12", "--step", "4",
                 "--noise", "0.03"]) == 0
    seen = []
    real = run_budget.fit_run

    def fit(space, *a, **kw):
        seen.append((space.size, dict(kw.get("extra") or {})))
        return real(space, *a, **kw)

    monkeypatch.setattr(run_budget, "fit_run", fit)
    import shutil

    import multimodal_ip.io.results as results

    save = results.save_checkpoint

    def keep(path, *args, **kwargs):  # the last checkpoint kept (the run removes its own once it is done)
        save(path, *args, **kwargs)
        shutil.copy(path, tmp_path / "kept.ckpt.h5")

    monkeypatch.setattr(results, "save_checkpoint", keep)
    argv = ["reconstruct", str(data), "-o", str(out), "--stop", "iterations", "--solver-option", "memory=4"]
    assert main([*argv, "--iterations", "6", "--checkpoint-every", "2"]) == 0
    assert "resumed checkpoint" not in seen[-1][1]
    shutil.copy(tmp_path / "kept.ckpt.h5", out.with_name(out.name + ".ckpt.h5"))
    assert main([*argv, "--iterations", "6", "--resume"]) == 0
    size, parts = seen[-1]
    vector = size * np.dtype(np.float32).itemsize  # the CLI's default precision
    assert parts["resumed checkpoint"] == (2 * 4 + 2) * vector
