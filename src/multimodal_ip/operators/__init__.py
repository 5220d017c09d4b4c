__all__ = ["NonlinearOperator", "Composition", "compose", "Linear", "Modulus", "Square", "Exp", "Streamed",
           "StreamedAfter", "Autodiff", "StreamedAutodiff"]

from typing import TYPE_CHECKING

from multimodal_ip._lazy import lazy_exports

if TYPE_CHECKING:  # type checkers see the names; at run time __getattr__ imports them on first use
    from .autodiff import Autodiff  # JAX is imported only when one is built
    from .composition import Composition, compose
    from .exp import Exp
    from .linear import Linear
    from .modulus import Modulus
    from .nonlinear_operator import NonlinearOperator
    from .square import Square
    from .streamed import Streamed, StreamedAfter
    from .streamed_autodiff import StreamedAutodiff

#: where each public name lives, imported on first use (every operator module imports pylops; a plugin's entry
#: module names them without paying for it: docs/architecture.md, "Start-up time")
_LAZY = {"Autodiff": "autodiff", "Composition": "composition", "compose": "composition", "Exp": "exp",
         "Linear": "linear", "Modulus": "modulus", "NonlinearOperator": "nonlinear_operator", "Square": "square",
         "Streamed": "streamed", "StreamedAfter": "streamed", "StreamedAutodiff": "streamed_autodiff"}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
