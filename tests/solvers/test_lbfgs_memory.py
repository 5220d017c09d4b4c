"""The L-BFGS working set (issue 31): a step holds its correction pairs and ``WORK_VECTORS`` unknown-sized vectors
(iterate, gradient, direction, trial point and its gradient), nothing more: counted with tracemalloc in units of
the unknown vector on a cheap objective whose gradient is its only unknown-sized allocation. A vector copy added
back to the solver fails it."""

import tracemalloc

import numpy as np
import pytest

from multimodal_ip.run_budget import JOINT_VECTORS, SOLVER_VECTORS
from multimodal_ip.solvers.lbfgs import LBFGS, WORK_VECTORS, two_loop

#: what the in-place updates' blocks (and the objective's) may add, in unknown vectors (2 MB blocks of 16 MB)
SLACK = 0.5


def _peak_vectors(problem, x0, **options):
    """``(result, peak traced bytes of the solve over the unknown vector's bytes)``; ``x0`` is not counted."""
    tracemalloc.start()
    try:
        res = LBFGS(problem, **options).solve(x0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return res, peak / x0.nbytes


@pytest.mark.parametrize(("iterations", "memory", "dtype"),
                         [(3, 10, np.float64), (6, 2, np.float64), (4, 10, np.float32)])
def test_a_step_holds_its_pairs_and_the_working_vectors(diagonal_objective, iterations, memory, dtype):
    """Peak of a few iterations <= 2 x the pairs held during the step before the last (with ``release_last``, as
    ``mmip`` runs, the last one's search holds none) + ``WORK_VECTORS`` (x0 is the caller's) + the blocks; the run
    goes all its iterations (no early convergence hides a step)."""
    n = 2_000_000
    problem = diagonal_objective(n, dtype)
    x0 = np.zeros(n, dtype)
    res, peak = _peak_vectors(problem, x0, maxiter=iterations, memory=memory, release_last=True)
    assert res.status == "maxiter" and len(res.history) == iterations + 1
    pairs = min(memory, iterations - 2)
    assert peak <= 2 * pairs + WORK_VECTORS + SLACK, f"{peak:.2f} vectors of {x0.nbytes} bytes at the peak"
    assert peak >= 2 * pairs + WORK_VECTORS - 1 - SLACK  # the count is the working set, not a loose bound
    np.testing.assert_array_equal(x0, 0)  # the caller's start is not written to


def test_the_run_budget_counts_the_working_set():
    """The run's estimate (``run_budget``) covers the solver's vectors: its L-BFGS count and the joint evaluation's
    gradient make at least the working set."""
    assert SOLVER_VECTORS["lbfgs"] + JOINT_VECTORS >= WORK_VECTORS


def test_in_place_updates_round_as_the_whole_vector_expressions():
    """The two-loop recursion into a buffer (block updates) and a trial point written a block at a time equal the
    whole-vector expressions bit for bit, at both precisions and for every type of step scipy's search makes."""
    from multimodal_ip.solvers._inplace import BLOCK, write_step

    rng = np.random.default_rng(1)
    n = 2 * BLOCK + 123
    for dtype in (np.float32, np.float64):
        g = rng.standard_normal(n).astype(dtype)
        s_list = [rng.standard_normal(n).astype(dtype) for _ in range(3)]
        y_list = [s + 0.1 * rng.standard_normal(n).astype(dtype) for s in s_list]
        q = g.copy()
        alphas = []
        for s, y in zip(reversed(s_list), reversed(y_list)):
            rho = 1.0 / float(np.vdot(y, s))
            a = rho * float(np.vdot(s, q))
            q -= a * y
            alphas.append((a, rho))
        q *= float(np.vdot(s_list[-1], y_list[-1])) / float(np.vdot(y_list[-1], y_list[-1]))
        for (s, y), (a, rho) in zip(zip(s_list, y_list), reversed(alphas)):
            q += (a - rho * float(np.vdot(y, q))) * s
        out = np.empty_like(g)
        p = two_loop(g, s_list, y_list, out=out)
        assert p is out
        np.testing.assert_array_equal(p, -q)
        x = rng.standard_normal(n).astype(dtype)
        for alpha in (1.0, 0.37, np.float64(0.37), np.float32(0.37)):
            buf = np.zeros_like(x)
            assert write_step(buf, x, alpha, p)
            np.testing.assert_array_equal(buf, (x + alpha * p).astype(dtype))
            assert not write_step(buf, x, alpha, p)  # the same point again: nothing to evaluate


def test_the_last_step_without_its_pairs_is_the_same_step(diagonal_objective):
    """``release_last``: the last step (``maxiter``) lets its pairs go once its direction is made; the iterates and
    the history of a 3-iteration run are bit for bit those of the first 3 iterations of a longer run, whose third
    step kept them."""
    problem = diagonal_objective(50_000, np.float32)
    short = LBFGS(problem, maxiter=3, memory=4, release_last=True).solve(np.zeros(50_000, np.float32))
    assert len(short.history) == 4
    kept = []
    long = LBFGS(problem, maxiter=6, memory=4, callback=lambda st: kept.append((st.x, len(st.solver.s_list)))
                 ).solve(np.zeros(50_000, np.float32))
    np.testing.assert_array_equal(short.x, kept[2][0])
    assert kept[2][1] == 3 and kept[3][1] == 4  # the longer run held its pairs through the third step
    for column in ("objective", "grad_norm"):
        np.testing.assert_array_equal(short.history[column], long.history[column][:4])


def test_iterates_a_callback_keeps_are_not_overwritten(diagonal_objective):
    """The pairs go into the spent direction's and the old gradient's buffers, never into an iterate: what a
    callback keeps of ``state.x`` (and the returned iterate) stays as it was."""
    problem = diagonal_objective(1000)
    kept = []
    res = LBFGS(problem, maxiter=8, memory=2, callback=lambda st: kept.append((st.x, st.x.copy()))).solve(
        np.zeros(1000))
    assert len(kept) == 8 and res.x is kept[-1][0]
    for x, copy in kept:
        np.testing.assert_array_equal(x, copy)
