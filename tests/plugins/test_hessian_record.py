"""``mmip hessian`` records the block size it ran with in ``hessian.json`` (entry ``run``), the one the memory budget
fitted included (before, only its warning line named it)."""

import json

import pytest

import multimodal_ip.run_budget as run_budget
from multimodal_ip.cli import main


@pytest.fixture(scope="module")
def data(phantom_file):
    """A small joint file with its truth (12 x 12 object: 288 unknowns, a dense study of a few seconds)."""
    return phantom_file(12, 12, "--noise", "0.03")


def test_the_fitted_block_size_is_in_hessian_json(data, tmp_path, monkeypatch, capsys):
    """Just below the study's own estimate the budget fits smaller blocks: ``hessian.json`` names them (the chunk size
    of the estimate kept, as the warning line does) and says they were fitted; within the budget, default blocks."""
    import mmip_paper.hessian as hessian

    kept: list = []
    real = run_budget.fit_run
    monkeypatch.setattr(run_budget, "fit_run", lambda *a, **k: kept.append(real(*a, **k)) or kept[-1])
    program = run_budget._resident_bytes()  # the program's share is its resident memory, which drifts: pinned
    monkeypatch.setattr(run_budget, "_resident_bytes", lambda: program)
    argv = ["hessian", str(data), "--grid", "3", "--k", "2"]
    monkeypatch.setenv("MMIP_MAX_MEMORY", "8G")
    seen: list = []
    study = hessian.hessian_study
    monkeypatch.setattr(hessian, "hessian_study", lambda *a, **k: seen.append(k["run"]) or "wrote")
    assert main([*argv, "-o", str(tmp_path / "own")]) == 0
    own = kept[-1]
    assert own.chunk_bytes is None and seen == [{"chunk_memory": None, "fitted": False}]
    monkeypatch.setattr(hessian, "hessian_study", study)
    monkeypatch.setenv("MMIP_MAX_MEMORY", str(own.total - 1))
    capsys.readouterr()
    assert main([*argv, "-o", str(tmp_path / "fitted")]) == 0
    fitted = kept[-1]
    warned = [line for line in capsys.readouterr().err.splitlines() if "to fit" in line]
    assert fitted.chunk_bytes and fitted.fits and len(warned) == 1
    assert f"blocks of {fitted.chunk_bytes / 2**20:g} MiB" in warned[0]
    record = json.loads((tmp_path / "fitted" / "hessian.json").read_text())
    assert record["run"] == {"chunk_memory": fitted.chunk_bytes, "fitted": True}
    assert record["joint"]["n_eigenvalues"] == 288
