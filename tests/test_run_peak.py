"""What a whole run holds besides the solver's working set (issue 31, docs/performance.md "XRF at the scan
positions"): the start point is handed over to the solver as its first iterate (:class:`Handover`), so that no
frame of the run keeps a second unknown-sized vector once the first step has replaced it."""

import tracemalloc
import weakref

import numpy as np
import pytest

import multimodal_ip.start
from multimodal_ip.cli import main
from multimodal_ip.solvers import solve_staged
from multimodal_ip.solvers.base import Handover, take_start
from multimodal_ip.solvers.lbfgs import LBFGS, WORK_VECTORS


@pytest.fixture(scope="module")
def sim(phantom_file):
    """The smallest phantom case (32 x 32 object, x and w, ptychography and fluorescence)."""
    return phantom_file(32, 16, "--seed", "1")


def _watch_start(monkeypatch):
    """A weak reference to the start point the run makes (``start_point``), ``alive``: for every L-BFGS step
    after the first, whether the start point was still alive when the step began, and ``pairs``: the correction
    pairs held after each step."""
    made, alive, pairs = [], [], []
    original_start, original_step = multimodal_ip.start.start_point, LBFGS.step

    def start_point(*args, **kwargs):
        x0 = original_start(*args, **kwargs)
        made.append(weakref.ref(x0))
        return x0

    def step(self):
        if self.iteration >= 1:
            alive.append(made[-1]() is not None)
        out = original_step(self)
        pairs.append(len(self.s_list))
        return out

    monkeypatch.setattr(multimodal_ip.start, "start_point", start_point)
    monkeypatch.setattr(LBFGS, "step", step)
    return made, alive, pairs


def test_the_cli_hands_its_start_point_over(sim, tmp_path, monkeypatch):
    """``mmip reconstruct`` (the path of every run command, ``cli.common``): once the first step has replaced the
    start point as the iterate, nothing holds it (the frames of ``cli.common``, ``solve_staged``, ``solve_lbfgs``
    and ``Solver.solve`` held it through the whole run before). Its last step lets its correction pairs go
    (``release_last``): it ends with the one pair it formed, not three."""
    made, alive, pairs = _watch_start(monkeypatch)
    assert main(["reconstruct", str(sim), "-o", str(tmp_path / "r.h5"), "--iterations", "3",
                 "--stop", "iterations"]) == 0
    assert len(made) == 1 and len(alive) == 2, (made, alive)
    assert not any(alive), "the start point outlived the first step"
    assert pairs[:2] == [1, 2] and pairs[2] <= 1, pairs


def test_a_handed_over_start_is_the_result_of_the_same_run(sim, tmp_path):
    """Handed over or lent, the start point gives the same run: the iterates are bit-identical."""
    from multimodal_ip.io import build_problem, load_dataset

    problem = build_problem(load_dataset(sim), dtype="float32")
    lent = problem.start()
    a = solve_staged(problem, lent, maxiter=3)
    b = solve_staged(problem, Handover(problem.start()), maxiter=3)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.history["objective"], b.history["objective"])
    np.testing.assert_array_equal(lent, problem.start())  # a lent start is not written to


