r"""Parallel-beam ray sampling of a 2-D slice: the linear part shared by transmission and fluorescence tomography.

A slice of ``(n0, n1)`` pixels (centres at integer ``(row, col)``) rotates about its centre
:math:`c = ((n_0-1)/2, (n_1-1)/2)`. At angle :math:`\theta_k`, detector bin :math:`s` and step :math:`t` along the
beam, the sample point is

.. math:: p_{kst} = c + u_s\,(\cos\theta_k, -\sin\theta_k) + \tau_t\,(\sin\theta_k, \cos\theta_k),
   \quad u_s = s - \tfrac{S-1}{2},\quad \tau_t = \big(t - \tfrac{T-1}{2}\big)\,\Delta t,

so the beam travels along :math:`+(\sin\theta, \cos\theta)` (at :math:`\theta = 0` from the left column to the right
one) and step ``t = 0`` is where it enters. The map is read at :math:`p_{kst}` by bilinear interpolation, zero
outside the slice. :class:`RaySampling` is that interpolation as one sparse matrix of shape ``(K S T, n0 n1)`` (four
weights per sample), with its transpose stored too, so the adjoint is exact and as fast as the forward.

The emitted fluorescence leaves toward a detector in the slice plane at angle :math:`\varphi` from the beam (fixed in
the beam's frame, so it turns with the beam: at angle :math:`\theta_k` the photons travel along
:math:`(\sin(\theta_k+\varphi), \cos(\theta_k+\varphi))`; the default :math:`\varphi = \pi/2`, a detector at
90 degrees to the beam, sees at :math:`\theta = 0` the photons that go toward increasing rows). :class:`ExitPaths`
gives, at every sample point, the integral of a map from the point to the detector: the map is sampled on a second
grid whose rays run along that direction (the same step; bins at the step or one pixel apart, whichever is finer,
covering the diagonal), integrated from each
of its samples to the end of its ray (trapezoid rule: half of the own step), and read at the sample points by
bilinear interpolation on that grid. All three are matrices, so the adjoint is exact.
"""

__all__ = ["Geometry", "RaySampling", "ray_sampling", "ExitPaths"]

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from multimodal_ip.backend import get_array_module
from multimodal_ip.errors import ShapeError


@dataclass(frozen=True)
class Geometry:
    """Shape of the slice, angles (radians), detector bins ``S``, samples per ray ``T`` and step ``dt`` (pixels).

    Build one with :meth:`make`, which checks the values and chooses the defaults.

    Parameters
    ----------
    shape : :obj:`tuple` of :obj:`int`
        ``(n0, n1)``: the slice (pixels).
    angles : :obj:`tuple` of :obj:`float`
        The ``K`` rotation angles (radians).
    bins : :obj:`int`
        Detector bins ``S`` (one pixel apart).
    samples : :obj:`int`
        Samples ``T`` along each ray.
    step : :obj:`float`, optional
        Distance ``dt`` between samples along a ray (pixels).
    pitch : :obj:`float`, optional
        Distance between detector bins (pixels): 1 for measured sinograms (:math:`u_s` in the notes is ``pitch``
        times the value written there); finer for the grids of :class:`~mmip_tomography.geometry.ExitPaths`.
    """

    shape: tuple
    angles: tuple
    bins: int
    samples: int
    step: float = 1.0
    pitch: float = 1.0

    @classmethod
    def make(cls, shape, angles, bins=None, step=1.0, pitch=1.0):
        """Defaults: as many bins as the slice's larger side; rays long enough to cross its diagonal."""
        shape = tuple(int(s) for s in shape)
        if len(shape) != 2 or min(shape) < 1:
            msg = f"a tomography slice is 2-D with positive sides; got shape {shape}"
            raise ShapeError(msg)
        angles = np.asarray(angles, dtype=float).ravel()
        if angles.size < 1 or not np.all(np.isfinite(angles)):
            msg = f"angles must be one or more finite numbers (radians); got {angles.size} value(s)"
            raise ShapeError(msg)
        step = float(step)
        if not (np.isfinite(step) and step > 0):
            msg = f"ray step must be a finite number of pixels > 0; got {step!r}"
            raise ShapeError(msg)
        bins = int(bins) if bins is not None else max(shape)
        if bins < 1:
            msg = f"detector bins must be >= 1; got {bins}"
            raise ShapeError(msg)
        samples = int(np.ceil(np.hypot(*shape) / step)) + 1
        return cls(shape, tuple(float(a) for a in angles), bins, samples, step, float(pitch))

    @property
    def sinogram_shape(self) -> tuple:
        return (len(self.angles), self.bins)

    def points(self):
        """Sample coordinates ``(rows, cols)``, each of shape ``(K, S, T)``."""
        th = np.asarray(self.angles)[:, None, None]
        u = ((np.arange(self.bins) - (self.bins - 1) / 2) * self.pitch)[None, :, None]
        tau = ((np.arange(self.samples) - (self.samples - 1) / 2) * self.step)[None, None, :]
        c0, c1 = (self.shape[0] - 1) / 2, (self.shape[1] - 1) / 2
        rows = c0 + u * np.cos(th) + tau * np.sin(th)
        cols = c1 - u * np.sin(th) + tau * np.cos(th)
        return rows, cols


