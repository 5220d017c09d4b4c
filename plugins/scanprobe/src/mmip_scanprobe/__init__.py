"""Shared pieces of scanning-probe modalities (ptychography, XRF maps): probe windows at sub-pixel scan
positions, their calibration layout, and the coupling of element maps into a complex object.

A library for modality plugins, not a plugin itself: it registers nothing.
"""

__all__ = ["AFFINE_SIZE", "CalibrationLayout", "CubicPatches", "SubpixelShift", "affine_frame", "affine_positions",
           "as_positions", "cubic_weights", "extract_patches", "split_positions", "REFINABLE", "ComplexCoupling"]

from .complex_coupling import ComplexCoupling
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
