__all__ = ["NonlinearOperator", "Composition", "compose", "Linear", "Modulus", "Square", "Exp", "ComplexCoupling",
           "CalibrationLayout", "SubpixelShift", "as_positions", "split_positions", "REFINABLE"]

from .complex_coupling import ComplexCoupling
from .composition import Composition, compose
from .exp import Exp
from .linear import Linear
from .modulus import Modulus
from .nonlinear_operator import NonlinearOperator
from .square import Square
from .windows import REFINABLE, CalibrationLayout, SubpixelShift, as_positions, split_positions
