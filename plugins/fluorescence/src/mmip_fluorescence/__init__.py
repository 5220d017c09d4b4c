"""X-ray fluorescence modality for multimodal_ip."""

__all__ = ["FluorescenceMap", "FluorescenceModel", "full_grid_positions"]

from typing import TYPE_CHECKING

from multimodal_ip._lazy import lazy_exports

if TYPE_CHECKING:  # type checkers see the names; at run time __getattr__ imports them on first use
    from .fluorescence_map import FluorescenceMap, full_grid_positions
    from .fluorescence_model import FluorescenceModel

#: where each public name lives, imported on first use: the plugin's entry module loads without the numerics
#: (``mmip plugins`` imports no pylops or scipy: docs/architecture.md, "Start-up time")
_LAZY = {"FluorescenceMap": "fluorescence_map", "full_grid_positions": "fluorescence_map",
         "FluorescenceModel": "fluorescence_model"}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
