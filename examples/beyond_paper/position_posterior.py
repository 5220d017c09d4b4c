r"""
Scan positions at a known object and probe: the posterior of each position against the Cramer-Rao bound
=======================================================================================================

A paper case with jittered scan positions, the true object and probe given. Each position's posterior on a grid
(:class:`mmip_ptychography.position_posterior.PositionPosterior`: band-limited windows, the Poisson likelihood, the
jitter's prior, uniform on nominal ± ``--jitter`` px with the simulator's clipping into the object as atoms on its
edge) gives the Bayesian estimates: its mean (least mean-square error on average over the prior: no estimator does
better there) and its highest point polished by Levenberg-Marquardt (the global maximum likelihood in the box),
next to the search-then-Levenberg-Marquardt estimate (:meth:`mmip_ptychography.PositionEstimator.fit`,
``estimate="local"``). The rms error per position, :math:`\sqrt{\mathrm{mean}_j |p_j - p_j^*|^2}`, and the
posterior-expected rms error of the mean, :math:`\sqrt{\mathrm{mean}_j \operatorname{tr} C_j}`, are compared with
the rms of the per-position Cramer-Rao bounds (band-limited windows, at the truth), over the positions whose bound
is finite; "interior" keeps only the positions whose box does not reach the object's edge.

    python examples/beyond_paper/position_posterior.py --case phantom --seeds 4 5 6 7 \
        --figure docs/position_posterior.png
"""

# %%
# Imports and command line.
import argparse
import time

import numpy as np
from mmip_paper import simulate
from mmip_ptychography import PositionEstimator
from mmip_ptychography.fisher import fisher_weight, position_bounds, position_fisher

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument("--case", default="phantom")
parser.add_argument("--n", type=int)
parser.add_argument("--probe-size", type=int)
parser.add_argument("--step", type=int)
parser.add_argument("--noise", type=float, default=0.03)
parser.add_argument("--jitter", type=float, default=2.0)
parser.add_argument("--seeds", type=int, nargs="+", default=[4, 5, 6, 7])
parser.add_argument("--iterations", type=int, default=100)
parser.add_argument("--starts", type=int, default=3)
parser.add_argument("--figure", help="PNG of the first seed's per-position errors against the bound")
parser.add_argument("--save", help="npz of every seed's per-position numbers")
args = parser.parse_args()


def rms(values, keep):
    return float(np.sqrt(np.mean(np.asarray(values)[keep] ** 2)))


