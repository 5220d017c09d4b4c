"""Shared pieces of scanning-probe modalities (ptychography, XRF maps): probe windows at sub-pixel scan
positions, their calibration layout, the scatter of window patches back into an object (the adjoint of their
extraction), and the coupling of element maps into a complex object.

A library for modality plugins, not a plugin itself: it registers nothing.
"""

__all__ = ["AFFINE_SIZE", "CalibrationLayout", "CubicPatches", "SubpixelShift", "affine_frame", "affine_positions",
           "as_positions", "cubic_weights", "extract_patches", "split_positions", "REFINABLE", "ComplexCoupling",
           "scatter_patches_"]

from .complex_coupling import ComplexCoupling
from .scatter import scatter_patches_
from .windows import (
    AFFINE_SIZE,
    REFINABLE,
    CalibrationLayout,
    CubicPatches,
    SubpixelShift,
    affine_frame,
    affine_positions,
    as_positions,
    cubic_weights,
    extract_patches,
    split_positions,
)
