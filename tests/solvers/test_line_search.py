"""The L-BFGS line search survives a model that overflows far from the iterate (exp, Beer-Lambert)."""

import numpy as np

from multimodal_ip import DataTerm, JointProblem, Variable, VariableSpace
from multimodal_ip.operators import Exp
from multimodal_ip.solvers import get_solver


def test_overflowing_first_step_is_shortened_not_failed():
    space = VariableSpace([Variable("x", (5,))])
    data = np.exp(np.linspace(8.0, 10.0, 5))  # the first step along -g lands near x = 2e4: exp overflows
    problem = JointProblem(space, [DataTerm(Exp((5,)), data, inputs=("x",), name="exp")])
    with np.errstate(over="ignore", invalid="ignore"):
        res = get_solver("lbfgs")(problem, np.zeros(5), maxiter=200, method="native")
    assert res.status == "converged", res.message
    np.testing.assert_allclose(res.x, np.log(data), rtol=1e-6)
