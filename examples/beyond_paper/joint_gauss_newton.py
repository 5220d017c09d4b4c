r"""
Joint Gauss-Newton steps on the object and the scan positions
=============================================================

An experiment (not part of the solvers): from a run's result (object ``x``, ``w`` and positions), take ``K``
Levenberg-Marquardt-damped Gauss-Newton steps on the object and all the scan positions together, of the
ptychography term's misfit (``amplitude`` or ``poisson``), the probe known. Each step solves

.. math:: \begin{bmatrix} H_{oo} + \lambda D_o & H_{op} \\ H_{po} & H_{pp} + \lambda D_p \end{bmatrix}
    \begin{bmatrix} \delta z \\ \delta p \end{bmatrix} = -\begin{bmatrix} g_o \\ g_p \end{bmatrix}

by conjugate gradients over the object and the positions at once (block-Jacobi preconditioned), the common shift of
the scan and the global phase of the object projected off; the pieces are those of
:class:`mmip_ptychography.nuisance_full.ObjectGaussNewton` (cubic windows, as the reconstruction's), built at the
current point. A step that raises the misfit is refused and ``lambda`` raised. The truth in the data file is used
only to score: the rms position error per position after removing the common shift and the object's relative error.
The joint run's own problem, the XRF included: ``joint_gauss_newton_xrf.py``.

    mmip simulate cameraman --noise 0.03 --seed 4 --position-jitter 2 --step 10 -o d4.h5
    mmip reconstruct d4.h5 -o r.h5 --refine positions --refine-after 50 --iterations 400
    python examples/beyond_paper/joint_gauss_newton.py --data d4.h5 --result r.h5 --steps 5
"""

# %%
# Imports and command line.
import argparse
import time

import numpy as np
from mmip_ptychography.fisher import fisher_weight
from mmip_ptychography.nuisance_full import ObjectGaussNewton

from multimodal_ip.io import load_dataset, load_result

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument("--data", required=True, help="the simulated data set (with /truth/positions)")
parser.add_argument("--result", required=True, help="the run's result: x, w and (if refined) the positions")
parser.add_argument("--steps", type=int, default=5, help="joint Gauss-Newton steps")
parser.add_argument("--cg", type=int, default=100, help="CG iterations per step")
parser.add_argument("--damping", type=float, default=1e-3, help="initial Levenberg-Marquardt lambda (relative)")
parser.add_argument("--loss", choices=("amplitude", "poisson"), help="misfit (default: the run's)")
parser.add_argument("--windows", choices=("cubic", "fourier"), default="cubic",
                    help="window model: the reconstruction's (cubic) or the simulator's (band-limited)")
parser.add_argument("--from-truth", action="store_true",
                    help="diagnostic: start at the true object and positions (where the estimator's minimum lies)")
parser.add_argument("--refit", type=int, default=0, help="object-only Gauss-Newton steps after each joint step")
args = parser.parse_args()

# %%
# The data (patterns unshifted to match the unshifted FFT of the operator), the run's point, the truth for scoring.
ds, res = load_dataset(args.data), load_result(args.result)
term = ds.terms["ptychography"]
d = np.fft.ifftshift(np.asarray(term.arrays["data"], dtype=float), axes=(-2, -1))
probe = np.asarray(term.arrays["probe"], dtype=complex)
p = float(term.attrs["photons_per_unit"])
weight = fisher_weight(photons_per_unit=p)
coef = np.asarray(term.attrs.get("coupling", [1.0]), dtype=float)
var = res["variables"]
pos_key = next((k for k in var if k.endswith("positions")), None)
pos = np.asarray(var[pos_key] if pos_key else term.arrays["positions"], dtype=float).reshape(-1, 2)
z = np.asarray(var["x"], dtype=float) + 1j * np.tensordot(coef, np.asarray(var["w"], dtype=float), axes=1)
if args.from_truth:
    z = np.asarray(ds.truth["x"], dtype=float) + 1j * np.tensordot(coef, np.asarray(ds.truth["w"]), axes=1)
    pos = np.asarray(ds.truth["positions"], dtype=float)
loss = args.loss or dict(res.get("config") or {}).get("loss", "amplitude")
loss = loss if loss in ("amplitude", "poisson") else "amplitude"
true_pos, true_x, true_w = (np.asarray(ds.truth[k], dtype=float) for k in ("positions", "x", "w"))
sqrt_d = np.sqrt(np.maximum(d, 0))


def score(z, pos):
    """rms position error (common shift removed), px; relative errors of x and w."""
    e = pos - true_pos
    e -= e.mean(axis=0)
    w = z.imag / coef[0]
    return (float(np.sqrt(np.mean(np.sum(e**2, axis=1)))),
            float(np.linalg.norm(z.real - true_x) / np.linalg.norm(true_x)),
            float(np.linalg.norm(w - true_w[0]) / np.linalg.norm(true_w[0])))


