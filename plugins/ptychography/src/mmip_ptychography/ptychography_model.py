__all__ = ["PtychographyModel"]

import numpy as np
from pylops import LinearOperator

from multimodal_ip.backend import fft2, fft2c, get_array_module, ifft2c, interleaved_index, scatter_add, to_numpy
from multimodal_ip.operators import (
    CalibrationLayout,
    ComplexCoupling,
    NonlinearOperator,
    split_positions,
)

from .far_field import extract_patches


class PtychographyModel(NonlinearOperator):
    r"""Far-field ptychography with sub-pixel positions and, optionally, the probe and positions as unknowns.

    .. math:: \Psi_j = F\big(P(\cdot - \delta_j) \odot S_{c_j} z\big),\quad z = x + i \textstyle\sum_e a_e w_e

    where position :math:`p_j = c_j + \delta_j` is split into a whole-pixel corner :math:`c_j` (patch
    extraction) and a remainder :math:`\delta_j` (a Fourier shift of the probe; the far-field intensity
    does not see the resulting phase ramp of the exit wave).

    Parameters
    ----------
    probe : array, shape ``(Np0, Np1)``
        Complex probe (the fixed value, or the start value when refined).
    positions_px : array, shape ``(J, 2)``
        Top-left (row, col) of each window in object pixels; may be fractional.
    object_shape : :obj:`tuple`
        ``(n_rows, n_cols)``.
    n_elements : :obj:`int`
        Number of element maps :math:`w_e`.
    refine : sequence of :obj:`str`, optional
        Unknowns besides ``[x; w]``: ``"probe"`` and/or ``"positions"``; the input is then the packed real
        vector ``[x; w; probe (re, im pairs); positions]`` (see :class:`~multimodal_ip.operators.CalibrationLayout`).
    coefficients : array-like, optional
        Coupling :math:`a_e` (default ones).
    dtype : :obj:`str`, optional
        Real input dtype; the output is the matching complex dtype.

    Notes
    -----
    With :math:`b_j = F^{-1} r_j` and :math:`q_j = \overline{S_{c_j} z}\, b_j` the adjoint is
    :math:`\bar z = \sum_j S_{c_j}^T(\bar P_j b_j)`, :math:`\bar P = \sum_j \mathrm{shift}_j^H q_j`,
    :math:`\bar\delta_{jk} = \Re\langle \partial_{\delta_{jk}} P_j, q_j\rangle`. Whole-pixel positions give
    exactly :class:`~mmip_ptychography.FarField`; positions that leave the object are clipped to its edge
    (the remainder grows) while refining.
    """

    def __init__(self, probe, positions_px, object_shape, n_elements, refine=(), coefficients=None,
                 dtype="float64", name=None):
        self.object_shape = tuple(int(s) for s in object_shape)
        self.window = tuple(int(s) for s in probe.shape)
        ncp = get_array_module(probe)
        self.coupling = ComplexCoupling(self.object_shape, n_elements, coefficients=coefficients, dtype=dtype)
        cdtype = self.coupling.dtype
        self.probe = ncp.asarray(probe, dtype=cdtype)
        self.positions = np.asarray(to_numpy(positions_px), dtype=float)
        # validated now: errors before any solve (refined positions keep these corners)
        self.corners, self.fractions = split_positions(self.positions, self.object_shape, self.window)
        self.layout = CalibrationLayout(self.coupling.shape[1], self.window, len(self.positions), refine, dtype)
        self.refine = self.layout.refine
        self._fixed = None  # (probe, shifted probes, shift) once computed, when nothing is refined
        label = "+".join(("object", *self.refine))
        super().__init__(dims=(self.layout.size,), dimsd=(len(self.positions), *self.window), dtype=dtype,
                         dtyped=cdtype, name=name or f"PtychographyModel[{label}]")

    def _state(self, v):
        ncp = get_array_module(v)
        v = v.astype(self.dtype, copy=False)  # compute in the model's precision (float32 runs)
        if self.refine or self._fixed is None:
            main, probe, probes, shift = self.layout.probes(v, self.probe, self.corners, self.fractions, self.dtyped)
            if not self.refine:  # fixed probe and positions: the shifted probes are computed once
                self._fixed = (probe, probes, shift)
        else:
            main = self.layout.split(v)[0]
            probe, probes, shift = self._fixed
        z = self.coupling.matvec(main).reshape(self.object_shape)
        corners = ncp.asarray(self.corners)
        patches = extract_patches(z, corners, self.window)
        return {"probe": probe, "probes": probes if shift is not None else probe[None], "shift": shift,
                "corners": corners, "patches": patches, "xp": ncp}

    def _forward(self, v):
        s = self._state(v)
        return fft2c(s["probes"] * s["patches"])

    def _linearize(self, v):
        s = self._state(v)
        return fft2c(s["probes"] * s["patches"]), _PtychographyJacobian(self, s)

    def _jacobian(self, v):
        return self._linearize(v)[1]


class _PtychographyJacobian(LinearOperator):
    def __init__(self, model, state):
        self.m, self.s = model, state
        self.dtype_in = model.dtype  # real input, complex output (pylops keeps one dtype)
        ncp = state["xp"]
        rows = state["corners"][:, 0, None, None] + ncp.arange(model.window[0])[None, :, None]
        cols = state["corners"][:, 1, None, None] + ncp.arange(model.window[1])[None, None, :]
        flat = rows * model.object_shape[1] + cols
        self.index = interleaved_index(flat) if ncp is np else flat
        # spectrum of the probe, for the probe/position parts of the products (one batched FFT each way)
        self.probe_hat = fft2(state["probe"]) if model.refine and state["shift"] is not None else None
        super().__init__(dtype=model.dtyped, dims=model.dims, dimsd=model.dimsd, clinear=False,
                         name=f"J({model.name})")

    def _matvec(self, dv):
        m, s = self.m, self.s
        dv = dv.astype(m.dtype, copy=False)
        main, dprobe, dpos = m.layout.split(dv)
        dz = m.coupling.matvec(main).reshape(m.object_shape)
        dpsi = s["probes"] * extract_patches(dz, s["corners"], m.window)
        if s["shift"] is None:  # whole-pixel positions, not refined: only the probe can move
            if dprobe is not None:
                dpsi += dprobe[None] * s["patches"]
        elif dprobe is not None or dpos is not None:
            dpos = None if dpos is None else s["xp"].asarray(dpos, dtype=m.dtype)
            dpsi += s["shift"].perturbation(self.probe_hat, dprobe, dpos) * s["patches"]
        return fft2c(dpsi).ravel()

    def _rmatvec(self, r):
        m, s = self.m, self.s
        b = ifft2c(r.reshape(m.dimsd))
        ncp = s["xp"]
        if s["shift"] is None:  # one probe: its conjugate is small
            back = b * s["probes"].conj()
        else:  # one probe per position: conjugate into a new array, multiply in place (one batch, not two)
            back = ncp.conjugate(s["probes"])
            back *= b
        gz = scatter_add(self.index, back, int(np.prod(m.object_shape)))
        main = m.coupling.rmatvec(gz)
        gprobe = gpos = None
        if m.refine:
            q = ncp.conjugate(s["patches"])
            q *= b
            if s["shift"] is None:
                gprobe = q.sum(axis=0)
            else:
                gprobe, gpos = s["shift"].gradients(self.probe_hat, q, shared="probe" in m.refine,
                                                    shifts="positions" in m.refine)
        return m.layout.join(main, gprobe, gpos)
