"""The object error of ``bench_ptychi.py --accuracy`` read two more ways, on the final objects of both codes.

The benchmark's error is ``|z - z_true| / |z_true|`` over every pixel, as the issue states it. Ptychography alone
with the probe given cannot fix the object's global phase (``z`` and ``z e^{i phi}`` give the same intensities), and
pixels no probe position lights (the object's rim, between the spots of a low-overlap scan) are not seen by the
data: there a code's value is what its path leaves of the start plus the noise it fits. So next to the plain error:

* ``final_aligned``: the error after the best global phase, ``min_phi |z e^{i phi} - z_true| / |z_true|``;
* ``final_lit``: the same over the pixels the scan lights at least :data:`LIT` of its brightest pixel (the sum over
  positions of ``|probe|^2`` at each pixel), relative to ``|z_true|`` over those pixels.
"""

import numpy as np
from mmip_ptychography.curvature import window_illumination
from mmip_ptychography.phase_error import best_phase_error

#: the fraction of the brightest pixel's illumination below which ``final_lit`` leaves a pixel out
LIT = 1e-3


def illumination(probe, positions, shape):
    """The sum over positions (top-left corners, rounded to whole pixels) of ``|probe|^2`` at each object pixel."""
    p2 = np.abs(np.asarray(probe)) ** 2
    return window_illumination(tuple(shape), p2, np.rint(np.asarray(positions, dtype=float)).astype(np.int64))


def final_errors(obj, truth, probe, positions):
    """``{"final_aligned", "final_lit", "lit_fraction"}`` of the final object ``obj`` against ``truth`` (see the
    module's docstring)."""
    obj, truth = np.asarray(obj), np.asarray(truth)
    ill = illumination(probe, positions, truth.shape)
    lit = ill >= LIT * ill.max()
    return {"final_aligned": best_phase_error(obj, truth), "final_lit": best_phase_error(obj[lit], truth[lit]),
            "lit_fraction": float(lit.mean())}
