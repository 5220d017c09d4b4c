"""Far-field ptychography modality for multimodal_ip."""

__all__ = ["FarField", "fresnel_zone_plate_probe", "raster_positions", "fermat_spiral_positions",
           "ptychography_operator", "wavelength_m", "PtychographyModel", "absorption_coupling",
           "parse_coupling", "best_phase_error", "PtychographyCurvature", "PhaseCoupling",
           "PositionEstimator", "PositionPosterior"]

from typing import TYPE_CHECKING

from multimodal_ip._lazy import lazy_exports

if TYPE_CHECKING:  # type checkers see the names; at run time __getattr__ imports them on first use
    from .coupling import absorption_coupling, parse_coupling
    from .curvature import PtychographyCurvature
    from .far_field import FarField
    from .phase_error import best_phase_error
    from .phase_matrix import PhaseCoupling
    from .plugin import ptychography_operator
    from .position_estimator import PositionEstimator
    from .position_posterior import PositionPosterior
    from .probe import fresnel_zone_plate_probe, wavelength_m
    from .ptychography_model import PtychographyModel
    from .scan import fermat_spiral_positions, raster_positions

#: where each public name lives, imported on first use: the plugin's entry module loads without the numerics
#: (``mmip plugins`` imports no pylops or scipy: docs/architecture.md, "Start-up time")
_LAZY = {"absorption_coupling": "coupling", "parse_coupling": "coupling", "PtychographyCurvature": "curvature",
         "FarField": "far_field", "best_phase_error": "phase_error", "PhaseCoupling": "phase_matrix",
         "ptychography_operator": "plugin", "PositionEstimator": "position_estimator",
         "PositionPosterior": "position_posterior",
         "fresnel_zone_plate_probe": "probe", "wavelength_m": "probe", "PtychographyModel": "ptychography_model",
         "fermat_spiral_positions": "scan", "raster_positions": "scan"}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
