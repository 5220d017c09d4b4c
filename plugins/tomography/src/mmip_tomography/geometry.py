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
"""

__all__ = ["Geometry", "RaySampling", "ray_sampling"]

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from multimodal_ip.backend import get_array_module
from multimodal_ip.errors import ShapeError


@dataclass(frozen=True)
class Geometry:
    """Shape of the slice, angles (radians), detector bins ``S``, samples per ray ``T`` and step ``dt`` (pixels)."""

    shape: tuple
    angles: tuple
    bins: int
    samples: int
    step: float = 1.0

    @classmethod
    def make(cls, shape, angles, bins=None, step=1.0):
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
        return cls(shape, tuple(float(a) for a in angles), bins, samples, step)

    @property
    def sinogram_shape(self) -> tuple:
        return (len(self.angles), self.bins)

    def points(self):
        """Sample coordinates ``(rows, cols)``, each of shape ``(K, S, T)``."""
        th = np.asarray(self.angles)[:, None, None]
        u = (np.arange(self.bins) - (self.bins - 1) / 2)[None, :, None]
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


@lru_cache(maxsize=4)
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
    """:class:`RaySampling` of ``geom`` (see there)."""
    return RaySampling(geom, dtype, xp, summed)
