"""An unbiased stochastic estimate of the rms position bound with the object unknown (Hutchinson's trace estimate on
the whole Gauss-Newton system, the common shift of the scan projected off): a few solves where the exact Schur
complement (:mod:`mmip_ptychography.nuisance_full`) takes one per position coordinate."""

__all__ = ["nuisance_trace_samples"]

import time

import numpy as np


def _center(dp):
    """The displacements ``(B, 2J)`` less their common shift (zero mean per coordinate)."""
    d = dp.reshape(len(dp), -1, 2)
    return (d - d.mean(axis=1, keepdims=True)).reshape(len(dp), -1)


def _spread(gn, dp):
    """:math:`H_{op}\\,\\delta p` for a batch ``(B, 2J)`` of position changes: ``(B, n0, n1)``."""
    rows = np.arange(len(gn.positions))
    wu = gn._u_work[0]
    out = []
    for d in dp:
        q = np.einsum("ja,jakl->jkl", d.reshape(-1, 2), gn.g).astype(wu.real.dtype)
        out.append(gn._back(wu * q, rows))
    return np.stack(out).astype(complex)


def _system(gn, z, p):
    """The whole Gauss-Newton system on ``(object, positions)`` batches, the positions kept off the common shift."""
    hz = gn.apply(z) + _spread(gn, p)
    cross = np.stack([gn.cross(d.astype(gn.work)) for d in z])
    hpp = np.einsum("jab,njb->nja", gn.position_blocks, p.reshape(len(p), -1, 2)).reshape(len(p), -1)
    return hz, _center(cross + hpp)


def nuisance_trace_samples(gn, samples=16, rtol=1e-3, seed=0, batch=4, maxiter=2000, log=None):
    r"""Samples :math:`v^T C v` of Hutchinson's estimate of :math:`\operatorname{tr} C`,
    :math:`C = Q (Q^T S Q)^{-1} Q^T` the positions' covariance bound with the object unknown and the common shift
    removed (:func:`~mmip_ptychography.fisher.nuisance_bounds`; :math:`S` the Schur complement): for Rademacher
    :math:`v`, :math:`C v` is the positions' part of the whole system's solution for the right-hand side
    :math:`(0, Q Q^T v)` (CG, Jacobi on the object, the 2 x 2 blocks on the positions), and
    :math:`v^T C v` is taken with the solves' second-order correction (as in
    :func:`~mmip_ptychography.nuisance_full.nuisance_fisher_full`). The rms bound per position is
    :math:`\sqrt{E[v^T C v] / J}`; the same ``seed`` gives the same :math:`v` for another operator (a control
    variate: the difference of two operators' samples varies far less than either).

    Parameters
    ----------
    gn : :class:`~mmip_ptychography.nuisance_full.ObjectGaussNewton`
        The operator at the point of the bound.
    samples : :obj:`int`, optional
        Number of :math:`v`.
    rtol : :obj:`float`, optional
        Relative residual at which each solve stops.
    seed : :obj:`int`, optional
        Seed of the :math:`v`.
    batch : :obj:`int`, optional
        Solves made together.
    maxiter : :obj:`int`, optional
        Iteration cap of each solve.
    log : callable, optional
        Called with a progress line after every batch.

    Returns
    -------
    values : :obj:`numpy.ndarray`
        ``(samples,)``: :math:`v^T C v`, px^2.
    iterations : :obj:`numpy.ndarray`
        ``(samples,)`` CG iterations of each solve.
    """
    rng = np.random.default_rng(seed)
    vs = rng.choice([-1.0, 1.0], size=(int(samples), gn.size))
    d_re, d_im = gn.diagonal()
    inv_blocks = np.linalg.pinv(gn.position_blocks, hermitian=True)

    def precond(z, p):
        pp = np.einsum("jab,njb->nja", inv_blocks, p.reshape(len(p), -1, 2)).reshape(len(p), -1)
        return z.real / d_re + 1j * (z.imag / d_im), _center(pp)

    def dot(a, b):
        za, pa = a
        zb, pb = b
        return np.einsum("bij,bij->b", za.real, zb.real) + np.einsum("bij,bij->b", za.imag, zb.imag) + \
            np.einsum("bk,bk->b", pa, pb)

    values, iterations = np.zeros(len(vs)), np.zeros(len(vs), dtype=int)
    t0 = time.perf_counter()
    for s in range(0, len(vs), int(batch)):
        rhs_p = _center(vs[s : s + int(batch)])
        n = len(rhs_p)
        x = (np.zeros((n, *gn.obj.shape), dtype=complex), np.zeros_like(rhs_p))
        r = (np.zeros_like(x[0]), rhs_p.copy())
        norm0 = np.sqrt(dot(r, r))
        zr = precond(*r)
        p, rz = (zr[0].copy(), zr[1].copy()), dot(r, zr)
        active = np.arange(n)
        for _ in range(int(maxiter)):
            ap = _system(gn, p[0][active], p[1][active])
            alpha = rz[active] / dot((p[0][active], p[1][active]), ap)
            for k in range(2):
                shape = (-1,) + (1,) * (x[k].ndim - 1)
                x[k][active] += alpha.reshape(shape) * p[k][active]
                r[k][active] -= alpha.reshape(shape) * ap[k]
            iterations[s + active] += 1
            done = np.sqrt(dot((r[0][active], r[1][active]), (r[0][active], r[1][active]))) <= rtol * norm0[active]
            active = active[~done]
            if active.size == 0:
                break
            zr = precond(r[0][active], r[1][active])
            rz_new = dot((r[0][active], r[1][active]), zr)
            beta = rz_new / rz[active]
            p[0][active] = zr[0] + beta[:, None, None] * p[0][active]
            p[1][active] = zr[1] + beta[:, None] * p[1][active]
            rz[active] = rz_new
        values[s : s + n] = np.einsum("bk,bk->b", rhs_p, x[1]) + dot(x, r)
        if log is not None:
            log(f"samples {s + n}/{len(vs)}: CG iterations {iterations[s : s + n].min()}-"
                f"{iterations[s : s + n].max()}, {time.perf_counter() - t0:.0f} s")
    return values, iterations