def _peak(problem, n, handed) -> float:
    """Peak traced memory of 3 iterations from a start made inside the traced region, in unknown vectors."""
    tracemalloc.start()
    try:
        x0 = np.zeros(n)
        start = Handover(x0) if handed else x0
        del x0
        res = solve_staged(problem, start, maxiter=3, memory=2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res.status == "maxiter"
    return peak / (8 * n)


def test_a_handed_over_start_is_one_vector_fewer_at_the_peak(diagonal_objective):
    """Through ``solve_staged`` (what the CLI calls): lent, the start point stays with the caller for the whole
    run, the working set's 2 pairs and ``WORK_VECTORS`` plus one; handed over, it is the working set alone."""
    n = 2_000_000
    problem = diagonal_objective(n)
    solve_staged(problem, np.zeros(n), maxiter=1)  # the solver plugins imported outside the traced runs
    lent, handed = _peak(problem, n, False), _peak(problem, n, True)
    assert handed <= 2 * 2 + WORK_VECTORS + 0.5, handed
    assert lent - handed >= 0.9, (lent, handed)


def test_take_start():
    """A box gives its array once; an array is its own start point."""
    x = np.ones(3)
    box = Handover(x)
    assert box.array is x and take_start(box) is x and box.array is None and take_start(box) is None
    assert take_start(x) is x and take_start(None) is None


def test_a_term_reads_its_variables_as_a_view(sim):
    """The problem packs each term's inputs adjacent and in its order (the file lists w, x; ptychography reads
    (x, w)): the term's input is a view of the joint point, not a copy."""
    from multimodal_ip.io import build_problem, load_dataset

    ds = load_dataset(sim)
    problem = build_problem(ds)
    assert ds.space.names == problem.space.names == ("w", "x")  # the order of tables and files: the file's
    assert problem.space.packing == ("x", "w")
    v = problem.start()
    for i, t in enumerate(problem.terms):
        assert np.shares_memory(problem._restrictions[i].matvec(v), v), t.name


def test_grouped_and_repacked():
    """The packing rule (largest group first, then the others' unplaced variables in their order, then the rest)
    and a vector moved between packings by name."""
    from multimodal_ip import Variable, VariableSpace

    space = VariableSpace([Variable(n, (k,)) for n, k in (("a", 1), ("p", 2), ("w", 3), ("x", 4))])
    assert space.grouped([("w",), ("x", "w", "p")]).packing == ("x", "w", "p", "a")
    assert space.grouped([("w", "p"), ("x", "w", "p")]).packing == ("x", "w", "p", "a")
    assert space.grouped([("x", "w")]).names == space.names
    assert space.grouped([("a",), ("x",)]) is space
    other = space.grouped([("x", "w")])
    v = space.pack({n: np.full(space[n].shape, i + 1.0) for i, n in enumerate(space.names)})
    moved = other.repacked(np.stack([v, 2 * v]), space.names)
    for n in space.names:
        np.testing.assert_array_equal(moved[0, other.slice(n)], v[space.slice(n)])
        np.testing.assert_array_equal(moved[1, other.slice(n)], 2 * v[space.slice(n)])
    assert other.repacked(v, other.packing) is v
    np.testing.assert_array_equal(other.repacked(moved, other.packing)[0], moved[0])
    for n in space.names:  # pack and unpack follow the packing
        np.testing.assert_array_equal(other.unpack(other.pack(space.unpack(v)))[n], space.unpack(v)[n])


def test_a_checkpoint_resumes_by_variable_name(sim, tmp_path, monkeypatch):
    """A checkpoint records its packing order and is resumed by variable name: one packed in the order of the
    previous versions (the file's variables, no record) resumes to the uninterrupted run's result too."""
    import json
    import shutil

    import h5py

    import multimodal_ip.io.results as results
    from multimodal_ip.io import load_result

    ckpt, save = tmp_path / "kept.ckpt.h5", results.save_checkpoint

    def keep(path, *args, **kwargs):  # the checkpoint of iteration 2 (the run removes its own once it is done)
        save(path, *args, **kwargs)
        shutil.copy(path, ckpt)

    monkeypatch.setattr(results, "save_checkpoint", keep)
    common = [str(sim), "--iterations", "4", "--checkpoint-every", "2", "--stop", "iterations"]
    assert main(["reconstruct", *common, "-o", str(tmp_path / "full.h5")]) == 0
    full = load_result(tmp_path / "full.h5")
    for name, legacy in (("now", False), ("legacy", True)):
        mine = tmp_path / f"{name}.h5.ckpt.h5"
        shutil.copy(ckpt, mine)
        with h5py.File(mine, "r+") as f:
            g = f["checkpoint"]
            scalars = json.loads(g.attrs["scalars"])
            assert scalars["packing"] == ["x", "w"]
            if legacy:  # as written before: (w, x), no record
                del scalars["packing"]
                g.attrs["scalars"] = json.dumps(scalars)
                for d in g["arrays"].values():
                    a = d[()]
                    if a.shape[-1] == 2048:
                        d[...] = np.concatenate([a[..., 1024:], a[..., :1024]], axis=-1)
        assert main(["reconstruct", *common, "-o", str(tmp_path / f"{name}.h5"), "--resume"]) == 0
        got = load_result(tmp_path / f"{name}.h5")
        for k in ("x", "w"):
            np.testing.assert_array_equal(got["variables"][k], full["variables"][k])
        np.testing.assert_array_equal(got["history"]["objective"], full["history"]["objective"])