# %%
# Every seed: the bound, the search-then-LM estimate, the posterior (its mean and its polished best point).
rows: dict = {}
saved: dict = {}
for seed in args.seeds:
    ds = simulate(args.case, seed=seed, noise=args.noise, position_jitter_px=args.jitter, n=args.n,
                  probe_size=args.probe_size, step=args.step)
    td = ds.terms["ptychography"]
    truth, nominal = ds.truth["positions"], np.asarray(td.arrays["positions"], dtype=float)
    coef = np.asarray(td.attrs.get("coupling", np.ones(ds.truth["w"].shape[0])), dtype=float)
    z = ds.truth["x"] + 1j * np.tensordot(coef, ds.truth["w"], axes=1)
    probe, photons = td.arrays["probe"], float(td.attrs["photons_per_unit"])
    bound, _ = position_bounds(position_fisher(z, probe, truth, fisher_weight(photons), model="fourier"))
    edge = (z.shape[0] - probe.shape[0], z.shape[1] - probe.shape[1])
    finite = np.isfinite(bound)
    interior = finite & np.all((nominal - args.jitter >= 0) & (nominal + args.jitter <= edge), axis=1)
    est = PositionEstimator(z, probe, td.arrays["data"], photons_per_unit=photons)
    t0 = time.perf_counter()
    local = est.fit(nominal, iterations=args.iterations, radius=args.jitter, starts=args.starts)
    t1 = time.perf_counter()
    fit = est.fit(nominal, iterations=args.iterations, radius=args.jitter, estimate="map", bounds=(0, edge))
    t2 = time.perf_counter()
    post = fit.posterior
    spread = np.sqrt(np.trace(post.covariance, axis1=1, axis2=2))
    errors = {"search + Levenberg-Marquardt (local)": (local.positions, t1 - t0),
              "posterior's best point + LM (map)": (fit.positions, t2 - t1),
              "posterior mean (mean)": (post.mean, t2 - t1)}
    for label, (p, seconds) in errors.items():
        e = np.linalg.norm(p - truth, axis=1)
        rows.setdefault(label, []).append((rms(e, finite), rms(bound, finite), rms(e, interior),
                                           rms(bound, interior), seconds))
        saved[f"{seed}/{label.split('(')[-1][:-1]}"] = e
    rows.setdefault("posterior-expected rms of the mean", []).append(
        (rms(spread, finite), rms(bound, finite), rms(spread, interior), rms(bound, interior), 0.0))
    saved.update({f"{seed}/bound": bound, f"{seed}/spread": spread, f"{seed}/truth": truth,
                  f"{seed}/interior": interior, f"{seed}/evaluations": post.evaluations})
    e = np.linalg.norm(post.mean - truth, axis=1)
    worst = np.argsort(-np.where(finite, spread**2, 0))[: max(1, int(0.1 * finite.sum()))]
    share = np.sum(spread[worst] ** 2) / np.sum(spread[finite] ** 2), np.sum(e[worst] ** 2) / np.sum(e[finite] ** 2)
    print(f"{args.case} seed {seed}: bound {rms(bound, finite):.3f} px; " + "; ".join(
        f"{k} {v[-1][0] / v[-1][1]:.2f}x" for k, v in rows.items()) +
        f"; the 10 % positions of largest posterior spread hold {share[0]:.0%} of the expected and {share[1]:.0%} "
        "of the actual squared error; "
        f"{int(post.evaluations.sum())} likelihoods, {t2 - t1:.0f} s (local {t1 - t0:.0f} s)", flush=True)
    if args.figure and seed == args.seeds[0]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(11, 4.6))
        b = bound[finite]
        lim = [0.8 * b.min(), 1.25 * max(b.max(), spread[finite].max(), e[finite].max())]
        ax[0].loglog(lim, lim, "k-", lw=0.8, label="= bound")
        ax[0].loglog(lim, [1.25 * v for v in lim], "k--", lw=0.8, label="1.25 x bound")
        ax[0].loglog(b, spread[finite], "o", ms=4, label="posterior rms spread (expected error of the mean)")
        ax[0].loglog(b, np.maximum(e[finite], lim[0]), "x", ms=4, label="|error| of the posterior mean")
        ax[0].set(xlabel="Cramer-Rao bound (px)", ylabel="px", title=f"{args.case}, seed {seed}: per position")
        ax[0].legend(fontsize=7)
        sc = ax[1].scatter(truth[finite, 1], truth[finite, 0], c=spread[finite] / b, s=30, cmap="viridis", vmin=0,
                           vmax=4)
        ax[1].plot(truth[~finite, 1], truth[~finite, 0], "rx", label="no information (flat window)")
        ax[1].invert_yaxis()
        ax[1].set(aspect="equal", xlabel="column (px)", ylabel="row (px)", title="posterior spread / bound")
        ax[1].legend(fontsize=7, loc="lower right")
        fig.colorbar(sc, ax=ax[1])
        fig.tight_layout()
        fig.savefig(args.figure, dpi=90)
if args.save:
    np.savez(args.save, **saved)

# %%
# The table: mean over seeds (the range of the ratio to the bound), over all positions with a finite bound and
# over the interior ones.
print(f"\n{args.case}, noise {args.noise}, jitter ±{args.jitter} px, seeds {args.seeds}\n")
print("| estimate | rms per position (px) | bound (px) | ratio, mean (range) | interior: ratio | time (s) |")
print("|---|---|---|---|---|---|")
for label, vals in rows.items():
    v = np.array(vals, dtype=float)
    ratio, inner = v[:, 0] / v[:, 1], v[:, 2] / v[:, 3]
    print(f"| {label} | {v[:, 0].mean():.3f} | {v[:, 1].mean():.3f} | {ratio.mean():.2f} ({ratio.min():.2f}-"
          f"{ratio.max():.2f}) | {inner.mean():.2f} ({inner.min():.2f}-{inner.max():.2f}) | "
          f"{v[:, 4].mean():.0f} |")
