__all__ = ["FluorescenceModel"]

import numpy as np
from mmip_scanprobe import CalibrationLayout, split_positions
from pylops import LinearOperator

from multimodal_ip.backend import get_array_module, to_numpy
from multimodal_ip.operators import NonlinearOperator

from .fluorescence_map import FluorescenceMap


class FluorescenceModel(NonlinearOperator):
    r"""XRF with the beam footprint made from the probe, optionally refining the probe and the positions.

    .. math:: D[e, j] = \sum K_j \odot \tilde S_{c_j} w_e,\qquad K_j = c\,|P(\cdot - \delta_j)|^2

    (positions :math:`p_j = c_j + \delta_j` split as in
    :class:`~mmip_ptychography.PtychographyModel`; :math:`c` fixes the footprint's scale, e.g.
    ``sum(kernel) / sum(|P_0|**2)`` for a file's kernel and start probe).

    Parameters
    ----------
    probe : array, shape ``(Kh, Kw)``
        Complex probe (fixed value, or start value when refined).
    positions_px : array, shape ``(J, 2)``
        Top-left window corners, may be fractional; windows may hang over the object's edge.
    object_shape : :obj:`tuple`
    n_elements : :obj:`int`
    kernel_scale : :obj:`float`, optional
        :math:`c`.
    refine : sequence of :obj:`str`, optional
        ``"probe"``, ``"positions"`` and/or ``"affine"``; the input is then
        ``[w; probe (re, im pairs); positions; affine]`` (:class:`~mmip_scanprobe.CalibrationLayout`).
    dtype : :obj:`str`, optional
        Real dtype.
    method : :obj:`str`, optional
        :class:`FluorescenceMap` method for a shared kernel (whole-pixel positions, not refined).

    Notes
    -----
    With :math:`G_j = \sum_e r_{ej} \tilde S_{c_j} w_e` the adjoint is :math:`\bar w = D^T r`,
    :math:`\bar P = \sum_j \mathrm{shift}_j^H(2c\,P_j G_j)`,
    :math:`\bar\delta_{jk} = \sum 2c\,\Re(\bar P_j \partial_{\delta_{jk}} P_j)\, G_j`.
    """

    def __init__(self, probe, positions_px, object_shape, n_elements, kernel_scale=1.0, refine=(),
                 dtype="float64", method="auto", name=None):
        self.object_shape = tuple(int(s) for s in object_shape)
        self.ne = int(n_elements)
        self.window = tuple(int(s) for s in probe.shape)
        self.dtype_real = np.dtype(dtype)
        self.probe = get_array_module(probe).asarray(probe, dtype=np.result_type(dtype, np.complex64))
        self.positions = np.asarray(to_numpy(positions_px), dtype=float)
        self.corners, self.fractions = split_positions(self.positions, self.object_shape, self.window,
                                                       allow_outside=True)
        self.kernel_scale = float(kernel_scale)
        self.method = method
        n_main = self.ne * int(np.prod(self.object_shape))
        self.layout = CalibrationLayout(n_main, self.window, len(self.positions), refine, dtype,
                                        nominal=self.positions, object_shape=self.object_shape)
        self.refine = self.layout.refine
        label = "+".join(("w", *self.refine))
        super().__init__(dims=(self.layout.size,), dimsd=(self.ne, len(self.positions)), dtype=dtype,
                         name=name or f"FluorescenceModel[{label}]")

    def _state(self, v):
        ncp = get_array_module(v)
        v = v.astype(self.dtype, copy=False)  # compute in the model's precision (float32 runs)
        corners = self.corners
        if self.layout.moves:  # the corners follow refined positions (shifts stay within half a pixel)
            corners = split_positions(to_numpy(self.layout.split(v)[2]), self.object_shape, self.window,
                                      allow_outside=True, strict=False)[0]
        w, probe, probes, shift = self.layout.probes(v, self.probe, corners, self.fractions, self.probe.dtype)
        kernel = (self.kernel_scale * ncp.abs(probes) ** 2).astype(self.dtype)
        fmap = FluorescenceMap(kernel, corners, self.object_shape, self.ne, dtype=self.dtype,
                               method=self.method if shift is None else "gather")
        return {"w": w, "probe": probe, "probes": probes, "shift": shift, "fmap": fmap, "xp": ncp}

    def _forward(self, v):
        s = self._state(v)
        return s["fmap"].matvec(s["w"]).reshape(self.dimsd)

    def _linearize(self, v):
        s = self._state(v)
        return s["fmap"].matvec(s["w"]).reshape(self.dimsd), _FluorescenceJacobian(self, s)

    def _jacobian(self, v):
        return self._linearize(v)[1]


class _FluorescenceJacobian(LinearOperator):
    def __init__(self, model, state):
        self.m, self.s = model, state
        self.dkernels = None
        if model.layout.moves:
            c, probes = model.kernel_scale, state["probes"]
            self.dkernels = [2 * c * (probes.conj() * d).real for d in state["shift"].derivatives(state["probe"])]
        super().__init__(dtype=model.dtype, dims=model.dims, dimsd=model.dimsd, name=f"J({model.name})")

    def _matvec(self, dv):
        m, s = self.m, self.s
        dv = dv.astype(m.dtype, copy=False)
        dw, dprobe, dpos = m.layout.split(dv, tangent=True)
        out = s["fmap"].matvec(dw)
        dkernel = None
        if dprobe is not None:
            dprobes = dprobe if s["shift"] is None else s["shift"](dprobe)
            dkernel = 2 * m.kernel_scale * (s["probes"].conj() * dprobes).real
        if dpos is not None:
            dpos = s["xp"].asarray(dpos, dtype=m.dtype)
            dk = dpos[:, 0, None, None] * self.dkernels[0] + dpos[:, 1, None, None] * self.dkernels[1]
            dkernel = dk if dkernel is None else dkernel + dk
        if dkernel is not None:
            out = out + s["fmap"].with_kernel(dkernel).matvec(s["w"])
        return out

    def _rmatvec(self, r):
        m, s = self.m, self.s
        ncp = s["xp"]
        gw = s["fmap"].rmatvec(r)
        gprobe = gpos = None
        if m.refine:
            g = s["fmap"].kernel_adjoint(s["w"], r)
            if "probe" in m.refine:
                u = 2 * m.kernel_scale * s["probes"] * g
                gprobe = u if s["shift"] is None else s["shift"].shared_adjoint(u)
            if m.layout.moves:
                gpos = ncp.stack([ncp.sum(d * g, axis=(1, 2)) for d in self.dkernels], axis=1)
        return m.layout.join(gw, gprobe, gpos)