def _bilinear_matrix(geom: Geometry, dtype) -> sp.csr_matrix:
    rows, cols = geom.points()
    n0, n1 = geom.shape
    r0, c0 = np.floor(rows), np.floor(cols)
    fr, fc = rows - r0, cols - c0
    r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
    sample = np.arange(rows.size).reshape(rows.shape)
    ii, jj, vv = [], [], []
    for dr, dc, w in ((0, 0, (1 - fr) * (1 - fc)), (1, 0, fr * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 1, fr * fc)):
        r, c = r0 + dr, c0 + dc
        keep = (r >= 0) & (r < n0) & (c >= 0) & (c < n1) & (w != 0)
        ii.append(sample[keep])
        jj.append(r[keep] * n1 + c[keep])
        vv.append(w[keep])
    mat = sp.csr_matrix((np.concatenate(vv).astype(dtype), (np.concatenate(ii), np.concatenate(jj))),
                        shape=(rows.size, n0 * n1))
    mat.sum_duplicates()
    return mat


@lru_cache(maxsize=8)
def _cached(geom: Geometry, dtype: str, summed: bool):
    mat = _bilinear_matrix(geom, np.dtype(dtype))
    if summed:  # line integrals: dt * sum over the T samples of each ray (one row per ray)
        k_s = len(geom.angles) * geom.bins
        rays = sp.csr_matrix((np.full(mat.shape[0], geom.step, dtype=dtype),
                              (np.repeat(np.arange(k_s), geom.samples), np.arange(mat.shape[0]))),
                             shape=(k_s, mat.shape[0]))
        mat = (rays @ mat).tocsr()
    return mat, mat.T.tocsr()


class RaySampling:
    """The sampling matrix of a :class:`Geometry` (``summed``: the line integrals :math:`\\Delta t\\sum_t`), on
    numpy or cupy, applied to a stack of maps at once.

    ``forward(maps)`` takes ``(m, n0, n1)`` (or ``(n0, n1)``) and returns ``(K, S, T, m)`` samples (``(K, S, m)`` when
    summed); ``adjoint`` is its exact transpose. Matrices are cached per geometry and dtype (terms of a joint problem
    that share the scan share the matrix).

    Parameters
    ----------
    geom : :class:`Geometry`
        The slice, angles and rays.
    dtype : :obj:`str`, optional
        The maps' real dtype.
    xp : module, optional
        The array module (numpy or cupy) the matrices live on.
    summed : :obj:`bool`, optional
        Line integrals :math:`\\Delta t\\sum_t` (one value per ray) instead of every sample.
    """

    def __init__(self, geom: Geometry, dtype="float64", xp=np, summed=False):
        self.geom, self.summed = geom, summed
        mat, mat_t = _cached(geom, np.dtype(dtype).name, summed)
        if xp is not np:  # pragma: no cover - GPU
            import cupyx.scipy.sparse as csp

            mat, mat_t = csp.csr_matrix(mat), csp.csr_matrix(mat_t)
        self.mat, self.mat_t = mat, mat_t
        k, s = geom.sinogram_shape
        self.out_shape = (k, s) if summed else (k, s, geom.samples)

    @property
    def nnz(self) -> int:
        return int(self.mat.nnz)

    def forward(self, maps):
        ncp = get_array_module(maps)
        single = maps.ndim == 2
        cols = maps.reshape(1 if single else maps.shape[0], -1).T
        out = self.mat @ ncp.ascontiguousarray(cols)
        return out.reshape(*self.out_shape, *(() if single else (cols.shape[1],)))

    def adjoint(self, samples, single=False):
        ncp = get_array_module(samples)
        m = 1 if single else samples.shape[-1]
        out = self.mat_t @ ncp.ascontiguousarray(samples.reshape(-1, m))
        return out.T.reshape(*(() if single else (m,)), *self.geom.shape)


def ray_sampling(geom: Geometry, dtype="float64", xp=np, summed=False) -> RaySampling:
    """:class:`RaySampling` of ``geom`` (see there).

    Parameters
    ----------
    geom : :class:`Geometry`
        The slice, angles and rays.
    dtype : :obj:`str`, optional
        The maps' real dtype.
    xp : module, optional
        The array module (numpy or cupy) the matrices live on.
    summed : :obj:`bool`, optional
        Line integrals :math:`\\Delta t\\sum_t` (one value per ray) instead of every sample.

    Returns
    -------
    :class:`RaySampling`
    """
    return RaySampling(geom, dtype, xp, summed)


