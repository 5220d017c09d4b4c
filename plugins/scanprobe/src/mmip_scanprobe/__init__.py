"""Shared pieces of scanning-probe modalities (ptychography, XRF maps): probe windows at sub-pixel scan
positions, their calibration layout, the scatter of window patches back into an object (the adjoint of their
extraction), and the coupling of element maps into a complex object.

A library for modality plugins, not a plugin itself: it registers nothing.
"""

__all__ = ["AFFINE_SIZE", "BandLimitedWindows", "CalibrationLayout", "CubicPatches", "EdgePadding", "ObjectFrame",
           "SubpixelShift", "affine_frame",
           "affine_positions", "as_positions", "cubic_weights", "extract_patches", "split_positions", "REFINABLE",
           "ComplexCoupling", "scatter_patches_"]

from typing import TYPE_CHECKING

from multimodal_ip._lazy import lazy_exports

from ._positions import (  # numpy only: what a plugin's entry module reads at import
    AFFINE_SIZE,
    REFINABLE,
    affine_frame,
    affine_positions,
    as_positions,
    extract_patches,
    split_positions,
)

if TYPE_CHECKING:  # type checkers see the names; at run time __getattr__ imports them on first use
    from .complex_coupling import ComplexCoupling
    from .object_frame import ObjectFrame
    from .scatter import scatter_patches_
    from .windows import (
        BandLimitedWindows,
        CalibrationLayout,
        CubicPatches,
        EdgePadding,
        SubpixelShift,
        cubic_weights,
    )

#: where the other public names live, imported on first use (pylops and numba: not at ``mmip plugins``)
_LAZY = {"ComplexCoupling": "complex_coupling", "scatter_patches_": "scatter", "BandLimitedWindows": "windows",
         "CalibrationLayout": "windows", "CubicPatches": "windows", "EdgePadding": "windows",
         "ObjectFrame": "object_frame", "SubpixelShift": "windows", "cubic_weights": "windows"}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
