"""The MPI problem is a composition around its rank's share (no subclass of JointProblem, one copy of the state)."""

import numpy as np
import pytest
from problem_helpers import small_problem

from multimodal_ip import JointProblem
from multimodal_ip.distributed import DistributedProblem
from multimodal_ip.problem import Objective


class _OneRank:
    """The part of an mpi4py communicator the construction reads (rank and size of a one-process world)."""

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 1


def test_the_distributed_problem_is_no_joint_problem_and_its_state_agrees(rng):
    jp = small_problem(rng)
    dp = DistributedProblem(jp.with_frozen(("p",)), _OneRank())
    assert not isinstance(dp, JointProblem)
    assert isinstance(dp, Objective)
    assert dp.frozen == dp.local.frozen == ("p",)  # was () beside ("p",): two copies of the state
    for derived in (dp.with_weights({"linear": 2.0}), dp.with_regularizers(()), dp.with_terms(["nonlinear", "linear"])):
        assert derived.frozen == derived.local.frozen == ("p",)
    assert dp.with_frozen(()).frozen == dp.with_frozen(()).local.frozen == ()
    assert dp.alone("linear").weights == {"linear": 1.0} and dp.alone("linear").term_names == ("linear",)
    assert dp.space is jp.space and dp.calibration == jp.calibration and dp.has_holdout is False


def test_one_rank_gives_the_joint_problem(rng):
    """Under a one-process MPI world the reduced objective is the joint problem's, bit for bit."""
    pytest.importorskip("mpi4py", reason="MPI needs mpi4py (make test installs it)")
    pytest.importorskip("pylops_mpi", reason="MPI runs need pylops-mpi (make test installs it)")
    from multimodal_ip.distributed import get_comm

    jp = small_problem(rng)
    dp = DistributedProblem(jp, get_comm())
    x, u = 0.1 + 0.05 * rng.random(11), rng.random(11)
    one, many = jp.linearize(x), dp.linearize(x)
    assert many.objectives == dict(sorted(one.objectives.items()))
    assert many.objective == one.objective
    np.testing.assert_array_equal(many.gradient, one.gradient)
    np.testing.assert_array_equal(many.gauss_newton(0.1).matvec(u), one.gauss_newton(0.1).matvec(u))
    assert dp.value(x) == jp.value(x)
    assert one.reduce is None  # the share's linearization is left as it was
