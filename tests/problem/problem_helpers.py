"""A small joint problem for the tests of the problem layer."""

import pylops

from multimodal_ip import DataTerm, JointProblem, Variable, VariableSpace
from multimodal_ip.operators import Exp, Linear, compose


def small_problem(rng, regularizers=()):
    """x (3, 3) read by a nonlinear term, p (2,) by a linear one; both through least squares."""
    space = VariableSpace([Variable("x", (3, 3)), Variable("p", (2,))])
    a = pylops.MatrixMult(rng.standard_normal((7, 9)))
    a.dims, a.dimsd = (3, 3), (7,)
    b = pylops.MatrixMult(rng.standard_normal((4, 2)))
    op = compose(Exp((7,)), Linear(a))
    t1 = DataTerm(op, rng.random(7), inputs=("x",), name="nonlinear")
    t2 = DataTerm(Linear(b), rng.random(4), weight=0.5, inputs=("p",), name="linear")
    return JointProblem(space, [t1, t2], regularizers)
