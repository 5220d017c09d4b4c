__all__ = ["NonlinearOperator", "Composition", "compose", "Linear", "Modulus", "Square", "Exp", "Streamed",
           "StreamedAfter"]

from .composition import Composition, compose
from .exp import Exp
from .linear import Linear
from .modulus import Modulus
from .nonlinear_operator import NonlinearOperator
from .square import Square
from .streamed import Streamed, StreamedAfter
