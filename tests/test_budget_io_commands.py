"""``mmip report``, ``export`` and ``import`` plan the whole command before the first array is read: the result's
arrays, the run's data, the copies the command makes and the program, from the files' structure, against
``MMIP_MAX_MEMORY``; over it, one line naming the files, the need and the budget, exit 2, nothing read or written
(docs/performance.md, "The budget in every command")."""

from pathlib import Path

import h5py
import pytest

import multimodal_ip.run_budget as run_budget
from multimodal_ip.cli import main
from multimodal_ip.cli.read_plan import ReadPlan

DATA = Path(__file__).parent / "data"
IMPORT = ["import", "--ptycho", str(DATA / "ptychodus_diffraction.cxi"), "--product",
          str(DATA / "ptychodus_product.h5")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """ptychodus's diffraction file, imported, and a result refining its positions (start values: the report reads
    the data too): ``(data file, result file)``."""
    folder = tmp_path_factory.mktemp("io_budget")
    data, result = folder / "d.h5", folder / "r.h5"
    assert main([*IMPORT, "-o", str(data)]) == 0
    assert main(["reconstruct", str(data), "-o", str(result), "--iterations", "1", "--refine", "positions"]) == 0
    return data, result


@pytest.fixture
def reads(monkeypatch):
    """Every array read from an HDF5 file (h5py's ``Dataset.__getitem__``), and the estimates the plans keep; the
    program's share pinned (its resident memory drifts in a test session)."""
    seen: list = []
    real = h5py.Dataset.__getitem__
    monkeypatch.setattr(h5py.Dataset, "__getitem__", lambda d, *a, **k: seen.append(d.name) or real(d, *a, **k))
    program = run_budget._resident_bytes()
    monkeypatch.setattr(run_budget, "_resident_bytes", lambda: program)
    kept: list = []
    check = ReadPlan.check
    monkeypatch.setattr(ReadPlan, "check", lambda self: kept.append(check(self)) or kept[-1])
    return seen, kept


def _argv(command, run, out):
    data, result = run
    return {"report": ["report", str(result), "-o", str(out / "rep")],
            "export": ["export", str(result), "--format", "cxi", "-o", str(out / "p.cxi")],
            "import": [*IMPORT, "-o", str(out / "i.h5")]}[command]


@pytest.mark.parametrize(("command", "parts"), [("report", {"result", "figures", "data"}),
                                                ("export", {"result", "exporter's copies", "data"}),
                                                ("import", {"importer 'cxi'"})])
def test_refused_before_any_read_below_the_estimate_and_run_at_it(command, parts, run, tmp_path, reads, monkeypatch,
                                                                   capsys):
    """At 8G the command runs, its plan holding its parts; one byte below that estimate it exits 2 in one line
    naming the files, the need and the budget, with no array read and nothing written; at the estimate it runs."""
    seen, kept = reads
    monkeypatch.setenv("MMIP_MAX_MEMORY", "8G")
    assert main(_argv(command, run, tmp_path / "large")) == 0
    est = kept[-1]
    assert parts | {"program"} == set(est.parts) and all(v > 0 for v in est.parts.values()), est.parts
    assert seen, "the command reads its arrays"
    capsys.readouterr()
    seen.clear()
    monkeypatch.setenv("MMIP_MAX_MEMORY", str(est.total - 1))
    assert main(_argv(command, run, tmp_path / "small")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    named = run[1] if command != "import" else DATA / "ptychodus_diffraction.cxi"
    assert err.startswith(f"mmip {command}: error: memory budget (MMIP_MAX_MEMORY={est.total - 1}: ") and \
        str(named) in err and f"needs {est.total / 2**30:.2f} GiB" in err, err
    assert f"at least {-(-est.total // 2**20)}M" in err, err
    if command != "import":
        assert str(run[0]) in err  # the run's data, planned too
    assert seen == [] and not (tmp_path / "small").exists()
    monkeypatch.setenv("MMIP_MAX_MEMORY", str(est.total))
    (tmp_path / "small").mkdir()
    assert main(_argv(command, run, tmp_path / "small")) == 0
    assert seen and kept[-1].total == est.total


def test_an_importer_without_the_offer_is_not_planned(run, tmp_path, reads, monkeypatch, capsys):
    """An importer offering no ``read_bytes`` keeps its reads' own checks: nothing planned, the import unchanged."""
    from multimodal_ip.plugins import get_registry

    _, kept = reads
    cls = type(get_registry().get("importer", "cxi"))
    monkeypatch.delattr(cls, "read_bytes")
    monkeypatch.setenv("MMIP_MAX_MEMORY", "8G")
    assert main(_argv("import", run, tmp_path)) == 0
    assert kept == [] and (tmp_path / "i.h5").is_file()
    capsys.readouterr()
