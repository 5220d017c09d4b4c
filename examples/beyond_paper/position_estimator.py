r"""
Scan positions at a known object and probe, against the Cramer-Rao bound
========================================================================

A paper case with jittered scan positions (the file keeps the raster), the true object and probe given: each
position estimated by :class:`mmip_ptychography.PositionEstimator` (a whole-pixel search within ``--radius`` px,
then per-position Levenberg-Marquardt from the search's ``--starts`` best offsets), four ways: the reconstruction's
cubic windows with the amplitude misfit from the raster (what the joint model sees), band-limited windows with the
amplitude misfit and the search, band-limited windows with the Poisson likelihood from the raster, and with the
search. The rms error per position, :math:`\sqrt{\mathrm{mean}_j |p_j - p_j^*|^2}`, is compared with the rms of
the per-position bounds :math:`\sqrt{\operatorname{tr} F_j^{-1}}` (:func:`mmip_ptychography.fisher.position_fisher`,
band-limited windows), both over the positions whose bound is finite (a window on a flat region says nothing).

    python examples/beyond_paper/position_estimator.py --case cameraman --seeds 1 2 3
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
parser.add_argument("--case", default="cameraman")
parser.add_argument("--n", type=int)
parser.add_argument("--probe-size", type=int)
parser.add_argument("--step", type=int)
parser.add_argument("--noise", type=float, default=0.03)
parser.add_argument("--jitter", type=float, default=2.0)
parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
parser.add_argument("--iterations", type=int, default=100)
parser.add_argument("--radius", type=float, default=2.0)
parser.add_argument("--starts", type=int, default=3)
args = parser.parse_args()
size = {k: v for k, v in {"n": args.n, "probe_size": args.probe_size, "step": args.step}.items() if v}
METHODS = (("cubic, amplitude, from the raster", "cubic", False, 0.0),
           ("band-limited, amplitude, search", "band-limited", False, args.radius),
           ("band-limited, Poisson, from the raster", "band-limited", True, 0.0),
           ("band-limited, Poisson, search", "band-limited", True, args.radius))

# %%
# Every seed: the bound, then each method.
rows: dict = {}
for seed in args.seeds:
    ds = simulate(args.case, seed=seed, noise=args.noise, position_jitter_px=args.jitter, **size)
    td = ds.terms["ptychography"]
    truth, nominal = ds.truth["positions"], np.asarray(td.arrays["positions"], dtype=float)
    coef = np.asarray(td.attrs.get("coupling", np.ones(ds.truth["w"].shape[0])), dtype=float)
    z = ds.truth["x"] + 1j * np.tensordot(coef, ds.truth["w"], axes=1)
    photons = float(td.attrs["photons_per_unit"])
    bound, _ = position_bounds(position_fisher(z, td.arrays["probe"], truth, fisher_weight(photons), model="fourier"))
    finite = np.isfinite(bound)
    rb = float(np.sqrt(np.mean(bound[finite] ** 2)))
    rows.setdefault("nominal raster", []).append((float(np.sqrt(np.mean(np.sum((nominal - truth) ** 2, 1)[finite]))),
                                                  rb, 0, 0.0))
    for label, window, poisson, radius in METHODS:
        t0 = time.perf_counter()
        est = PositionEstimator(z, td.arrays["probe"], td.arrays["data"], window=window,
                                photons_per_unit=photons if poisson else None)
        fit = est.fit(nominal, iterations=args.iterations, radius=radius, starts=args.starts)
        err = float(np.sqrt(np.mean(np.sum((fit.positions - truth) ** 2, axis=1)[finite])))
        rows.setdefault(label, []).append((err, rb, fit.iterations, time.perf_counter() - t0))
        print(f"{args.case} seed {seed} {label}: {err:.3f} px ({err / rb:.2f} x the bound {rb:.3f} px), "
              f"{fit.iterations} iterations, {time.perf_counter() - t0:.1f} s", flush=True)

# %%
# The table: mean over seeds (and the range of the ratio to the bound).
print(f"\n{args.case}, noise {args.noise}, jitter ±{args.jitter} px, seeds {args.seeds}; {int(np.sum(~finite))} of "
      f"{len(finite)} positions without information left out (last seed)\n")
print("| positions | rms per position (px) | bound (px) | ratio to the bound | iterations | time (s) |")
print("|---|---|---|---|---|---|")
for label, vals in rows.items():
    v = np.array(vals, dtype=float)
    ratio = v[:, 0] / v[:, 1]
    print(f"| {label} | {v[:, 0].mean():.3f} | {v[:, 1].mean():.3f} | {ratio.mean():.2f} ({ratio.min():.2f}-"
          f"{ratio.max():.2f}) | {v[:, 2].max():.0f} | {v[:, 3].mean():.1f} |")
