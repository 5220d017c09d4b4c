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

from .hookspecs import hookimpl
from .problem import DataTerm, Invariance, JointProblem, balanced_weights
from .solvers import solve
from .variables import Variable, VariableSpace
