"""A Linearization is frozen; its combinators (with_proximity, reduced) return new objects and leave it as it was."""

import dataclasses

import numpy as np
import pytest
from problem_helpers import small_problem

from multimodal_ip.problem import Objective, ProximalObjective
from multimodal_ip.regularizers import Tikhonov


def test_a_linearization_is_frozen(rng):
    lin = small_problem(rng).linearize(np.full(11, 0.1))
    for name in ("objective", "objectives", "gradient", "extra_damping", "reduce", "validation"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(lin, name, None)


def test_with_proximity_is_pure_and_adds_the_proximity_term(rng):
    problem = small_problem(rng)
    x, v, tau = 0.1 + 0.05 * rng.random(11), rng.random(11), 0.7
    lin = problem.linearize(x)
    before = (lin.objective, dict(lin.objectives), lin.gradient.copy(), lin.extra_damping)
    prox = lin.with_proximity(v, tau)
    assert prox is not lin
    assert (lin.objective, lin.objectives, lin.extra_damping) == (before[0], before[1], before[3])
    np.testing.assert_array_equal(lin.gradient, before[2])
    d = x - v
    assert prox.objectives["proximity"] == pytest.approx(0.5 * d @ d / tau, rel=1e-15)
    assert prox.objective == pytest.approx(lin.objective + 0.5 * d @ d / tau, rel=1e-15)
    np.testing.assert_allclose(prox.gradient, lin.gradient + d / tau, rtol=1e-15)
    assert prox.extra_damping == pytest.approx(1 / tau)
    u = rng.random(11)
    np.testing.assert_allclose(prox.gauss_newton(0.2).matvec(u), lin.gauss_newton(0.2 + 1 / tau).matvec(u),
                               rtol=1e-14)
    # the proximal objective around the problem: its value and gradient agree with the linearization
    objective = ProximalObjective(problem, v, tau)
    assert objective.value(x) == pytest.approx(prox.objective, rel=1e-14)
    np.testing.assert_allclose(objective.gradient(x), prox.gradient, rtol=1e-14)


def test_reduced_sums_every_share_and_leaves_the_share_alone(rng):
    """``reduced(total)`` with a sum over two copies of one share: every value doubles, the share is unchanged,
    and each Gauss-Newton product is summed before the damping."""
    lin = small_problem(rng, [Tikhonov("p", weight=0.1)]).linearize(0.1 + 0.05 * rng.random(11))
    objectives, gradient = dict(lin.objectives), lin.gradient.copy()
    twice = lin.reduced(lambda a: 2 * a)
    assert lin.objectives == objectives and lin.reduce is None
    np.testing.assert_array_equal(lin.gradient, gradient)
    assert twice.objectives == {k: 2 * v for k, v in objectives.items()}
    assert twice.objective == pytest.approx(2 * lin.objective, rel=1e-15)
    np.testing.assert_array_equal(twice.gradient, 2 * gradient)
    u = rng.random(11)
    np.testing.assert_allclose(twice.gauss_newton(0.3).matvec(u), 2 * lin.gauss_newton(0.0).matvec(u) + 0.3 * u,
                               rtol=1e-14)
    # composed: a proximity term around the reduced objective is added once, after the sum
    both = twice.with_proximity(np.zeros(11), 2.0)
    np.testing.assert_allclose(both.gauss_newton(0.0).matvec(u), 2 * lin.gauss_newton(0.0).matvec(u) + 0.5 * u,
                               rtol=1e-14)


def test_the_compositions_are_objectives(rng):
    problem = small_problem(rng)
    assert isinstance(problem, Objective)
    prox = ProximalObjective(problem, np.zeros(11), 1.0)
    assert isinstance(prox, Objective)
    frozen = prox.with_frozen(("p",))
    assert isinstance(frozen, ProximalObjective) and frozen.inner.frozen == ("p",)
    # the data terms' gradient in p is frozen to zero; the proximity's (x - v) / tau = 0.2 is left
    np.testing.assert_array_equal(frozen.linearize(np.full(11, 0.2)).gradient[problem.space.slice("p")], 0.2)
