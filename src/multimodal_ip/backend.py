"""Array-backend helpers shared by numpy and cupy code paths.

Everything here dispatches on the array module of its argument
(``pylops.utils.backend.get_array_module``), so one code path serves both.
"""

__all__ = [
    "get_array_module",
    "to_numpy",
    "asarray_like",
    "real_dtype",
    "complex_dtype",
    "fft2",
    "ifft2",
    "fft2c",
    "ifft2c",
    "scatter_add",
    "interleaved_index",
    "add_at",
    "fftconvolve",
    "vdot_real",
]

import os

import numpy as np

try:  # pragma: no cover - exercised only on GPU machines
    import cupy as _cupy
except Exception:  # noqa: BLE001 - any import failure means "no GPU backend"
    _cupy = None


def get_array_module(x):
    """The array module of ``x``: pylops's answer (``JAX_PYLOPS=0``, our default) without importing pylops.

    Parameters
    ----------
    x : array_like
        An array of any backend.

    Returns
    -------
    ncp : module
        ``numpy`` or ``cupy``.
    """
    if _cupy is not None:  # pragma: no cover - GPU machines
        return _cupy.get_array_module(x)
    return np


def to_numpy(a):
    """Return ``a`` as a numpy array (copies from the GPU when ``a`` is a cupy array).

    Parameters
    ----------
    a : :obj:`numpy.ndarray` or :obj:`cupy.ndarray` or array_like
        Array of any backend.

    Returns
    -------
    out : :obj:`numpy.ndarray`
        ``a`` on the host (no copy when it already is a numpy array).
    """
    if _cupy is not None and isinstance(a, _cupy.ndarray):  # pragma: no cover
        return _cupy.asnumpy(a)
    return np.asarray(a)


def asarray_like(a, like):
    """Move ``a`` to the backend of ``like`` (no copy when already there).

    Parameters
    ----------
    a : array_like
        Array to move.
    like : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Array whose module (numpy or cupy) ``a`` is moved to.

    Returns
    -------
    out : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        ``a`` as an array of ``like``'s module.
    """
    return get_array_module(like).asarray(a)


def real_dtype(dtype) -> np.dtype:
    """The real dtype matching ``dtype`` (``complex64`` -> ``float32``).

    Parameters
    ----------
    dtype : :obj:`numpy.dtype` or :obj:`str`
        A real or complex dtype.

    Returns
    -------
    rdtype : :obj:`numpy.dtype`
        The dtype of the real part (``dtype`` itself when real).
    """
    return np.ones(1, dtype=dtype).real.dtype


def complex_dtype(dtype) -> np.dtype:
    """The complex dtype matching ``dtype`` (``float32`` -> ``complex64``).

    Parameters
    ----------
    dtype : :obj:`numpy.dtype` or :obj:`str`
        A real or complex dtype.

    Returns
    -------
    cdtype : :obj:`numpy.dtype`
        The smallest complex dtype holding ``dtype`` (``dtype`` itself when complex).
    """
    return np.result_type(np.dtype(dtype), np.complex64)


def fft_workers() -> int:
    """Threads for scipy.fft: ``MMIP_FFT_WORKERS`` if set, else all cores (``-1``).

    Under MPI with several ranks per node, set it to cores / ranks to avoid oversubscription.
    """
    from .errors import ConfigError

    value = os.environ.get("MMIP_FFT_WORKERS", "-1").strip() or "-1"
    try:
        workers = int(value)
    except ValueError:
        workers = 0
    if workers == 0 or workers < -(os.cpu_count() or 1):
        msg = f"MMIP_FFT_WORKERS={value!r}: expected a positive number of threads (or -1 for every core)"
        raise ConfigError(msg)
    return workers


def _fft_module(ncp):
    if ncp is np:
        import scipy.fft

        return scipy.fft, {"workers": fft_workers()}
    # cupy: cupyx.scipy.fft has scipy.fft's signatures (overwrite_x, norm, axes); cupy.fft is numpy.fft's, which has
    # no overwrite_x (the first device run failed on exactly that)
    from cupyx.scipy import fft  # pragma: no cover

    return fft, {}  # pragma: no cover


