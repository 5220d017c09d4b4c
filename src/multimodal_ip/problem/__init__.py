__all__ = ["CalibrationEstimate", "CalibrationEstimator", "Curvature", "DataTerm", "Invariance", "JointProblem",
           "Linearization", "balanced_weights", "Objective", "ProximalObjective", "align", "ALIGN_GROWTH"]

from typing import TYPE_CHECKING

from multimodal_ip._lazy import lazy_exports

from .align import ALIGN_GROWTH, align  # numpy only; eager, so that ``align`` is the function, not the module

if TYPE_CHECKING:  # type checkers see the names; at run time __getattr__ imports them on first use
    from .balance import balanced_weights
    from .curvature import Curvature
    from .estimator import CalibrationEstimate, CalibrationEstimator
    from .joint_problem import JointProblem
    from .linearization import Linearization
    from .objective import Objective, ProximalObjective
    from .term import DataTerm, Invariance

#: where each public name lives, imported on first use: a module that needs only ``Objective`` (the built-in
#: solvers, which ``mmip plugins`` loads) does not pay for pylops (docs/architecture.md, "Start-up time")
_LAZY = {"balanced_weights": "balance", "Curvature": "curvature", "CalibrationEstimate": "estimator",
         "CalibrationEstimator": "estimator",
         "JointProblem": "joint_problem", "Linearization": "linearization", "Objective": "objective",
         "ProximalObjective": "objective", "DataTerm": "term", "Invariance": "term"}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
