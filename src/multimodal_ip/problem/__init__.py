__all__ = ["DataTerm", "Invariance", "JointProblem", "Linearization", "balanced_weights", "Objective",
           "ProximalObjective", "align", "ALIGN_GROWTH"]

from .align import ALIGN_GROWTH, align
from .balance import balanced_weights
from .joint_problem import JointProblem
from .linearization import Linearization
from .objective import Objective, ProximalObjective
from .term import DataTerm, Invariance
