"""Far-field ptychography modality for multimodal_ip."""

__all__ = ["FarField", "fresnel_zone_plate_probe", "raster_positions", "fermat_spiral_positions",
           "ptychography_operator", "wavelength_m", "PtychographyModel", "absorption_coupling",
           "parse_coupling", "best_phase_error"]

from .coupling import absorption_coupling, parse_coupling
from .far_field import FarField
from .phase_error import best_phase_error
from .plugin import ptychography_operator
from .probe import fresnel_zone_plate_probe, wavelength_m
from .ptychography_model import PtychographyModel
from .scan import fermat_spiral_positions, raster_positions
