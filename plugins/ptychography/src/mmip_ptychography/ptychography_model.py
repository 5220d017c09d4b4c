__all__ = ["PtychographyModel"]

import numpy as np
from mmip_scanprobe import CalibrationLayout, ComplexCoupling, split_positions
from pylops import LinearOperator

from multimodal_ip.backend import fft2, fft2c, get_array_module, ifft2, ifft2c, interleaved_index, scatter_add, to_numpy
from multimodal_ip.operators import NonlinearOperator

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
        # even windows: fftshift(fft2(a)) = fft2(C a) and ifft2(ifftshift(b)) = C ifft2(b) with the checkerboard
        # C = (-1)^(r+c); folding C into the probes and patches skips the two shifted copies of every batch
        self.checker = None
        if self.window[0] % 2 == 0 and self.window[1] % 2 == 0:
            grid = np.add.outer(np.arange(self.window[0]), np.arange(self.window[1]))
            self.checker = ncp.asarray((-1.0) ** grid, dtype=np.dtype(dtype))
        label = "+".join(("object", *self.refine))
        super().__init__(dims=(self.layout.size,), dimsd=(len(self.positions), *self.window), dtype=dtype,
                         dtyped=cdtype, name=name or f"PtychographyModel[{label}]")

    def _state(self, v):
        ncp = get_array_module(v)
        v = v.astype(self.dtype, copy=False)  # compute in the model's precision (float32 runs)
        corners_np = self.corners
        if "positions" in self.refine:
            # the whole-pixel corners follow the refined positions (the Fourier shift stays within half a pixel;
            # a shift of several pixels would wrap the probe around its window and misplace the minimum)
            corners_np = split_positions(to_numpy(self.layout.split(v)[2]), self.object_shape, self.window,
                                         strict=False)[0]
        if self.refine or self._fixed is None:
            main, probe, probes, shift = self.layout.probes(v, self.probe, corners_np, self.fractions, self.dtyped)
            probes = self.fold(probes if shift is not None else probe[None])
            if not self.refine:  # fixed probe and positions: the shifted probes are computed once
                self._fixed = (probe, probes, shift)
        else:
            main = self.layout.split(v)[0]
            probe, probes, shift = self._fixed
        z = self.coupling.matvec(main).reshape(self.object_shape)
        corners = ncp.asarray(corners_np)
        patches = extract_patches(z, corners, self.window)
        # "probes" carry the checkerboard on even windows: transform() and its adjoint then need no shifts
        return {"probe": probe, "probes": probes, "shift": shift, "corners": corners, "patches": patches, "xp": ncp}

    def fold(self, a):
        """``a`` times the checkerboard (even windows), else ``a``."""
        return a if self.checker is None else a * self.checker

    def transform(self, a):
        """The centred far-field transform of a batch that already carries the checkerboard (even windows)."""
        return fft2c(a) if self.checker is None else fft2(a)

    def transform_adjoint(self, b):
        """``ifft2c`` without the checkerboard (even windows: fold it into what multiplies the result)."""
        return ifft2c(b) if self.checker is None else ifft2(b)

    def _forward(self, v):
        s = self._state(v)
        return self.transform(s["probes"] * s["patches"])

    def _linearize(self, v):
        s = self._state(v)
        return self.transform(s["probes"] * s["patches"]), _PtychographyJacobian(self, s)

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
        self._patches = None
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
                dpsi += dprobe[None] * self.patches()
        elif dprobe is not None or dpos is not None:
            dpos = None if dpos is None else s["xp"].asarray(dpos, dtype=m.dtype)
            dpsi += s["shift"].perturbation(self.probe_hat, dprobe, dpos) * self.patches()
        return m.transform(dpsi).ravel()

    def patches(self):
        """The patches with the checkerboard folded in, made on first use (probe/position parts only)."""
        if self._patches is None:
            self._patches = self.m.fold(self.s["patches"])
        return self._patches

    def _rmatvec(self, r):
        m, s = self.m, self.s
        b = m.transform_adjoint(r.reshape(m.dimsd))
        ncp = s["xp"]
        if s["shift"] is None:  # one probe: its conjugate is small
            back = b * s["probes"].conj()
        else:  # one probe per position: conjugate into a new array, multiply in place (one batch, not two)
            back = ncp.conjugate(s["probes"])
            back *= b
        gz = scatter_add(self.index, back, int(np.prod(m.object_shape)))
        main = m.coupling.rmatvec(gz)
        gprobe = gpos = None
        if s["shift"] is None and m.refine:  # the probe alone: sum_j conj(patch_j) b_j, without a batch temporary
            gprobe = m.fold(_sum_conj_product(s["patches"], b))
        elif m.refine:
            q = ncp.conjugate(s["patches"])  # conj(patches) C b: the checkerboard applied in place
            q *= b
            if m.checker is not None:
                q *= m.checker
            gprobe, gpos = s["shift"].gradients(self.probe_hat, q, shared="probe" in m.refine,
                                                shifts="positions" in m.refine)
        return m.layout.join(main, gprobe, gpos)


def _sum_conj_product(a, b):
    r""":math:`\sum_j \bar a_j b_j` over the first axis, from real and imaginary views (no batch temporary)."""
    ncp = get_array_module(a)

    def dot(x, y):
        return ncp.einsum("jab,jab->ab", x, y)

    return (dot(a.real, b.real) + dot(a.imag, b.imag)) + 1j * (dot(a.real, b.imag) - dot(a.imag, b.real))
