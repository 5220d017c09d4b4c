__all__ = ["NonlinearOperator", "Composition", "compose", "Linear", "Modulus", "Square", "Exp", "ComplexCoupling"]

from .complex_coupling import ComplexCoupling
from .composition import Composition, compose
from .elementwise import Exp, Modulus, Square
from .linear import Linear
from .nonlinear_operator import NonlinearOperator
