__all__ = ["PtychographyModel"]

import numpy as np
from mmip_scanprobe import CalibrationLayout, ComplexCoupling, CubicPatches, extract_patches, split_positions
from mmip_scanprobe.scatter import scatter_patches_

from multimodal_ip.backend import fft2, fft2c, get_array_module, ifft2, ifft2c, to_numpy
from multimodal_ip.errors import ConfigError, SolverError
from multimodal_ip.operators import Streamed

from .far_field import validate_positions


class PtychographyModel(Streamed):
    r"""Far-field ptychography: the modality's one model, for whole-pixel and sub-pixel positions, with the probe,
    positions and a global affine map of the positions optionally as unknowns.

    .. math:: \Psi_j = F\big(P \odot S_{p_j} z\big),\quad z = x + i \textstyle\sum_e a_e w_e

    where :math:`S_{p} z` is the probe-sized window of the object whose top-left corner is at position :math:`p`:
    plain pixels when every position is a whole pixel and none moves (the fast path: one strided gather per block,
    its adjoint :func:`~mmip_scanprobe.scatter_patches_`, equal to :class:`~mmip_ptychography.FarField`),
    otherwise sampled by separable cubic convolution (:class:`~mmip_scanprobe.CubicPatches`: continuously
    differentiable in :math:`p`, the object extended by its edge values).

    Parameters
    ----------
    probe : array, shape ``(Np0, Np1)``
        Complex probe (the fixed value, or the start value when refined).
    positions_px : array, shape ``(J, 2)``
        Top-left (row, col) of each window in object pixels; may be fractional. Whole-pixel positions that are not
        refined must put every window inside the object (as :class:`~mmip_ptychography.FarField`); others may
        reach a pixel beyond its edge.
    object_shape : :obj:`tuple`
        ``(n_rows, n_cols)``.
    n_elements : :obj:`int`
        Number of element maps :math:`w_e`.
    refine : sequence of :obj:`str`, optional
        Unknowns besides ``[x; w]``: ``"probe"``, ``"positions"`` and/or ``"affine"`` (a global affine map of the
        positions, :func:`~mmip_scanprobe.affine_positions`); the input is then the packed real vector
        ``[x; w; probe (re, im pairs); positions; affine]`` (see :class:`~mmip_scanprobe.CalibrationLayout`).
    coefficients : array-like, optional
        Coupling :math:`a_e` (default ones).
    dtype : :obj:`str`, optional
        Real input dtype (``float32`` or ``float64``); the output ``dtyped`` is the matching complex dtype.
    block : :obj:`int`, optional
        Positions per block (default: about 4 MB of spectra, :class:`~multimodal_ip.operators.Streamed`).
    windows : :obj:`str`, optional
        How fractional windows are sampled: ``"cubic"`` (default) or ``"band-limited"``
        (``mmip_ptychography.band_limited_sampler.BandLimitedSampler``: fixed positions, or refined positions
        moved only by the term's estimator, the model having no derivatives in them, ``no_derivatives``; not the
        affine map); ``"auto"`` (the term's default): band-limited when the positions are fixed, cubic when they
        move. Whole-pixel fixed
        positions take plain windows whatever the option.

    Notes
    -----
    With :math:`b_j = F^{-1} r_j` and the window cotangent :math:`c_j = \bar P b_j` the adjoint is
    :math:`\bar z = \sum_j S_{p_j}^T c_j`, :math:`\bar P = \sum_j \overline{S_{p_j} z}\, b_j`,
    :math:`\bar p_{jk} = \Re\langle \partial_{p_{jk}} S_{p_j} z, c_j\rangle`. Whole-pixel positions give exactly
    :class:`~mmip_ptychography.FarField`; positions that leave the object are clipped to its edge while refining.
    Before the cubic windows the model shifted the probe by each position's remainder inside its window (a Fourier
    shift): the misfit of one position jumped by about half its size where the remainder flipped from +1/2 to -1/2
    (measured on the phantom; docs/refinement.md), and the probe wrapped around its window.
    """

    def __init__(self, probe, positions_px, object_shape, n_elements, refine=(), coefficients=None,
                 dtype="float64", name=None, block=None, windows="cubic"):
        self.object_shape = tuple(int(s) for s in object_shape)
        self.window = tuple(int(s) for s in probe.shape)
        ncp = get_array_module(probe)
        self.coupling = ComplexCoupling(self.object_shape, n_elements, coefficients=coefficients, dtype=dtype)
        cdtype = self.coupling.dtype
        self.probe = ncp.asarray(probe, dtype=cdtype)
        self.positions = np.asarray(to_numpy(positions_px), dtype=float)
        # validated once, now: errors before any solve (the corners serve whole-pixel positions)
        if not refine and _whole_pixels(self.positions):  # the plain windows: each must lie inside the object
            self.corners = validate_positions(self.positions, self.object_shape, self.window)
            self.fractions = np.zeros(self.corners.shape)
        else:
            self.corners, self.fractions = split_positions(self.positions, self.object_shape, self.window)
        # contiguous corner rows and columns, host and device: the whole-pixel gather and scatter of each block
        self.corner_rows = np.ascontiguousarray(self.corners[:, 0])
        self.corner_cols = np.ascontiguousarray(self.corners[:, 1])
        self.corners_xp = ncp.asarray(self.corners)
        self.layout = CalibrationLayout(self.coupling.shape[1], self.window, len(self.positions), refine, dtype,
                                        nominal=self.positions, object_shape=self.object_shape)
        self.refine = self.layout.refine
        self.sampler_class = _sampler_class(windows, self.layout.moves)
        self.windows = "cubic" if self.sampler_class is CubicPatches else "band-limited"
        if self.windows == "band-limited" and "affine" in self.refine:
            msg = ("ptychography option windows = 'band-limited' takes fixed positions or positions its estimator "
                   "moves (not the affine map: use 'cubic')")
            raise ConfigError(msg)
        #: refined inputs this model has no derivatives in (band-limited windows at moving positions: a run moves
        #: them by the term's estimator only, the staged solver refuses anything else)
        self.no_derivatives = ("positions",) if self.layout.moves and self.windows == "band-limited" else ()
        #: windows are sampled (cubic) when a position is fractional or the positions move (refined or affine)
        self.sampled = self.layout.moves or bool(np.any(self.fractions != 0))
        #: one evaluation (``stream_prepare_transient``) forms each block's windows from views of ``x`` and ``w``, no
        #: complex object: whole-pixel windows of a fixed probe and one element map (the same values, bit for bit)
        self.windows_from_input = not self.sampled and "probe" not in self.refine and self.coupling.ne == 1
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
        probe = self.probe if current is None else current
        sampler = None
        if self.sampled:
            sampler = self.sampler_class(self.positions if positions is None else to_numpy(positions), self.window,
                                   self.object_shape)
        z = self._object(main, sampler)
        return {"z": z, "probe": probe, "folded": self.fold(probe)[None], "sampler": sampler, "xp": ncp}

    def stream_prepare_transient(self, v):
        """:meth:`stream_prepare` for one evaluation while ``v`` is unchanged (the
        :class:`~multimodal_ip.operators.Streamed` contract): with ``windows_from_input``, views of ``x`` and
        ``w`` instead of the complex object (one object's memory less while the adjoint accumulates)."""
        if not self.windows_from_input:
            return self.stream_prepare(v)
        main = self.layout.split(v.astype(self.dtype, copy=False))[0]
        n = self.coupling.npix
        parts = (main[:n].reshape(self.object_shape), main[n:].reshape(1, *self.object_shape))
        return {"z": None, "parts": parts, "probe": self.probe, "folded": self.fold(self.probe)[None],
                "sampler": None, "xp": get_array_module(v)}

    def _object(self, main, sampler):
        """The complex object of ``main`` (the packed ``[x; w]``), edge-extended when windows are sampled: one
        complex array and no object-sized temporary (formed in place; the padded one formed in its own buffer and
        extended there, :meth:`~mmip_scanprobe.EdgePadding.pad_in_place`)."""
        if sampler is None:
            return self.coupling.form(main).reshape(self.object_shape)
        ncp = get_array_module(main)
        zp = ncp.empty(sampler.padded_shape(), dtype=self.coupling.dtype)
        self.coupling.form(main, out=zp.reshape(-1)[: self.coupling.npix])
        return sampler.pad_in_place(zp)

    def _patches(self, s, a, rows):
        """The block's windows of ``a`` (an object-shaped array, edge-extended when sampled): a fresh array."""
        if s["sampler"] is not None:
            return s["sampler"].sample(a, rows)
        return extract_patches(a, self.corners_xp[rows], self.window)

    def _probed(self, s, a, rows):
        """The block's windows of ``a`` times the (folded) probe. Whole pixels: multiplied in place, patches on the
        left (the rounding of :class:`~mmip_ptychography.FarField`'s streamed form, which this path replaced)."""
        if s["sampler"] is not None:
            return s["folded"] * s["sampler"].sample(a, rows)
        w = self._patches(s, a, rows)
        w *= s["folded"]
        return w

    def stream_tangent(self, state, dv):
        dv = dv.astype(self.dtype, copy=False)
        main, dprobe, dpos = self.layout.split(dv, tangent=True)
        dz = self._object(main, state["sampler"])
        return dz, dprobe, None if dpos is None else state["xp"].asarray(dpos, dtype=self.dtype)

    def stream_forward(self, state, rows):
        if state["z"] is None:  # a transient state: the block's windows of x and w, combined, times the probe
            x, w = state["parts"]
            corners = self.corners_xp[rows]
            windows = self.coupling.combine(extract_patches(x, corners, self.window),
                                            extract_patches(w[0], corners, self.window)[None])
            windows *= state["folded"]
            return self.transform(windows)
        return self.transform(self._probed(state, state["z"], rows))

    def stream_jvp(self, state, tangent, rows):
        dz, dprobe, dpos = tangent
        dpsi = self._probed(state, dz, rows)
        if dprobe is not None:
            dpsi += self.fold(dprobe)[None] * self._patches(state, state["z"], rows)
        if dpos is not None and self.no_derivatives:  # held positions only (a frozen tangent is zero)
            if bool(state["xp"].any(dpos != 0)):
                msg = "ptychography windows = 'band-limited' have no derivatives in the positions (use 'cubic')"
                raise SolverError(msg)
        elif dpos is not None:
            d0, d1 = state["sampler"].derivatives(state["z"], rows)
            d0 *= dpos[rows, 0, None, None]
            d0 += d1 * dpos[rows, 1, None, None]
            dpsi += state["folded"] * d0
        return self.transform(dpsi)

    def stream_accumulator(self, state):
        ncp = state["xp"]
        shape = self.object_shape if state["z"] is None else state["z"].shape
        return {"z": ncp.zeros(shape, dtype=self.dtyped),
                "probe": ncp.zeros(self.window, dtype=self.dtyped) if "probe" in self.refine else None,
                "positions": ncp.zeros((len(self.positions), 2), dtype=self.dtype) if self.layout.moves else None}

    def stream_vjp(self, state, rows, g, acc) -> None:
        b = self.transform_adjoint(g)
        sampler = state["sampler"]
        if "probe" in self.refine:  # sum_j conj(window_j) b_j, before b is overwritten
            acc["probe"] += self.fold(_sum_conj_product(self._patches(state, state["z"], rows), b))
        if sampler is None:  # whole pixels: one slice-add per position, the probe multiplied in while adding
            scatter_patches_(acc["z"], b, state["folded"][0].conj(), self.corner_rows[rows],
                             self.corner_cols[rows])
            return
        b *= state["folded"].conj()  # the windows' cotangent
        sampler.scatter(acc["z"], b, rows)
        if self.layout.moves and not self.no_derivatives:  # band-limited: zeros (a run must hold these positions,
            acc["positions"][rows] = sampler.position_gradient(state["z"], rows, b)  # solve_staged checks it)

    def stream_release(self, state):
        return None  # finishing reads the accumulators only

    def stream_finish(self, state, acc):
        z = self.sampler_class.unpad_adjoint(acc["z"]) if self.sampled else acc["z"]
        if not self.refine and self.coupling.ne == 1:  # the gradient in the accumulator's own memory
            return self.coupling.adjoint_in_place(acc["z"], pad=self.sampler_class.PAD if self.sampled else 0)
        if not self.refine:
            return self.coupling.adjoint(z)  # the cropped view as it is (no flattened copy)
        # refined unknowns: the object's adjoint written straight into the whole gradient (no joined copy of it)
        n = self.layout.bounds["main"][1]
        out = get_array_module(z).empty(self.layout.size, dtype=z.real.dtype)
        self.coupling.adjoint(z, out=out[:n])
        out[n:] = self.layout.join(out[:0], acc["probe"], acc["positions"])
        return out


def _sampler_class(windows, moves):
    """The window sampler of the option ``windows`` (``"auto"``: band-limited unless the positions move; band-limited
    windows at moving positions have no derivatives in them: moved by the term's estimator only)."""
    from .band_limited_sampler import WINDOWS, BandLimitedSampler

    if windows not in WINDOWS:
        msg = f"ptychography option windows must be one of {list(WINDOWS)}; got {windows!r}"
        raise ConfigError(msg)
    if windows == "auto":
        windows = "cubic" if moves else "band-limited"
    return CubicPatches if windows == "cubic" else BandLimitedSampler


def _whole_pixels(positions) -> bool:
    """Whether every position is exactly a whole pixel (NaN and Inf are not)."""
    return bool(np.all(positions == np.rint(positions)))


def _sum_conj_product(a, b):
    r""":math:`\sum_j \bar a_j b_j` over the first axis, from real and imaginary views (no batch temporary)."""
    ncp = get_array_module(a)

    def dot(x, y):
        return ncp.einsum("jab,jab->ab", x, y)

    return (dot(a.real, b.real) + dot(a.imag, b.imag)) + 1j * (dot(a.real, b.imag) - dot(a.imag, b.real))
