"""Review fixes of the packing and stopping changes: a checkpoint records the problem's packing whatever solver wrote
its state; ``--stop noise`` is refused on MPI ranks before anything is read; a checkpoint of a validation run that
names no share resumes under a rule that names the default one."""

import json
import shutil

import h5py
import numpy as np
import pytest

from multimodal_ip.cli import main
from multimodal_ip.io import load_result


@pytest.fixture(scope="module")
def sim(phantom_file):
    return phantom_file(32, 16, "--seed", "1")


def _keep_checkpoints(monkeypatch, ckpt):
    import multimodal_ip.io.results as results

    save = results.save_checkpoint

    def keep(path, *args, **kwargs):  # the run removes its own once it is done
        save(path, *args, **kwargs)
        shutil.copy(path, ckpt)

    monkeypatch.setattr(results, "save_checkpoint", keep)


def test_a_solver_state_without_its_packing_gets_the_problem_s(sim, tmp_path, monkeypatch):
    """A solver whose ``state_dict`` records no packing (a third party's, written to the protocol): the checkpoint
    still says how its vectors are packed, and resumes to the uninterrupted result."""
    from multimodal_ip.solvers.base import Solver

    own = Solver.state_dict

    def without(self):
        state = own(self)
        state["scalars"].pop("packing")
        return state

    monkeypatch.setattr(Solver, "state_dict", without)
    ckpt = tmp_path / "kept.ckpt.h5"
    _keep_checkpoints(monkeypatch, ckpt)
    common = [str(sim), "--iterations", "4", "--checkpoint-every", "2", "--stop", "iterations"]
    assert main(["reconstruct", *common, "-o", str(tmp_path / "full.h5")]) == 0
    with h5py.File(ckpt) as f:
        assert json.loads(f["checkpoint"].attrs["scalars"])["packing"] == ["x", "w"]
    shutil.copy(ckpt, tmp_path / "again.h5.ckpt.h5")
    assert main(["reconstruct", *common, "-o", str(tmp_path / "again.h5"), "--resume"]) == 0
    full, got = load_result(tmp_path / "full.h5"), load_result(tmp_path / "again.h5")
    for k in ("x", "w"):
        np.testing.assert_array_equal(got["variables"][k], full["variables"][k])


def test_a_validation_checkpoint_naming_no_share_resumes_with_the_default_share(sim, tmp_path, monkeypatch):
    ckpt = tmp_path / "kept.ckpt.h5"
    _keep_checkpoints(monkeypatch, ckpt)
    common = [str(sim), "--terms", "ptychography", "--iterations", "30", "--checkpoint-every", "2", "--stop",
              "validation"]
    assert main(["reconstruct", *common, "-o", str(tmp_path / "full.h5")]) == 0
    with h5py.File(ckpt, "r+") as f:  # as a run before the share was recorded wrote it
        g = f["checkpoint"]
        config = json.loads(g.attrs["config"])
        config["stopping"].pop("fraction", None)
        g.attrs["config"] = json.dumps(config)
    shutil.copy(ckpt, tmp_path / "again.h5.ckpt.h5")
    assert main(["reconstruct", *common, "-o", str(tmp_path / "again.h5"), "--resume", "--validation-fraction",
                 "0.1"]) == 0


def test_stop_noise_on_mpi_ranks_is_refused_before_the_read(sim, tmp_path, monkeypatch, capsys):
    import multimodal_ip.distributed as distributed
    import multimodal_ip.io as io

    one = type("OneRank", (), {"allgather": lambda self, x: [x], "Get_rank": lambda self: 0,
                               "Get_size": lambda self: 1})()  # a communicator of one rank (its agreements)
    monkeypatch.setattr(distributed, "get_comm", lambda: one)
    reads = []
    monkeypatch.setattr(io, "load_dataset", lambda *a, **k: reads.append(a))
    code = main(["reconstruct", str(sim), "-o", str(tmp_path / "m.h5"), "--terms", "ptychography", "--stop", "noise",
                 "--mpi"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--stop noise runs in one process" in err, err
    assert not reads and not (tmp_path / "m.h5").exists()


def test_refit_from_with_no_refit_warns(sim, tmp_path, capsys):
    assert main(["reconstruct", str(sim), "-o", str(tmp_path / "n.h5"), "--terms", "ptychography", "--iterations",
                 "12", "--stop", "validation", "--no-refit", "--refit-from", "best"]) == 0
    err = capsys.readouterr().err
    assert err.count("--refit-from / --refit-iterations do nothing with --no-refit") == 1, err
