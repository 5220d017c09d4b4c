"""multimodal_ip: joint inverse problems over measurement modalities that share unknowns."""

__all__ = [
    "__version__",
    "hookimpl",
    "Variable",
    "VariableSpace",
    "DataTerm",
    "Invariance",
    "JointProblem",
    "balanced_weights",
    "solve",
]

__version__ = "0.1.0"

import os
from typing import TYPE_CHECKING

from ._lazy import lazy_exports

# pylops imports JAX whenever it is installed (to accept JAX arrays, which nothing here passes it): 150 MB of every
# process's memory (docs/performance.md, "Memory budget of a run"); JAX_PYLOPS=1 in the environment restores it
os.environ.setdefault("JAX_PYLOPS", "0")

from .hookspecs import hookimpl

if TYPE_CHECKING:  # type checkers see the names; at run time __getattr__ imports them on first use
    from .problem import DataTerm, Invariance, JointProblem, balanced_weights
    from .solvers import solve
    from .variables import Variable, VariableSpace

#: where each public name lives: imported on first use, so that ``mmip --help`` and ``import multimodal_ip.cli``
#: do not pay for pylops and scipy (about 1.3 s)
_LAZY = {"DataTerm": "problem", "Invariance": "problem", "JointProblem": "problem", "balanced_weights": "problem",
         "solve": "solvers", "Variable": "variables", "VariableSpace": "variables"}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
