"""Joint X-ray fluorescence + transmission tomography with self-absorption: the ``transmission-tomography`` and
``xrf-tomography`` modalities and the ``tomo-*`` simulations of :mod:`multimodal_ip` (see docs/tomography.md)."""

from .geometry import Geometry, RaySampling, ray_sampling
from .models import ATTENUATION_MODES, TransmissionModel, XRFTomographyModel

__all__ = ["ATTENUATION_MODES", "Geometry", "RaySampling", "TransmissionModel", "XRFTomographyModel", "ray_sampling"]
