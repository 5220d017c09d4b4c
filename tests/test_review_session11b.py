"""Review of 6f6fc88 (checkpoints write a solver's history row by row, ``solvers._rows.Rows``): a ``state_dict()``
is a checkpoint, so what it holds stays as it was when taken, while the run goes on (its pairs are not the buffers
the solver reuses once a pair leaves the memory) and when another run resumes from it."""

import numpy as np
import pytest

from multimodal_ip.solvers.lbfgs import LBFGS


def _snapshot(state):
    return {k: np.array(np.asarray(v)) for k, v in state["arrays"].items()}


def test_a_state_dict_kept_while_the_run_goes_on_is_unchanged(diagonal_objective):
    """Taken at iteration 3 of 8 with 2 pairs (pairs leave the memory after it): equal to a copy made then."""
    problem, saved, copies = diagonal_objective(50), {}, {}

    def grab(state):
        if state.iteration == 3:
            saved.update(state.solver.state_dict())
            copies.update(_snapshot(saved))

    LBFGS(problem, maxiter=8, memory=2, callback=grab).solve(np.full(50, 2.0))
    assert len(saved["arrays"]["s_list"]) == 2
    for k, a in copies.items():
        np.testing.assert_array_equal(np.asarray(saved["arrays"][k]), a, err_msg=k)


def test_a_state_dict_resumed_twice_gives_the_same_run(diagonal_objective):
    """One in-memory state resumed by two runs in turn: both end where the straight run ends."""
    problem, saved = diagonal_objective(50), {}
    full = LBFGS(problem, maxiter=8, memory=2).solve(np.full(50, 2.0))

    def grab(state):
        if state.iteration == 3:
            saved.update(state.solver.state_dict())

    LBFGS(problem, maxiter=3, memory=2, callback=grab).solve(np.full(50, 2.0))
    for _ in range(2):
        np.testing.assert_array_equal(LBFGS(problem, maxiter=8, memory=2).solve(resume_state=saved).x, full.x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
def test_the_xrf_importer_offers_at_least_what_its_read_of_the_maps_holds(tmp_path, dtype):
    """Review of 2eed480: ``MapsImporter.read_bytes`` (what ``mmip import`` plans with) at least the traced peak of
    reading the maps (as stored, then their float64 copy: ``maps._read_real``), for 30 elements, as stored in
    float32 (facility files), float64 and integer counts."""
    import tracemalloc

    import h5py
    from mmip_fluorescence.maps import _read_maps
    from mmip_fluorescence.plugin import MapsImporter

    from multimodal_ip.io.dataset import open_h5

    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f["MAPS/XRF_Analyzed/Fitted/Counts_Per_Sec"] = np.ones((30, 100, 100), dtype)
        f["MAPS/XRF_Analyzed/Fitted/Channel_Names"] = np.array([b"E%d" % i for i in range(30)], dtype="S256")
        f["MAPS/Scan/x_axis"], f["MAPS/Scan/y_axis"] = np.arange(100.0), np.arange(100.0)
    offered = MapsImporter().read_bytes(str(path), {})
    tracemalloc.start()
    try:
        with open_h5(path) as f:
            _read_maps(path, f, False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert offered >= peak, (offered, peak)
