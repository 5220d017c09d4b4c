"""A checkpoint of an L-BFGS run writes its correction pairs row by row (``solvers._rows.Rows``): saving it does not
hold a stacked copy of the history (measured by P2 before: at J = 1024, 11 iterations, the checkpoint lifted the
run's peak RSS from 654 MB to 927 MB, above the memory plan); the file and the resumed run are what they were."""

import tracemalloc

import h5py
import numpy as np

from multimodal_ip.io.results import load_checkpoint, save_checkpoint
from multimodal_ip.solvers.lbfgs import LBFGS


def _solver(problem, n, iterations=6, memory=4):
    solver = LBFGS(problem, maxiter=iterations, memory=memory)
    solver.solve(np.zeros(n))
    return solver


def test_saving_a_checkpoint_holds_no_stacked_copy_of_the_pairs(diagonal_objective, tmp_path, monkeypatch):
    """Traced peak of ``state_dict`` + ``save_checkpoint`` with 4 pairs (8 vectors) of 1 M unknowns, written by HDF5
    to the disk as a checkpoint over ``IN_MEMORY_MAX_BYTES`` is (below it the file is built in memory, a copy of at
    most that size): under 2 vectors (a stacked copy of s and y would be 8)."""
    import multimodal_ip.io.dataset

    monkeypatch.setattr(multimodal_ip.io.dataset, "IN_MEMORY_MAX_BYTES", 1 << 20)
    n = 1_000_000
    solver = _solver(diagonal_objective(n), n)
    assert len(solver.s_list) == 4
    tracemalloc.start()
    try:
        save_checkpoint(tmp_path / "c.h5", solver.state_dict(), {"solver": "lbfgs"})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * n * 8, f"{peak / (n * 8):.2f} vectors at the peak"
    with h5py.File(tmp_path / "c.h5") as f:
        s = f["checkpoint/arrays/s_list"][()]
    np.testing.assert_array_equal(s, np.stack(solver.s_list))


def test_a_checkpoint_file_resumes_the_same_run(diagonal_objective, tmp_path):
    """Checkpoints at iterations 1 (no pair yet), 2 and 4 written to a file, read back and resumed: the
    iterate and history of eight straight iterations, bit for bit."""
    n = 5000
    problem = diagonal_objective(n)
    x0 = np.full(n, 2.0)
    full = LBFGS(problem, maxiter=8, memory=4).solve(x0)
    for at in (1, 2, 4):
        saved = {}

        def grab(state, at=at, saved=saved):
            if state.iteration == at:
                saved.update(state.solver.state_dict())

        LBFGS(problem, maxiter=at, memory=4, callback=grab).solve(x0)
        save_checkpoint(tmp_path / f"c{at}.h5", saved, {"solver": "lbfgs"})
        state, _ = load_checkpoint(tmp_path / f"c{at}.h5")
        assert state["arrays"]["s_list"].shape[1] == n
        resumed = LBFGS(problem, maxiter=8, memory=4).solve(resume_state=state)
        np.testing.assert_array_equal(resumed.x, full.x)
        assert len(resumed.history) == len(full.history)
