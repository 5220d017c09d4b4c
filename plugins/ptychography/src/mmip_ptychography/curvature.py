"""The ptychography term's curvature offer (``DataTerm(curvature=...)``): a block-diagonal estimate of its
Gauss-Newton matrix per unknown, the preconditioner of ``--solver-option precondition=curvature``."""

__all__ = ["PtychographyCurvature", "loss_factor", "window_illumination"]

import numpy as np

from multimodal_ip.backend import get_array_module, to_numpy


def loss_factor(loss) -> float:
    r"""The loss's Gauss-Newton curvature per real direction of the prediction, averaged over the two real
    directions of a complex value: :math:`(|M^{1/2} 1|^2 + |M^{1/2} i|^2) / 2` at :math:`y = 1` (amplitude
    :math:`s/2`: its curvature is :math:`s` along the phase of :math:`y` and 0 across it; Poisson :math:`2 s p`).

    Parameters
    ----------
    loss : :class:`~multimodal_ip.losses.Loss`
        The term's loss.

    Returns
    -------
    :obj:`float`
    """
    root = loss.curvature_sqrt(np.ones(2, dtype=complex), np.ones(2))
    return float(np.sum(np.abs(root(np.array([1.0, 1j]))) ** 2) / 2)


def window_illumination(shape, intensity, corners, block=None):
    r""":math:`\sum_j I(r - c_j)`: ``intensity`` added at each whole-pixel top-left corner :math:`c_j` of an array of
    ``shape``, windows partly outside clipped (:func:`~mmip_scanprobe.scatter_patches_` per block of positions: one
    compiled pass with numba, one scatter on a GPU).

    Parameters
    ----------
    shape : :obj:`tuple`
        ``(n0, n1)`` of the result.
    intensity : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        ``(Np0, Np1)`` real window (e.g. :math:`|P|^2`); the result has its dtype and device.
    corners : :obj:`numpy.ndarray`
        ``(J, 2)`` integer top-left (row, col) corners, anywhere.
    block : :obj:`int`, optional
        Positions per scatter, the temporary ``(block, Np0, Np1)``; default: ``2**17`` values (cache-sized).

    Returns
    -------
    illumination : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        ``(n0, n1)``.
    """
    from mmip_scanprobe import scatter_patches_

    ncp = get_array_module(intensity)
    (n0, n1), (w0, w1) = shape, intensity.shape
    corners = np.clip(np.asarray(corners, dtype=np.int64).reshape(-1, 2) + (w0, w1), 0, (n0 + w0, n1 + w1))
    block = block or max(1, 2**17 // (w0 * w1))
    rows, cols = np.ascontiguousarray(corners[:, 0]), np.ascontiguousarray(corners[:, 1])
    out = ncp.zeros((n0 + 2 * w0, n1 + 2 * w1), dtype=intensity.dtype)  # padded: clipped windows fit
    for s in range(0, len(rows), block):
        ones = ncp.ones((len(rows[s : s + block]), w0, w1), dtype=intensity.dtype)  # scaled by the intensity
        scatter_patches_(out, ones, intensity, rows[s : s + block], cols[s : s + block])
    return out[w0 : w0 + n0, w1 : w1 + n1]


class PtychographyCurvature:
    r"""``curvature(u) -> {variable: array}`` of a ptychography term (the contract in docs/plugins.md).

    * ``x`` and ``w``: :math:`c\,\sum_j |P(r - p_j)|^2`, the illumination (whole-pixel windows at the rounded
      positions), times the loss's factor :math:`c` (``loss_factor``); ``w_e`` times
      :math:`|a_e| \sum_f |a_f|` (the row sums of the rank-one coupling of the elements at a pixel, which bound it).
    * ``probe``: :math:`c\,\sum_j |S_{p_j} z|^2` (each real pair).
    * ``positions``: the exact 2 x 2 Gauss-Newton block of each pattern,
      :math:`G_j = \Re\,[M^{1/2} F(P\,\partial_k S_{p_j} z)]^H [M^{1/2} F(P\,\partial_l S_{p_j} z)]`.
    * ``affine``: none (a solver's ``precondition=curvature`` then refuses, ``auto`` falls back).

    Parameters
    ----------
    model : :class:`~mmip_ptychography.PtychographyModel`
        The term's operator.
    loss : :class:`~multimodal_ip.losses.Loss`
        The term's loss.
    data : array
        The term's measured intensities (the loss's curvature may read them).
    """

    def __init__(self, model, loss, data):
        self.model, self.loss, self.data = model, loss, data
        self.factor = loss_factor(loss)
        coef = np.abs(np.asarray(to_numpy(model.coupling.coefficients), dtype=float))
        self.element_factor = coef * coef.sum()

    def illumination(self, positions, probe):
        """:math:`\\sum_j |P(r - p_j)|^2` on the object grid (windows at the rounded positions, clipped)."""
        op = self.model
        intensity = (probe.real**2 + probe.imag**2).astype(op.dtype)
        corners = np.rint(np.asarray(positions, dtype=float)).astype(np.int64)
        return window_illumination(op.object_shape, intensity, corners)

    def __call__(self, u):
        op = self.model
        state = op.stream_prepare(u)
        ncp = state["xp"]
        _, _, moved = op.layout.split(u.astype(op.dtype, copy=False))
        positions = op.positions if moved is None else to_numpy(moved)
        illum = self.illumination(positions, state["probe"]).ravel() * self.factor
        out = {"x": illum, "w": ncp.concatenate([f * illum for f in self.element_factor])}
        if "probe" in op.refine:
            acc = ncp.zeros(op.window, dtype=op.dtype)
            for rows in op.blocks():
                p = op._patches(state, state["z"], rows)
                acc += (p.real**2 + p.imag**2).sum(axis=0)
            out["probe"] = ncp.repeat(self.factor * acc.ravel(), 2)
        if "positions" in op.refine and "positions" not in getattr(op, "no_derivatives", ()):  # else held (ones)
            out["positions"] = self.position_blocks(state)
        return out

    def position_blocks(self, state):
        """``(J, 2, 2)``: the Gauss-Newton block of each position at the model ``state``."""
        op = self.model
        ncp = state["xp"]
        blocks = ncp.zeros((len(op.positions), 2, 2), dtype=op.dtype)
        for rows in op.blocks():
            y = op.stream_forward(state, rows)
            data = self.data[rows]
            data = data.astype(y.real.dtype) if data.dtype.kind in "iub" else data
            root = self.loss.curvature_sqrt(y.ravel(), data.ravel())
            d0, d1 = state["sampler"].derivatives(state["z"], rows)
            m = [root(op.transform(state["folded"] * d).ravel()).reshape(d.shape) for d in (d0, d1)]
            for a in range(2):
                for b in range(a, 2):
                    g = ncp.einsum("jxy,jxy->j", m[a].real, m[b].real) + ncp.einsum("jxy,jxy->j", m[a].imag,
                                                                                    m[b].imag)
                    blocks[rows, a, b] = g
                    blocks[rows, b, a] = g
        return blocks
