__all__ = ["FluorescenceModel"]

import numpy as np
from mmip_scanprobe import CalibrationLayout, SubpixelShift, split_positions
from pylops import LinearOperator

from multimodal_ip.backend import get_array_module, to_numpy
from multimodal_ip.operators import NonlinearOperator
from multimodal_ip.operators.streamed import BLOCK_TEMPORARIES, STREAM_BLOCK_BYTES

from . import fluorescence_map
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
    block : :obj:`int`, optional
        Positions per block when the footprint differs by position (sub-pixel or refined positions): the
        shifted probes, footprints and their derivatives are made a block at a time, never for the whole scan
        (default: :meth:`block_for_bytes` of 16 MB; ``--chunk-memory`` sets it).

    Notes
    -----
    With :math:`G_j = \sum_e r_{ej} \tilde S_{c_j} w_e` the adjoint is :math:`\bar w = D^T r`,
    :math:`\bar P = \sum_j \mathrm{shift}_j^H(2c\,P_j G_j)`,
    :math:`\bar\delta_{jk} = \sum 2c\,\Re(\bar P_j \partial_{\delta_{jk}} P_j)\, G_j`.
    """

    def __init__(self, probe, positions_px, object_shape, n_elements, kernel_scale=1.0, refine=(),
                 dtype="float64", method="auto", name=None, block=None):
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
        self.block = block
        n_main = self.ne * int(np.prod(self.object_shape))
        self.layout = CalibrationLayout(n_main, self.window, len(self.positions), refine, dtype,
                                        nominal=self.positions, object_shape=self.object_shape)
        self.refine = self.layout.refine
        label = "+".join(("w", *self.refine))
        super().__init__(dims=(self.layout.size,), dimsd=(self.ne, len(self.positions)), dtype=dtype,
                         name=name or f"FluorescenceModel[{label}]")

    def position_bytes(self) -> int:
        """Bytes of temporaries one position adds to a block when footprints differ by position: its windows (one
        per element), the shifted probe, its FFT and two derivatives (complex), the footprint, its tangent or
        adjoint and two derivative footprints (real)."""
        return (self.ne + 4 * 2 + 4) * int(np.prod(self.window)) * self.dtype_real.itemsize

    def block_for_bytes(self, target: int) -> int:
        """Positions per block so that one block's temporaries stay under ``target`` bytes (at least one)."""
        return max(1, int(target) // max(self.position_bytes(), 1))

    def _state(self, v):
        ncp = get_array_module(v)
        v = v.astype(self.dtype, copy=False)  # compute in the model's precision (float32 runs)
        corners = self.corners
        if self.layout.moves:  # the corners follow refined positions (shifts stay within half a pixel)
            corners = split_positions(to_numpy(self.layout.split(v)[2]), self.object_shape, self.window,
                                      allow_outside=True, strict=False)[0]
        w, current, positions = self.layout.split(v)
        probe = self.probe if current is None else current
        fractions = self.fractions if positions is None else to_numpy(positions) - corners
        shifted = positions is not None or bool(np.any(fractions != 0))
        # the footprint shared by every position (the kernel itself when nothing shifts it; else the map's geometry
        # only: each block's footprints are made from the shifted probes)
        kernel = (self.kernel_scale * ncp.abs(probe) ** 2).astype(self.dtype)
        block = self.block if self.block is not None else self.block_for_bytes(STREAM_BLOCK_BYTES * BLOCK_TEMPORARIES)
        # a small scan's shifted probes and footprints are made once per state, as one block, and kept for its
        # products; a large one's a block at a time in every product (never for the whole scan)
        keep = shifted and self.block is None and \
            self.dimsd[1] * self.position_bytes() <= fluorescence_map.KEEP_STACK_BYTES
        fmap = FluorescenceMap(kernel, corners, self.object_shape, self.ne, dtype=self.dtype,
                               method="gather" if shifted else self.method,
                               block=self.dimsd[1] if keep else block if shifted else self.block)
        return {"w": w, "probe": probe, "fractions": fractions if shifted else None, "fmap": fmap, "xp": ncp,
                "kept": {} if keep else None}

    def _block(self, s, rows, derivatives=False):
        """``(shift, shifted probes, footprints, derivative footprints or None)`` of positions ``rows`` (kept in
        the state when it keeps them)."""
        kept = s["kept"]
        derivatives = derivatives or (kept is not None and self.layout.moves)  # kept: made once, with what needs them
        if kept is not None and (rows.start, True) in kept:
            return kept[rows.start, True]
        if kept is not None and not derivatives and (rows.start, False) in kept:
            return kept[rows.start, False]
        out = self._make_block(s, rows, derivatives)
        if kept is not None:
            kept[rows.start, derivatives] = out
        return out

    def _make_block(self, s, rows, derivatives):
        shift = SubpixelShift(s["fractions"][rows], self.window, xp=s["xp"], dtype=self.probe.dtype)
        probes = shift(s["probe"])
        kernel = (self.kernel_scale * s["xp"].abs(probes) ** 2).astype(self.dtype)
        if not derivatives:
            return shift, probes, kernel, None
        c = self.kernel_scale
        return shift, probes, kernel, [(2 * c * (probes.conj() * d).real).astype(self.dtype)
                                       for d in shift.derivatives(s["probe"])]

    def _map(self, s, w):
        fmap = s["fmap"]
        if s["fractions"] is None:
            return fmap.matvec(w)
        work = fmap.prepare(w)
        out = s["xp"].empty(self.dimsd, dtype=self.dtype)
        for rows in fmap.blocks():
            out[:, rows] = fmap.contract(work, self._block(s, rows)[2], rows)
        return out.ravel()

    def _forward(self, v):
        s = self._state(v)
        return self._map(s, s["w"]).reshape(self.dimsd)

    def _linearize(self, v):
        s = self._state(v)
        return self._map(s, s["w"]).reshape(self.dimsd), _FluorescenceJacobian(self, s)

    def _jacobian(self, v):
        return self._linearize(v)[1]


class _FluorescenceJacobian(LinearOperator):
    """The model's Jacobian at one state: a block of positions at a time when footprints differ by position."""

    def __init__(self, model, state):
        self.m, self.s = model, state
        super().__init__(dtype=model.dtype, dims=model.dims, dimsd=model.dimsd, name=f"J({model.name})")

    def _matvec(self, dv):
        m, s = self.m, self.s
        dv = dv.astype(m.dtype, copy=False)
        dw, dprobe, dpos = m.layout.split(dv, tangent=True)
        fmap = s["fmap"]
        if s["fractions"] is None:  # one footprint: its tangent is shared too
            out = fmap.matvec(dw)
            if dprobe is not None:
                dkernel = 2 * m.kernel_scale * (s["probe"].conj() * dprobe).real
                out = out + fmap.with_kernel(dkernel).matvec(s["w"])
            return out
        ncp = s["xp"]
        dpos = None if dpos is None else ncp.asarray(dpos, dtype=m.dtype)
        work, dwork = fmap.prepare(s["w"]), fmap.prepare(dw)
        out = ncp.empty(m.dimsd, dtype=m.dtype)
        for rows in fmap.blocks():
            shift, probes, kernel, dkernels = m._block(s, rows, derivatives=dpos is not None)
            out[:, rows] = fmap.contract(dwork, kernel, rows)
            dkernel = None
            if dprobe is not None:
                dkernel = 2 * m.kernel_scale * (probes.conj() * shift(dprobe)).real
            if dpos is not None:
                dk = dpos[rows, 0, None, None] * dkernels[0] + dpos[rows, 1, None, None] * dkernels[1]
                dkernel = dk if dkernel is None else dkernel + dk
            if dkernel is not None:
                out[:, rows] += fmap.contract(work, dkernel.astype(m.dtype, copy=False), rows)
        return out.ravel()

    def _rmatvec(self, r):
        m, s = self.m, self.s
        ncp, fmap = s["xp"], s["fmap"]
        if s["fractions"] is None:
            gw = fmap.rmatvec(r)
            gprobe = None
            if "probe" in m.refine:  # the adjoint of the shared footprint
                gprobe = 2 * m.kernel_scale * s["probe"] * fmap.kernel_adjoint(s["w"], r)
            return m.layout.join(gw, gprobe, None)
        r = r.reshape(m.dimsd)
        work = fmap.prepare(s["w"]) if m.refine else None
        acc = fmap.accumulator(r)
        gprobe = ncp.zeros(m.window, dtype=m.probe.dtype) if "probe" in m.refine else None
        gpos = ncp.zeros((m.dimsd[1], 2), dtype=m.dtype) if m.layout.moves else None
        for rows in fmap.blocks():
            shift, probes, kernel, dkernels = m._block(s, rows, derivatives=gpos is not None)
            fmap.scatter(acc, r[:, rows], kernel, rows)
            if work is None:
                continue
            g = fmap.window_sums(work, r[:, rows], rows)  # (B, Kh, Kw)
            if gprobe is not None:
                gprobe += shift.shared_adjoint(2 * m.kernel_scale * probes * g)
            if gpos is not None:
                gpos[rows] = ncp.stack([ncp.sum(d * g, axis=(1, 2)) for d in dkernels], axis=1)
        return m.layout.join(fmap.finish(acc).ravel(), gprobe, gpos)
