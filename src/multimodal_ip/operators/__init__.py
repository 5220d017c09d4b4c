__all__ = ["NonlinearOperator", "Composition", "compose", "Linear", "Modulus", "Square", "Exp"]

from .composition import Composition, compose
from .exp import Exp
from .linear import Linear
from .modulus import Modulus
from .nonlinear_operator import NonlinearOperator
from .square import Square
