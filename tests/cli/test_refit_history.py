"""``--refit-from best``: the continuation's history numbers its iterations on from the held-out run's best iterate b
(b, b + 1, ..., b + K; docs/validation.md, "Refit after stopping"), so ``/results/history`` and
``/results/validation_run/history`` share one iteration axis."""

import h5py
import numpy as np
import pytest

from multimodal_ip.cli import main
from multimodal_ip.io import load_result, save_dataset


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small phantom (n = 48, Np = 16, step 8: 25 patterns of 256 values), ptychography + XRF, 10 % noise."""
    from mmip_paper import simulate

    path = tmp_path_factory.mktemp("refit_history") / "small.h5"
    save_dataset(path, simulate("phantom", seed=1, noise=0.1, n=48, probe_size=16, step=8))
    return path


def test_the_continuation_numbers_its_iterations_from_the_best_iterate(small, tmp_path, capsys):
    """Row 0 of the result's history is the best iterate b itself (the same error against the truth as the held-out
    run's row b), the last is b + K; the summary line counts the same."""
    out = tmp_path / "b.h5"
    assert main(["reconstruct", str(small), "-o", str(out), "--checkpoint-every", "0", "--terms", "ptychography",
                 "--iterations", "30", "--validation-fraction", "0.02", "--refit-from", "best",
                 "--refit-iterations", "3"]) == 0
    r = load_result(out)
    best, k = r["config"]["refit"]["from_iteration"], r["config"]["refit"]["iterations"]
    assert best >= 1 and k == 3 and best == r["config"]["validation_run"]["returned_iteration"]
    np.testing.assert_array_equal(r["history"]["iteration"], np.arange(best, best + k + 1))
    with h5py.File(out) as f:
        held = {c: f["results/validation_run/history"][c][()] for c in f["results/validation_run/history"]}
    row = int(np.flatnonzero(held["iteration"] == best)[0])
    errors = [c for c in r["history"] if c.startswith("error_")]
    assert errors
    for c in errors:
        assert r["history"][c][0] == pytest.approx(held[c][row], rel=1e-12)
    assert f"after {best + k} iterations" in capsys.readouterr().out