def misfit(gn):
    """The misfit at ``gn``'s point, scaled so that its Gauss-Newton curvature is ``weight`` (4 p)."""
    a = np.abs(gn._far(gn.windows.forward(gn.obj)))
    if loss == "amplitude":
        return 0.5 * weight * float(np.sum((a - sqrt_d) ** 2)), a - sqrt_d
    i = np.maximum(a**2, 1e-30)
    return p * float(np.sum(i - d * np.log(i))), 0.5 * (a - d / np.maximum(a, 1e-15))


# %%
# One damped Gauss-Newton step: CG on (dz, dp), the null modes (global phase, common shift) projected off.
def step(gn, r, lam, cg, positions=True):
    rows = np.arange(len(gn.positions))
    phase = 1j * gn.obj / np.linalg.norm(gn.obj)
    d_re, d_im = gn.diagonal()
    blocks = gn.position_blocks + lam * np.einsum("jaa->ja", gn.position_blocks)[:, :, None] * np.eye(2)
    blocks += 1e-9 * np.trace(blocks, axis1=1, axis2=2).mean() * np.eye(2)
    inv_blocks = np.linalg.inv(blocks)

    def proj(o, q):
        o = o - np.vdot(phase, o).real * phase - np.vdot(1j * phase, o).real * 1j * phase
        return o, (q - q.mean(axis=0) if positions else 0 * q)

    def matvec(o, q):
        s = (gn.u.conj() * gn._far(gn.windows.forward(o))).real + np.einsum("jakl,ja->jkl", gn.g, q)
        ho = gn._back(weight * gn.u * s, rows) + lam * (d_re * o.real + 1j * d_im * o.imag)
        hq = weight * np.einsum("jakl,jkl->ja", gn.g, s) + lam * np.einsum("jaa->ja", gn.position_blocks) * q
        return proj(ho, hq)

    def precond(o, q):
        return proj(o.real / (d_re * (1 + lam)) + 1j * o.imag / (d_im * (1 + lam)), np.einsum("jab,jb->ja",
                                                                                             inv_blocks, q))

    def dot(a, b):
        return float(np.vdot(a[0], b[0]).real + np.sum(a[1] * b[1]))

    go, gq = gn._back(weight * gn.u * r, rows), weight * np.einsum("jakl,jkl->ja", gn.g, r)
    res = proj(-go, -gq)
    x = (np.zeros_like(gn.obj), np.zeros_like(gn.positions))
    s = precond(*res)
    dirn, rz, norm0 = s, dot(res, s), np.sqrt(dot(res, res))
    for it in range(1, cg + 1):  # noqa: B007 (reported after the loop)
        hd = matvec(*dirn)
        alpha = rz / dot(dirn, hd)
        x = (x[0] + alpha * dirn[0], x[1] + alpha * dirn[1])
        res = (res[0] - alpha * hd[0], res[1] - alpha * hd[1])
        if np.sqrt(dot(res, res)) < 1e-4 * norm0:
            break
        s = precond(*res)
        rz_new = dot(res, s)
        dirn, rz = (s[0] + rz_new / rz * dirn[0], s[1] + rz_new / rz * dirn[1]), rz_new
    print(f"  CG {it} iterations, relative residual {np.sqrt(dot(res, res)) / norm0:.1e}", flush=True)
    return x


def damped(z, pos, lam, positions=True):
    """One accepted step (lambda raised tenfold until the misfit falls, at most 6 times)."""
    gn = ObjectGaussNewton(z, probe, pos, weight, model=args.windows)
    f0, r = misfit(gn)
    for _ in range(6):
        dz, dq = step(gn, r, lam, args.cg, positions)
        z1, p1 = z + dz, pos + dq
        f1, _ = misfit(ObjectGaussNewton(z1, probe, p1, weight, model=args.windows))
        if f1 < f0:
            return z1, p1, f1, max(lam / 3, 1e-6)
        lam *= 10
    return z, pos, f0, lam


# %%
# The steps, scored against the truth after each.
print(f"{'truth' if args.from_truth else args.result}: {args.windows} windows, loss {loss}, {len(pos)} positions, "
      f"object {z.shape}, probe {probe.shape}")
print("| step | misfit | rms position error (px) | error x | error w | lambda | seconds |")
print("|---|---|---|---|---|---|---|")
f, _ = misfit(ObjectGaussNewton(z, probe, pos, weight, model=args.windows))
print(f"| 0 | {f:.6g} | {score(z, pos)[0]:.4f} | {score(z, pos)[1]:.4f} | {score(z, pos)[2]:.4f} | | 0 |", flush=True)
lam, t0 = args.damping, time.perf_counter()
for k in range(1, args.steps + 1):
    z, pos, f, lam = damped(z, pos, lam)
    for _ in range(args.refit):
        z, pos, f, _ = damped(z, pos, lam, positions=False)
    rms, ex, ew = score(z, pos)
    print(f"| {k} | {f:.6g} | {rms:.4f} | {ex:.4f} | {ew:.4f} | {lam:.1e} | {time.perf_counter() - t0:.1f} |",
          flush=True)
