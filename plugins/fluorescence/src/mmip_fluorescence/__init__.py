"""X-ray fluorescence modality for multimodal_ip."""

__all__ = ["FluorescenceMap", "FluorescenceModel", "full_grid_positions"]

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # type checkers see the names; at run time __getattr__ imports them on first use
    from .fluorescence_map import FluorescenceMap, full_grid_positions
    from .fluorescence_model import FluorescenceModel

#: where each public name lives, imported on first use: the plugin's entry module loads without the numerics
#: (``mmip plugins`` imports no pylops or scipy: docs/architecture.md, "Start-up time")
_LAZY = {"FluorescenceMap": "fluorescence_map", "full_grid_positions": "fluorescence_map",
         "FluorescenceModel": "fluorescence_model"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
