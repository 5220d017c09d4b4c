__all__ = ["FluorescenceMap", "full_grid_positions"]

import copy

import numpy as np
from mmip_scanprobe.scatter import scatter_patches_
from numpy.lib.stride_tricks import sliding_window_view
from pylops import LinearOperator

from multimodal_ip.backend import (
    fast_shape,
    fftconvolve,
    get_array_module,
    irfft2,
    rfft2,
    scatter_add,
    to_numpy,
)
from multimodal_ip.errors import ConfigError, ShapeError, one_line
from multimodal_ip.operators import Linear
from multimodal_ip.operators.streamed import BLOCK_TEMPORARIES, STREAM_BLOCK_BYTES

from ._scan_positions import raster, whole_pixels
from ._shifted_kernels import half_spectrum, shifted_kernels

#: per-position footprints (sub-pixel shifted kernels, refined probes) up to this many bytes for the whole scan are
#: made once and kept; larger scans make them a block at a time in every product (an inverse FFT per position and
#: product: at J = 1024, Np = 128 a product and its adjoint took 0.97 s that way against 0.19 s from a kept stack)
KEEP_STACK_BYTES = 64 << 20


def full_grid_positions(object_shape, kernel_shape):
    """Top-left corners of windows centred on every object pixel (the paper's full-grid XRF).

    Parameters
    ----------
    object_shape : :obj:`tuple` of :obj:`int`
        ``(n0, n1)`` of the object.
    kernel_shape : :obj:`tuple` of :obj:`int`
        Shape of the kernel window; pixel ``kernel_shape // 2`` of the window sits on the object pixel.

    Returns
    -------
    positions : :obj:`numpy.ndarray`
        ``(n0 * n1, 2)`` float (row, col) corners, row-major over the object pixels (negative at the top and
        left edges: the windows hang over them).
    """
    n0, n1 = (int(s) for s in object_shape)
    out = np.empty((n0, n1, 2))  # written in place: no index grids as large as the result
    out[..., 0] = (np.arange(n0) - kernel_shape[0] // 2)[:, None]
    out[..., 1] = (np.arange(n1) - kernel_shape[1] // 2)[None, :]
    return out.reshape(-1, 2)


class FluorescenceMap(LinearOperator):
    r"""XRF counts of every element at every beam position: :math:`D[e, j] = \sum K \odot \tilde S_j w_e`.

    :math:`\tilde S_j` extracts the kernel-sized window at top-left ``positions_px[j]``,
    with zeros outside the object (windows may hang over the edge but must touch it).

    Two equivalent implementations, picked by estimated cost (``method="auto"``):
    ``"fft"`` computes the full 2-D correlation of every map with :math:`K` by FFT and
    samples it at the positions (dense grids); ``"gather"`` reads the windows of a block of
    positions at a time and contracts them with :math:`K` (sparse scans, e.g. XRF measured at the
    ptychography scan positions). The gather's temporaries are one block's (:meth:`block_for_bytes`;
    ``--chunk-memory`` sets them): on numpy the product is one ``einsum`` per position on a view of its
    window and the adjoint one slice-add per position into one object-sized accumulator (cupy: one gather
    and one scatter per block), so no whole-scan window or index array is ever built.

    Parameters
    ----------
    kernel : array, shape ``(Kh, Kw)`` or ``(J, Kh, Kw)``
        Beam footprint :math:`K = |P|^2`, or one per position (gather only).
    positions_px : array, shape ``(J, 2)``
    object_shape : :obj:`tuple`
    n_elements : :obj:`int`
    dtype : :obj:`str`, optional
        Real dtype.
    method : :obj:`str`, optional
        ``"auto"``, ``"fft"`` or ``"gather"``.
    fractions : array, shape ``(J, 2)``, optional
        Sub-pixel shifts of a shared ``(Kh, Kw)`` kernel, one per position: position ``j`` sees
        ``Re(SubpixelShift(fractions[j])(kernel))`` (gather only; all zero: ignored). The shifted kernels are
        made once and kept when all of them take at most ``KEEP_STACK_BYTES``, else a block at a time in
        every product.
    block : :obj:`int`, optional
        Positions per block of the gather (default: :meth:`block_for_bytes` of
        ``STREAM_BLOCK_BYTES * BLOCK_TEMPORARIES``, 16 MB).
    """

    def __init__(self, kernel, positions_px, object_shape, n_elements, dtype="float64", method="auto",
                 name="FluorescenceMap", fractions=None, block=None):
        ncp = get_array_module(kernel)
        self.kernel = ncp.asarray(kernel, dtype=dtype)
        kh, kw = self.kernel.shape[-2:]
        self.object_shape = tuple(int(s) for s in object_shape)
        self.ne = int(n_elements)
        pos = np.asarray(to_numpy(positions_px))
        if pos.ndim != 2 or pos.shape[1] != 2 or len(pos) == 0:
            msg = f"positions must have shape (J, 2) with J >= 1; got {pos.shape}"
            raise ShapeError(msg)
        n0, n1 = self.object_shape
        ipos = whole_pixels(pos, (kh, kw), (n0, n1))
        j_count = len(ipos)
        self._set_fractions(fractions, j_count)
        # the shared kernel's half spectrum, shifted per block (taken once)
        self._half = None if self.fractions is None else half_spectrum(self.kernel)
        self.stacked = self.kernel.ndim == 3 or self.fractions is not None
        if self.kernel.ndim == 3 and self.kernel.shape[0] != j_count:
            msg = f"a stack of kernels needs one per position: {j_count}; got {self.kernel.shape[0]}"
            raise ShapeError(msg)
        # index into the 'full' correlation / padded object, of shape (n0 + kh - 1, n1 + kw - 1)
        self.full_shape = (n0 + kh - 1, n1 + kw - 1)
        self.grid = raster(ipos)  # a raster scan (the full grid) reads a slice: no index arrays
        flat = None if self.grid is not None else \
            (ipos[:, 0].astype(np.int64) + kh - 1) * self.full_shape[1] + (ipos[:, 1] + kw - 1)
        self.full_index = None if flat is None else ncp.asarray(flat)
        self.method = _method(method, j_count * kh * kw, self.full_shape, self.stacked)
        self._spectra = None  # the kernel's FFTs, computed on first use (method "fft")
        self.block = block
        self._set_windows(ipos)
        super().__init__(dtype=np.dtype(dtype), dims=(self.ne, n0, n1), dimsd=(self.ne, j_count), name=name)

    def _set_fractions(self, fractions, j_count):
        """``self.fractions``: the sub-pixel shifts of the shared kernel (``None``: none, or all zero, or made into a
        kept stack of shifted kernels, ``self.kernel``, when it takes at most ``KEEP_STACK_BYTES``)."""
        self.fractions = None
        if fractions is None:
            return
        kh, kw = self.kernel.shape[-2:]
        frac = np.asarray(to_numpy(fractions), dtype=float)
        if frac.shape != (j_count, 2) or self.kernel.ndim != 2:
            msg = (f"fractions shift one (Kh, Kw) kernel: they need shape ({j_count}, 2) with a 2-D kernel; "
                   f"got {frac.shape} with kernel {self.kernel.shape}")
            raise ShapeError(msg)
        self.fractions = frac if np.any(frac != 0) else None
        if self.fractions is not None and j_count * kh * kw * self.kernel.itemsize <= KEEP_STACK_BYTES:
            self.kernel, self.fractions = shifted_kernels(half_spectrum(self.kernel), self.kernel.shape,
                                                          self.fractions, self.kernel.dtype), None

    def _set_windows(self, ipos):
        """Where the gather reads windows: at (``rows``, ``cols``) of the object, or of the object padded by the
        kernel's size less one when a window hangs over its edge (host arrays: 16 bytes a position)."""
        kh, kw = self.kernel.shape[-2:]
        n0, n1 = self.object_shape
        self.inside = bool(np.all(ipos >= 0) and np.all(ipos[:, 0] <= n0 - kh) and np.all(ipos[:, 1] <= n1 - kw))
        pad = (0, 0) if self.inside else (kh - 1, kw - 1)
        self.rows = ipos[:, 0].astype(np.int64) + pad[0]
        self.cols = ipos[:, 1].astype(np.int64) + pad[1]
        self.work_shape = (n0 + 2 * pad[0], n1 + 2 * pad[1])

    def _kernel_spectra(self):
        """``(fft shape, phase ramps that flip the kernel, spectrum of the kernel)``: the kernel never changes, so its
        FFT is taken once (the correlation per call is then one real FFT and one inverse; 3x faster than
        ``fftconvolve`` at n = 1306, kernel 128, measured)."""
        if self._spectra is None:
            shape = fast_shape(self.full_shape)  # >= n + k - 1: the cyclic correlation equals the linear one
            spectrum = rfft2(self.kernel, shape)
            # the flipped kernel's spectrum is conj(spectrum) times a separable phase ramp (the kernel is real): two
            # small vectors instead of a second object-sized spectrum
            ncp = get_array_module(spectrum)
            kh, kw = self.kernel.shape[-2:]
            r0 = ncp.exp(-2j * np.pi * ncp.arange(spectrum.shape[-2]) * (kh - 1) / shape[0]).astype(spectrum.dtype)
            r1 = ncp.exp(-2j * np.pi * ncp.arange(spectrum.shape[-1]) * (kw - 1) / shape[1]).astype(spectrum.dtype)
            self._spectra = (shape, (r0[:, None], r1[None, :]), spectrum)
        return self._spectra

    def _pick(self, full):
        """The data (Ne, J) at the scan positions from the full correlation (Ne, *full_shape)."""
        ncp = get_array_module(full)
        if self.grid is None:
            return ncp.ascontiguousarray(full).reshape(self.ne, -1)[:, self.full_index]
        (r0, c0), (nr, nc) = self.grid
        kh, kw = self.kernel.shape[-2:]
        return ncp.ascontiguousarray(full[:, r0 + kh - 1 : r0 + kh - 1 + nr, c0 + kw - 1 : c0 + kw - 1 + nc]) \
            .reshape(self.ne, -1)

    def _place(self, d):
        """Adjoint of :meth:`_pick`: the data put at their positions in a zero full-correlation array."""
        ncp = get_array_module(d)
        if self.grid is None:
            size = int(np.prod(self.full_shape))
            offsets = ncp.arange(self.ne)[:, None] * size
            return scatter_add(offsets + self.full_index[None, :], d, self.ne * size).reshape(self.ne, *self.full_shape)
        (r0, c0), (nr, nc) = self.grid
        kh, kw = self.kernel.shape[-2:]
        out = ncp.zeros((self.ne, *self.full_shape), dtype=d.dtype)
        out[:, r0 + kh - 1 : r0 + kh - 1 + nr, c0 + kw - 1 : c0 + kw - 1 + nc] = d.reshape(self.ne, nr, nc)
        return out

    def _padded(self, w):
        kh, kw = self.kernel.shape[-2:]
        return get_array_module(w).pad(w, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))

    def _matvec(self, w):
        w = w.reshape(self.dims)
        ncp = get_array_module(w)
        if self.method == "fft":
            shape, (r0, r1), kernel = self._kernel_spectra()
            spectrum = rfft2(w, shape)
            ncp.conjugate(spectrum, out=spectrum)  # W conj(K) = conj(conj(W) K): no conjugated copy of K
            spectrum *= kernel
            ncp.conjugate(spectrum, out=spectrum)
            spectrum *= r0
            spectrum *= r1
            full = irfft2(spectrum, shape)
            del spectrum  # object-sized temporaries freed as soon as they are used (at most two alive)
            return self._pick(full[:, : self.full_shape[0], : self.full_shape[1]]).ravel()
        work = self.prepare(w)
        out = ncp.empty(self.dimsd, dtype=np.result_type(w.dtype, self.dtype))
        for rows in self.blocks():
            out[:, rows] = self.contract(work, self.block_kernel(rows), rows)
        return out.ravel()

    # ---- the gather, one block of positions at a time ------------------------------------------------------
    def position_bytes(self) -> int:
        """Bytes of temporaries one position adds to a block of the gather: its windows (one per element), its
        adjoint's patch, its kernel when kernels differ by position, and the complex FFT that shifts it."""
        kh, kw = self.kernel.shape[-2:]
        arrays = self.ne + 1 + self.stacked + 4 * (self.fractions is not None)
        return arrays * kh * kw * self.dtype.itemsize

    def block_for_bytes(self, target: int) -> int:
        """Positions per block so that one block's temporaries stay under ``target`` bytes (at least one)."""
        return max(1, int(target) // max(self.position_bytes(), 1))

    def blocks(self) -> list:
        """Slices of the positions, one per block of the gather."""
        total = self.dimsd[1]
        size = self.block if self.block is not None else self.block_for_bytes(STREAM_BLOCK_BYTES * BLOCK_TEMPORARIES)
        size = max(1, int(size))
        return [slice(s, min(s + size, total)) for s in range(0, total, size)]

    def prepare(self, w):
        """The array the windows are read from: the maps ``(Ne, n0, n1)``, zero-padded when a window hangs over
        the edge (one object-sized copy per product, shared by every block)."""
        w = w.reshape(self.dims)
        return w if self.inside else self._padded(w)

    def block_windows(self, work, rows: slice):
        """``(Ne, B, Kh, Kw)`` windows of positions ``rows`` of :meth:`prepare`'s array (a fresh array)."""
        ncp = get_array_module(work)
        kh, kw = self.kernel.shape[-2:]
        view = (sliding_window_view if ncp is np else ncp.lib.stride_tricks.sliding_window_view)(
            work, (kh, kw), axis=(1, 2))
        return view[:, ncp.asarray(self.rows[rows]), ncp.asarray(self.cols[rows])]

    def block_kernel(self, rows: slice):
        """The kernel of positions ``rows``: the shared ``(Kh, Kw)`` one, or ``(B, Kh, Kw)`` (a slice of a stack,
        or the shared kernel shifted by the block's fractions)."""
        if self.fractions is None:
            return self.kernel[rows] if self.kernel.ndim == 3 else self.kernel
        return shifted_kernels(self._half, self.kernel.shape, self.fractions[rows], self.dtype)

    def contract(self, work, kernel, rows: slice):
        """``(Ne, B)``: the windows of positions ``rows`` of :meth:`prepare`'s array, each times its kernel
        (``kernel`` ``(Kh, Kw)`` or ``(B, Kh, Kw)``), summed. numpy: one product per position on a view of the
        window (no gathered copy; 20x faster than a gather and a BLAS contraction on a loaded machine, measured at
        Np = 128); cupy: one gather per block."""
        ncp = get_array_module(work)
        if ncp is not np:
            windows = self.block_windows(work, rows)
            return ncp.einsum("ejab,jab->ej" if kernel.ndim == 3 else "ejab,ab->ej", windows, kernel)
        kh, kw = self.kernel.shape[-2:]
        r, c = self.rows[rows], self.cols[rows]
        out = np.empty((self.ne, len(r)), dtype=np.result_type(work.dtype, kernel.dtype))
        for i in range(len(r)):
            out[:, i] = np.einsum("eab,ab->e", work[:, r[i] : r[i] + kh, c[i] : c[i] + kw],
                                  kernel[i] if kernel.ndim == 3 else kernel)
        return out

    def window_sums(self, work, d, rows: slice):
        r"""``(B, Kh, Kw)``: :math:`\sum_e d_{ej}` times the window of position ``j`` of :meth:`prepare`'s array,
        for the positions ``rows`` (``d`` is ``(Ne, B)``): the adjoint of :meth:`contract` in the kernels."""
        ncp = get_array_module(work)
        if ncp is not np:
            return ncp.einsum("ej,ejab->jab", d, self.block_windows(work, rows))
        kh, kw = self.kernel.shape[-2:]
        r, c = self.rows[rows], self.cols[rows]
        out = np.empty((len(r), kh, kw), dtype=np.result_type(work.dtype, d.dtype))
        for i in range(len(r)):
            np.einsum("e,eab->ab", d[:, i], work[:, r[i] : r[i] + kh, c[i] : c[i] + kw], out=out[i])
        return out

    def accumulator(self, like):
        """A zero ``(Ne, *work_shape)`` array for :meth:`scatter` (``like``'s precision, at least this map's)."""
        return get_array_module(like).zeros((self.ne, *self.work_shape), dtype=np.result_type(like.dtype, self.dtype))

    def scatter(self, acc, d, kernel, rows: slice) -> None:
        """``acc[e]`` += the windows of positions ``rows`` times ``d[e, j] * kernel_j`` (the adjoint of
        :meth:`contract` after :meth:`block_windows`; ``d`` is ``(Ne, B)``)."""
        r, c = self.rows[rows], self.cols[rows]
        if not isinstance(acc, np.ndarray):  # cupy: one scatter per block and element
            for e in range(self.ne):
                scatter_patches_(acc[e], d[e, :, None, None] * kernel, None, r, c)
            return
        kh, kw = self.kernel.shape[-2:]
        for i in range(len(r)):  # one window at a time: a kernel-sized temporary in cache (a block's patches were
            k = kernel[i] if kernel.ndim == 3 else kernel  # 2-4x slower at Np = 128, measured)
            for e in range(self.ne):
                acc[e, r[i] : r[i] + kh, c[i] : c[i] + kw] += d[e, i] * k

    def finish(self, acc):
        """The maps ``(Ne, n0, n1)`` of an accumulator (its padding cut off)."""
        if self.inside:
            return acc
        kh, kw = self.kernel.shape[-2:]
        n0, n1 = self.object_shape
        return get_array_module(acc).ascontiguousarray(acc[:, kh - 1 : kh - 1 + n0, kw - 1 : kw - 1 + n1])

    def as_operator(self, name="FluorescenceMap"):
        """This map as a data term's operator (:class:`~multimodal_ip.operators.Linear`) whose ``block`` a memory
        target per block sets (``--chunk-memory``)."""
        return _BlockedLinear(self, name=name)

    def with_kernel(self, kernel):
        """The same positions and method with another kernel (same shape as this one's)."""
        other = copy.copy(self)
        other.kernel = get_array_module(kernel).asarray(kernel, dtype=self.dtype)
        other._spectra = None
        if other.kernel.shape != self.kernel.shape:
            msg = f"kernel must have shape {self.kernel.shape}; got {other.kernel.shape}"
            raise ShapeError(msg)
        other._half = None if self.fractions is None else half_spectrum(other.kernel)
        return other

    def kernel_adjoint(self, w, d):
        r"""Adjoint of the map kernel -> data at fixed ``w``: :math:`\bar K = \sum_{e,j} d_{ej} \tilde S_j w_e`
        (one ``(Kh, Kw)`` array, or ``(J, Kh, Kw)`` for a kernel stack)."""
        ncp = get_array_module(d)
        d = d.reshape(self.dimsd)
        if self.method == "gather":
            work = self.prepare(w)
            parts = [self.window_sums(work, d[:, rows], rows) for rows in self.blocks()]
            return ncp.concatenate(parts) if self.stacked else sum(p.sum(axis=0) for p in parts)
        g = self._place(d)
        return fftconvolve(self._padded(w.reshape(self.dims)), g[:, ::-1, ::-1], mode="valid").sum(axis=0)

    def _rmatvec(self, d):
        d = d.reshape(self.dimsd)
        ncp = get_array_module(d)
        if self.method == "fft":
            shape, _, kernel = self._kernel_spectra()
            spectrum = rfft2(self._place(d), shape)
            spectrum *= kernel
            full = irfft2(spectrum, shape)
            del spectrum  # object-sized temporaries freed as soon as they are used (at most two alive)
            kh, kw = self.kernel.shape[-2:]
            n0, n1 = self.object_shape
            return ncp.ascontiguousarray(full[:, kh - 1 : kh - 1 + n0, kw - 1 : kw - 1 + n1]).ravel()
        acc = self.accumulator(d)
        for rows in self.blocks():
            self.scatter(acc, d[:, rows], self.block_kernel(rows), rows)
        return self.finish(acc).ravel()


class _BlockedLinear(Linear):
    """:class:`~multimodal_ip.operators.Linear` of a :class:`FluorescenceMap` whose block size a problem's memory
    target per block sets (``block``, :meth:`block_for_bytes`, as on a streamed operator)."""

    @property
    def block(self):
        return self.op.block

    @block.setter
    def block(self, value):
        self.op.block = value

    def block_for_bytes(self, target: int) -> int:
        return self.op.block_for_bytes(target)


def _method(method, gather_cost, full_shape, stacked):
    """``"fft"`` or ``"gather"``: ``method``, or for ``"auto"`` the cheaper by estimated cost (``gather_cost``: J Kh
    Kw, against the FFTs of the ``full_shape`` correlation); a kernel stack needs the gather."""
    if method == "auto":
        fft_cost = 6.0 * np.prod(full_shape) * np.log2(np.prod(full_shape))
        method = "gather" if gather_cost < fft_cost or stacked else "fft"
    if method == "fft" and stacked:
        msg = "one kernel per position needs method='gather'"
        raise ValueError(msg)
    if method not in ("fft", "gather"):  # a run file's term option: bad input (ConfigError is a ValueError)
        msg = f"fluorescence method must be 'auto', 'fft' or 'gather'; got {one_line(repr(method))[:80]}"
        raise ConfigError(msg)
    return method
