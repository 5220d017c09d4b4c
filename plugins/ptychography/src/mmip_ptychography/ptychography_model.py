__all__ = ["PtychographyModel", "PROBE_CACHE_BYTES"]

import numpy as np
from mmip_scanprobe import CalibrationLayout, ComplexCoupling, SubpixelShift, split_positions

from multimodal_ip.backend import fft2, fft2c, get_array_module, ifft2, ifft2c, to_numpy
from multimodal_ip.kernels import scatter_patches_
from multimodal_ip.operators import Streamed

from .far_field import extract_patches

#: fixed sub-pixel positions: the shifted probes (J x Np x Np complex) are kept when smaller than this
PROBE_CACHE_BYTES = 256 << 20


class PtychographyModel(Streamed):
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
                 dtype="float64", name=None, block=None):
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
        # fixed sub-pixel positions and probe: the shifted probes are computed once and kept when they take less
        # than PROBE_CACHE_BYTES (else each block shifts its probes again: one more batched FFT per block)
        self._fixed = None
        # even windows: fftshift(fft2(a)) = fft2(C a) and ifft2(ifftshift(b)) = C ifft2(b) with the checkerboard
        # C = (-1)^(r+c); folding C into the probes and patches skips the two shifted copies of every batch
        self.checker = None
        if self.window[0] % 2 == 0 and self.window[1] % 2 == 0:
            grid = np.add.outer(np.arange(self.window[0]), np.arange(self.window[1]))
            self.checker = ncp.asarray((-1.0) ** grid, dtype=np.dtype(dtype))
        label = "+".join(("object", *self.refine))
        super().__init__(dims=(self.layout.size,), dimsd=(len(self.positions), *self.window), dtype=dtype,
                         dtyped=cdtype, name=name or f"PtychographyModel[{label}]", block=block)

    def fold(self, a):
        """``a`` times the checkerboard (even windows), else ``a``."""
        return a if self.checker is None else a * self.checker

    def transform(self, a):
        """The centred far-field transform of a batch that already carries the checkerboard (even windows)."""
        return fft2c(a) if self.checker is None else fft2(a, overwrite_x=True)

    def transform_adjoint(self, b):
        """``ifft2c`` without the checkerboard (even windows: fold it into what multiplies the result)."""
        return ifft2c(b) if self.checker is None else ifft2(b, overwrite_x=True)

    # ---- streamed evaluation (multimodal_ip.operators.Streamed) -------------------------------------------------
    def stream_prepare(self, v):
        ncp = get_array_module(v)
        v = v.astype(self.dtype, copy=False)  # compute in the model's precision (float32 runs)
        main, current, positions = self.layout.split(v)
        corners = self.corners
        fractions = self.fractions
        if positions is not None:
            # the whole-pixel corners follow the refined positions (the Fourier shift stays within half a pixel;
            # a shift of several pixels would wrap the probe around its window and misplace the minimum)
            corners = split_positions(to_numpy(positions), self.object_shape, self.window, strict=False)[0]
            fractions = to_numpy(positions) - corners
        probe = self.probe if current is None else current
        shift = None
        if positions is not None or np.any(fractions != 0):
            shift = SubpixelShift(fractions, self.window, xp=ncp, dtype=self.dtyped)
        z = self.coupling.matvec(main).reshape(self.object_shape)
        cached = None
        if shift is not None and not self.refine:
            if self._fixed is None and len(self.positions) * np.prod(self.window) * self.dtyped.itemsize \
                    <= PROBE_CACHE_BYTES:
                self._fixed = self.fold(shift(probe))
            cached = self._fixed
        return {"z": z, "probe": probe, "folded": self.fold(probe)[None], "shift": shift, "cached": cached,
                "corners": corners, "probe_hat": fft2(probe) if shift is not None else None, "xp": ncp}

    def _probes(self, s, rows):
        """The probes of positions ``rows`` (checkerboard folded): one shared probe, or shifted per position."""
        if s["shift"] is None:
            return s["folded"]
        if s["cached"] is not None:
            return s["cached"][rows]
        return self.fold(s["shift"].subset(rows)(s["probe"]))

    def _patches(self, s, a, rows):
        return extract_patches(a, s["xp"].asarray(s["corners"][rows]), self.window)

    def stream_tangent(self, state, dv):
        dv = dv.astype(self.dtype, copy=False)
        main, dprobe, dpos = self.layout.split(dv)
        dz = self.coupling.matvec(main).reshape(self.object_shape)
        return dz, dprobe, None if dpos is None else state["xp"].asarray(dpos, dtype=self.dtype)

    def stream_forward(self, state, rows):
        return self.transform(self._probes(state, rows) * self._patches(state, state["z"], rows))

    def stream_jvp(self, state, tangent, rows):
        dz, dprobe, dpos = tangent
        dpsi = self._probes(state, rows) * self._patches(state, dz, rows)
        if dprobe is not None or dpos is not None:
            patches = self.fold(self._patches(state, state["z"], rows))
            if state["shift"] is None:  # whole-pixel positions, not refined: only the probe can move
                dpsi += dprobe[None] * patches
            else:
                shift = state["shift"].subset(rows)
                dpsi += shift.perturbation(state["probe_hat"], dprobe, None if dpos is None else dpos[rows]) * patches
        return self.transform(dpsi)

    def stream_accumulator(self, state):
        ncp = state["xp"]
        return {"z": ncp.zeros(self.object_shape, dtype=self.dtyped),
                "probe": ncp.zeros(self.window, dtype=self.dtyped) if "probe" in self.refine else None,
                "positions": ncp.zeros((len(self.positions), 2), dtype=self.dtype)
                if "positions" in self.refine else None}

    def stream_vjp(self, state, rows, g, acc) -> None:
        ncp = state["xp"]
        b = self.transform_adjoint(g)
        corners = state["corners"][rows]
        probes = self._probes(state, rows)
        if len(probes) == 1:  # one probe for every position: multiplied while adding
            # (the scatter may overwrite what it adds: a copy when b is still needed for the probe/positions)
            scatter_patches_(acc["z"], b.copy() if self.refine else b, probes[0].conj(), corners[:, 0], corners[:, 1])
        else:
            scatter_patches_(acc["z"], ncp.conjugate(probes) * b, None, corners[:, 0], corners[:, 1])
        if not self.refine:
            return
        patches = self._patches(state, state["z"], rows)
        if state["shift"] is None:  # the probe alone: sum_j conj(patch_j) b_j, without a batch temporary
            acc["probe"] += self.fold(_sum_conj_product(patches, b))
            return
        q = ncp.conjugate(patches)  # conj(patches) C b: the checkerboard applied in place
        q *= b
        if self.checker is not None:
            q *= self.checker
        gprobe, gpos = state["shift"].subset(rows).gradients(state["probe_hat"], q, shared="probe" in self.refine,
                                                             shifts="positions" in self.refine)
        if gprobe is not None:
            acc["probe"] += gprobe
        if gpos is not None:
            acc["positions"][rows] = gpos

    def stream_release(self, state):
        return None  # finishing reads the accumulators only

    def stream_finish(self, state, acc):
        main = self.coupling.rmatvec(acc["z"].ravel())
        return self.layout.join(main, acc["probe"], acc["positions"])


def _sum_conj_product(a, b):
    r""":math:`\sum_j \bar a_j b_j` over the first axis, from real and imaginary views (no batch temporary)."""
    ncp = get_array_module(a)

    def dot(x, y):
        return ncp.einsum("jab,jab->ab", x, y)

    return (dot(a.real, b.real) + dot(a.imag, b.imag)) + 1j * (dot(a.real, b.imag) - dot(a.imag, b.real))
