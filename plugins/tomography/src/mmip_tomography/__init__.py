"""Joint X-ray fluorescence + transmission tomography with self-absorption: the ``transmission-tomography`` and
``xrf-tomography`` modalities and the ``tomo-*`` simulations of :mod:`multimodal_ip` (see docs/tomography.md)."""

from typing import TYPE_CHECKING

from multimodal_ip._lazy import lazy_exports

if TYPE_CHECKING:  # type checkers see the names; at run time __getattr__ imports them on first use
    from .geometry import Geometry, RaySampling, ray_sampling
    from .models import ATTENUATION_MODES, TransmissionModel, XRFTomographyModel

#: where each public name lives, imported on first use: the plugin's entry module loads without the numerics
#: (``mmip plugins`` imports no pylops or scipy: docs/architecture.md, "Start-up time")
_LAZY = {"Geometry": "geometry", "RaySampling": "geometry", "ray_sampling": "geometry",
         "ATTENUATION_MODES": "models", "TransmissionModel": "models", "XRFTomographyModel": "models"}


__all__ = ["ATTENUATION_MODES", "Geometry", "RaySampling", "TransmissionModel", "XRFTomographyModel", "ray_sampling"]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
