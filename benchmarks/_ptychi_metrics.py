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

#: the fraction of the brightest pixel's illumination below which ``final_lit`` leaves a pixel out
LIT = 1e-3


def illumination(probe, positions, shape):
    """The sum over positions (top-left corners, rounded to whole pixels) of ``|probe|^2`` at each object pixel."""
    out = np.zeros(shape)
    p2 = np.abs(np.asarray(probe)) ** 2
    k0, k1 = p2.shape
    for r, c in np.rint(np.asarray(positions, dtype=float)).astype(int):
        out[max(r, 0):r + k0, max(c, 0):c + k1] += p2[max(-r, 0):, max(-c, 0):][:shape[0] - r, :shape[1] - c]
    return out


def aligned(obj, truth):
    """``obj`` times the global phase that brings it closest to ``truth``."""
    return obj * np.exp(1j * np.angle(np.vdot(obj, truth)))


def final_errors(obj, truth, probe, positions):
    """``{"final_aligned", "final_lit", "lit_fraction"}`` of the final object ``obj`` against ``truth`` (see the
    module's docstring)."""
    obj, truth = np.asarray(obj), np.asarray(truth)
    ill = illumination(probe, positions, truth.shape)
    lit = ill >= LIT * ill.max()
    a = aligned(obj, truth)
    b = aligned(obj[lit], truth[lit])
    return {"final_aligned": float(np.linalg.norm(a - truth) / np.linalg.norm(truth)),
            "final_lit": float(np.linalg.norm(b - truth[lit]) / np.linalg.norm(truth[lit])),
            "lit_fraction": float(lit.mean())}