def fft2(a, overwrite_x=False):
    """Orthonormal 2-D FFT over the last two axes (scipy.fft with all cores on numpy).

    ``overwrite_x=True`` lets the FFT reuse ``a``'s memory (pass it only for a temporary you own):
    18 % faster at J=1024, Np=128, measured.

    Parameters
    ----------
    a : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Array of at least two dimensions.
    overwrite_x : :obj:`bool`, optional
        Allow the FFT to destroy ``a``.

    Returns
    -------
    out : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Complex spectrum, same shape and module as ``a``.

    Raises
    ------
    ConfigError
        ``MMIP_FFT_WORKERS`` is not a valid number of threads (numpy backend).
    """
    fft, kw = _fft_module(get_array_module(a))
    return fft.fft2(a, axes=(-2, -1), norm="ortho", overwrite_x=overwrite_x, **kw)


def ifft2(a, overwrite_x=False):
    """Inverse of :func:`fft2` (``overwrite_x`` as there).

    Parameters
    ----------
    a : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Spectrum of at least two dimensions.
    overwrite_x : :obj:`bool`, optional
        Allow the FFT to destroy ``a``.

    Returns
    -------
    out : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Orthonormal inverse 2-D FFT over the last two axes, same shape and module as ``a``.
    """
    fft, kw = _fft_module(get_array_module(a))
    return fft.ifft2(a, axes=(-2, -1), norm="ortho", overwrite_x=overwrite_x, **kw)


def rfft2(a, shape):
    """Real-input 2-D FFT over the last two axes, zero-padded to ``shape`` (scipy.fft with the FFT workers)."""
    fft, kw = _fft_module(get_array_module(a))
    return fft.rfft2(a, s=shape, axes=(-2, -1), **kw)


def irfft2(a, shape):
    """Inverse of :func:`rfft2` (real output of ``shape`` on the last two axes)."""
    fft, kw = _fft_module(get_array_module(a))
    return fft.irfft2(a, s=shape, axes=(-2, -1), **kw)


def fast_shape(shape) -> tuple:
    """The smallest sizes >= ``shape`` with small prime factors (fast real FFTs)."""
    import scipy.fft

    return tuple(int(scipy.fft.next_fast_len(int(n), real=True)) for n in shape)


def fft2c(a):
    """Centred orthonormal 2-D FFT over the last two axes: ``fftshift(fft2(a, norm="ortho"))``.

    Parameters
    ----------
    a : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Array of at least two dimensions.

    Returns
    -------
    out : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Spectrum with the zero frequency at the centre of the last two axes.
    """
    ncp = get_array_module(a)
    fft, kw = _fft_module(ncp)
    return ncp.fft.fftshift(fft.fft2(a, axes=(-2, -1), norm="ortho", **kw), axes=(-2, -1))


def ifft2c(a):
    """Adjoint (and inverse) of :func:`fft2c`.

    Parameters
    ----------
    a : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Centred spectrum of at least two dimensions.

    Returns
    -------
    out : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        ``ifft2(ifftshift(a), norm="ortho")`` over the last two axes.
    """
    ncp = get_array_module(a)
    fft, kw = _fft_module(ncp)
    return fft.ifft2(ncp.fft.ifftshift(a, axes=(-2, -1)), axes=(-2, -1), norm="ortho", **kw)


def scatter_add(flat_index, values, size):
    """Sum ``values`` into a zero vector of length ``size`` at ``flat_index`` (repeats accumulate).

    Uses ``numpy.bincount`` (several times faster than ``np.add.at``) and
    ``cupyx.scatter_add`` on the GPU. For complex values on numpy, pass the index from
    :func:`interleaved_index` (twice as long): one ``bincount`` then sums real and imaginary
    parts together (2.5x faster than two passes, measured at J=1024, Np=128).

    Parameters
    ----------
    flat_index : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Integer positions in ``[0, size)`` (raveled), or the interleaved index of :func:`interleaved_index`.
    values : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Values to add (raveled), real or complex.
    size : :obj:`int`
        Length of the output vector.

    Returns
    -------
    out : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Vector of length ``size`` and dtype ``values.dtype``.
    """
    ncp = get_array_module(values)
    flat_index = flat_index.ravel()
    values = values.ravel()
    if ncp is np:
        if np.iscomplexobj(values) and flat_index.size == 2 * values.size:
            rdt = values.real.dtype
            pairs = np.ascontiguousarray(values).view(rdt)
            return np.bincount(flat_index, weights=pairs, minlength=2 * size).astype(rdt, copy=False).view(values.dtype)
        if np.iscomplexobj(values):
            out = np.bincount(flat_index, weights=values.real, minlength=size).astype(values.dtype)
            out.imag = np.bincount(flat_index, weights=values.imag, minlength=size)
            return out
        return np.bincount(flat_index, weights=values, minlength=size).astype(values.dtype)
    out = ncp.zeros(size, dtype=values.dtype)  # pragma: no cover
    add_at(out, flat_index, values)  # pragma: no cover
    return out  # pragma: no cover


