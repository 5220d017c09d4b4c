"""The error measure of a far-field reconstruction: intensities do not see a global phase factor."""

__all__ = ["best_phase_error"]

import numpy as np


def best_phase_error(estimate, truth) -> float:
    r"""Relative error of a complex array after the best global phase factor (intensities cannot see it).

    Parameters
    ----------
    estimate, truth : :obj:`numpy.ndarray`
        Complex arrays of the same shape (an object, a probe).

    Returns
    -------
    error : :obj:`float`
        :math:`\min_\phi \|e^{i\phi} u - t\| / \|t\|`, attained at :math:`e^{i\phi} = \langle u, t\rangle /
        |\langle u, t\rangle|` (1 when they are orthogonal).
    """
    c = np.vdot(estimate, truth)
    phase = c / abs(c) if abs(c) > 0 else 1.0
    return float(np.linalg.norm(estimate * phase - truth) / np.linalg.norm(truth))
