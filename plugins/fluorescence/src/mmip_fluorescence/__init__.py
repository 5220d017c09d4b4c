"""X-ray fluorescence modality for multimodal_ip."""

__all__ = ["FluorescenceMap", "FluorescenceModel", "full_grid_positions"]

from .fluorescence_map import FluorescenceMap, full_grid_positions
from .fluorescence_model import FluorescenceModel