def add_at(out, flat_index, values) -> None:
    """``out[flat_index] += values`` with repeats accumulating, for a contiguous 1-D ``out`` of any array module.

    ``ufunc.at`` as cupy has it (``cupy.add.at``) takes no complex arrays: complex values are added as (real,
    imaginary) pairs into ``out``'s real view at the interleaved index ``2 i, 2 i + 1`` (the same numbers; on numpy
    the test suite checks it against ``np.add.at``).

    Parameters
    ----------
    out : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Contiguous 1-D array, updated in place.
    flat_index : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Integer positions into ``out`` (raveled).
    values : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Values to add (raveled), cast to ``out.dtype``.
    """
    ncp = get_array_module(out)
    flat_index = flat_index.ravel()
    values = values.ravel()
    if ncp.iscomplexobj(out):
        rdt = out.real.dtype
        pairs = ncp.ascontiguousarray(values.astype(out.dtype, copy=False)).view(rdt)
        ncp.add.at(out.view(rdt), (2 * flat_index[:, None] + ncp.arange(2)).ravel(), pairs)
    else:
        ncp.add.at(out, flat_index, values)


def interleaved_index(flat_index):
    """Index of the real and imaginary parts, ``[2 i, 2 i + 1]``, for :func:`scatter_add` of complex values.

    Parameters
    ----------
    flat_index : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Integer positions ``i`` (raveled).

    Returns
    -------
    index : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        ``int64`` index twice as long: ``2 i, 2 i + 1`` for each ``i``.
    """
    ncp = get_array_module(flat_index)
    return (2 * flat_index.astype(np.int64).ravel()[:, None] + ncp.arange(2)).ravel()


def fftconvolve(a, k, mode, axes=(-2, -1)):
    """``scipy.signal.fftconvolve`` on numpy, ``cupyx.scipy.signal.fftconvolve`` on cupy.

    Parameters
    ----------
    a : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Input array.
    k : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Kernel, same module and number of dimensions as ``a``.
    mode : :obj:`str`
        ``"full"``, ``"valid"`` or ``"same"``, as in scipy.
    axes : :obj:`tuple` of :obj:`int`, optional
        Axes over which to convolve (default the last two).

    Returns
    -------
    out : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        The convolution of ``a`` and ``k``.
    """
    ncp = get_array_module(a)
    if ncp is np:
        from scipy.signal import fftconvolve as conv
    else:  # pragma: no cover
        from cupyx.scipy.signal import fftconvolve as conv
    return conv(a, k, mode=mode, axes=axes)


def vdot_real(a, b) -> float:
    """Real inner product ``Re <a, b>`` of two arrays of any shape, as a Python float.

    Parameters
    ----------
    a, b : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Arrays of the same size (``a`` is conjugated when complex).

    Returns
    -------
    value : :obj:`float`
        ``Re(vdot(a.ravel(), b.ravel()))``.
    """
    ncp = get_array_module(a)
    return float(ncp.real(ncp.vdot(a.ravel(), b.ravel())))


def solver_threads():
    """A context in which BLAS runs on ``MMIP_BLAS_THREADS`` threads (default 1) while a solver iterates.

    The solvers' BLAS work is vector reductions (``vdot``, ``norm``) on vectors of 10^5-10^7 elements, too short to
    gain from threads and slowed badly when another process holds a core (phantom case, 100 L-BFGS iterations on 2
    cores with one busy: 15.3-16.4 s with OpenBLAS's threads, 7.2-8.1 s with one; idle machine 7.6 vs 6.9 s). FFTs
    keep their own workers (``MMIP_FFT_WORKERS``). Without threadpoolctl this is a no-op.
    """
    import contextlib

    from .errors import ConfigError

    text = os.environ.get("MMIP_BLAS_THREADS", "1").strip() or "1"
    if not text.isdigit() or int(text) < 1:
        msg = f"MMIP_BLAS_THREADS={text!r}: expected a positive number of threads"
        raise ConfigError(msg)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return contextlib.nullcontext()
    return threadpool_limits(limits=int(text), user_api="blas")
