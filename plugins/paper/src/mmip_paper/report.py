"""The paper's extra error column: :math:`z = x + i\\sum_e w_e` after the best global phase factor."""

__all__ = ["phase_corrected_error", "PaperReport"]

import numpy as np
from mmip_ptychography.phase_error import best_phase_error


def phase_corrected_error(x, w, x_true, w_true) -> float:
    r"""Relative error of :math:`z = x + i\sum_e w_e` after the best global phase factor.

    Parameters
    ----------
    x : :obj:`numpy.ndarray`
        Reconstructed real part ``(n0, n1)``.
    w : :obj:`numpy.ndarray`
        Reconstructed element maps ``(ne, n0, n1)``.
    x_true : :obj:`numpy.ndarray`
        True real part, same shape as ``x``.
    w_true : :obj:`numpy.ndarray`
        True element maps, same shape as ``w``.

    Returns
    -------
    error : :obj:`float`
        :func:`~mmip_ptychography.best_phase_error` of the two complex objects.
    """
    return best_phase_error(x + 1j * w.sum(0), x_true + 1j * w_true.sum(0))


class PaperReport:
    """Adds ``error z (best phase)`` to comparison tables whose results have the paper's ``x`` and ``w``."""

    def columns(self, arrays, truth):
        if not truth or not {"x", "w"} <= set(truth):
            return {}
        return {m: {"error z (best phase)": phase_corrected_error(np.asarray(a["x"]), np.asarray(a["w"]),
                                                                  truth["x"], truth["w"])}
                for m, a in arrays.items() if {"x", "w"} <= set(a)}