def _grid_interpolation(geom: Geometry, grid: Geometry, dtype) -> sp.csr_matrix:
    """Bilinear interpolation from the samples of ``grid`` (``(K, S2, T2)``, per angle) to the points of ``geom``."""
    rows, cols = geom.points()
    c0, c1 = (geom.shape[0] - 1) / 2, (geom.shape[1] - 1) / 2
    th = np.asarray(grid.angles)[:, None, None]
    dr, dc = rows - c0, cols - c1
    s2 = (dr * np.cos(th) - dc * np.sin(th)) / grid.pitch + (grid.bins - 1) / 2
    t2 = (dr * np.sin(th) + dc * np.cos(th)) / grid.step + (grid.samples - 1) / 2
    i0, j0 = np.floor(s2), np.floor(t2)
    fi, fj = s2 - i0, t2 - j0
    i0, j0 = i0.astype(np.int64), j0.astype(np.int64)
    k = np.arange(len(geom.angles))[:, None, None] * (grid.bins * grid.samples)
    sample = np.arange(rows.size).reshape(rows.shape)
    ii, jj, vv = [], [], []
    for di, dj, w in ((0, 0, (1 - fi) * (1 - fj)), (1, 0, fi * (1 - fj)), (0, 1, (1 - fi) * fj), (1, 1, fi * fj)):
        i, j = i0 + di, j0 + dj
        keep = (i >= 0) & (i < grid.bins) & (j >= 0) & (j < grid.samples) & (w != 0)
        ii.append(sample[keep])
        jj.append((k + i * grid.samples + j)[keep])
        vv.append(w[keep])
    mat = sp.csr_matrix((np.concatenate(vv).astype(dtype), (np.concatenate(ii), np.concatenate(jj))),
                        shape=(rows.size, len(geom.angles) * grid.bins * grid.samples))
    mat.sum_duplicates()
    return mat


@lru_cache(maxsize=4)
def _exit_cached(geom: Geometry, detector_angle: float, dtype: str):
    pitch = min(1.0, geom.step)  # bins as fine as the step: second order in the step across the paths too
    grid = Geometry.make(geom.shape, np.asarray(geom.angles) + detector_angle,
                         bins=int(np.ceil(np.hypot(*geom.shape) / pitch)) + 2, step=geom.step, pitch=pitch)
    mat = _grid_interpolation(geom, grid, np.dtype(dtype))
    return grid, mat, mat.T.tocsr()


class ExitPaths:
    """Integrals of maps from every sample point of ``geom`` to a detector at ``detector_angle`` (radians from the
    beam, see the module notes), per pixel of path.

    ``forward(maps)`` takes ``(m, n0, n1)`` and returns ``(K, S, T, m)``; ``adjoint`` is its exact transpose.

    Parameters
    ----------
    geom : :class:`Geometry`
        The slice, angles and rays whose sample points the paths start from.
    detector_angle : :obj:`float`, optional
        Direction of the detector in radians from the beam.
    dtype : :obj:`str`, optional
        The maps' real dtype.
    xp : module, optional
        The array module (numpy or cupy) the matrices live on.
    """

    def __init__(self, geom: Geometry, detector_angle=np.pi / 2, dtype="float64", xp=np):
        self.geom, self.detector_angle = geom, float(detector_angle)
        grid, mat, mat_t = _exit_cached(geom, self.detector_angle, np.dtype(dtype).name)
        self.grid, self.sampling = grid, RaySampling(grid, dtype, xp)
        if xp is not np:  # pragma: no cover - GPU
            import cupyx.scipy.sparse as csp

            mat, mat_t = csp.csr_matrix(mat), csp.csr_matrix(mat_t)
        self.mat, self.mat_t = mat, mat_t

    def forward(self, maps):
        ncp = get_array_module(maps)
        g = self.sampling.forward(maps)  # (K, S2, T2, m)
        c = ncp.flip(ncp.cumsum(ncp.flip(g, 2), axis=2), 2)  # from each sample to the end of its ray
        c -= 0.5 * g
        c *= self.geom.step
        out = self.mat @ c.reshape(-1, g.shape[-1])
        return out.reshape(len(self.geom.angles), self.geom.bins, self.geom.samples, g.shape[-1])

    def adjoint(self, samples):
        ncp = get_array_module(samples)
        m = samples.shape[-1]
        c = (self.mat_t @ ncp.ascontiguousarray(samples.reshape(-1, m))).reshape(*self.sampling.out_shape, m)
        g = ncp.cumsum(c, axis=2)
        g -= 0.5 * c
        g *= self.geom.step
        return self.sampling.adjoint(g)
