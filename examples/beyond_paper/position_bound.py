r"""
Cramer-Rao bound of the scan positions of a paper case
======================================================

The smallest rms error an unbiased estimate of each scan position can reach from its diffraction pattern, with the
object and probe known (the true ones, at the true positions): per position
:math:`\sqrt{\operatorname{tr} F_j^{-1}}`, :math:`F_j` the Poisson Fisher information of its pattern
(:func:`mmip_ptychography.fisher.position_fisher`), for the band-limited Fourier-shift windows the simulator made
the data with and for the reconstruction's cubic windows. ``--nuisance`` adds the bound with the object and probe
unknown (:func:`mmip_ptychography.fisher.nuisance_fisher`: one conjugate-gradient solve per position coordinate; slow
on the full cases).

    python examples/beyond_paper/position_bound.py --case cameraman --noise 0.03 --jitter 2 --seed 17
"""

# %%
# Imports and command line.
import argparse
import time

import numpy as np
from mmip_paper import simulate
from mmip_ptychography.fisher import fisher_weight, nuisance_bounds, nuisance_fisher, position_bounds, position_fisher

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument("--case", default="cameraman")
parser.add_argument("--n", type=int)
parser.add_argument("--probe-size", type=int)
parser.add_argument("--step", type=int)
parser.add_argument("--noise", type=float, default=0.03)
parser.add_argument("--jitter", type=float, default=2.0)
parser.add_argument("--seed", type=int, default=17)
parser.add_argument("--nuisance", action="store_true", help="also the bound with the object and probe unknown")
parser.add_argument("--probe-known", action="store_true", help="the nuisance bound with the probe known")
parser.add_argument("--rtol", type=float, default=1e-3,
                    help="CG tolerance of the nuisance bound (1e-3 and 1e-4 agree to 0.04 %%; measured)")
args = parser.parse_args()

# %%
# The case: the data's photon scale, the true object, probe and positions.
ds = simulate(args.case, seed=args.seed, noise=args.noise, n=args.n, probe_size=args.probe_size, step=args.step,
              position_jitter_px=args.jitter)
term = ds.terms["ptychography"]
coef = np.asarray(term.attrs.get("coupling", np.ones(len(ds.truth["w"]))), dtype=float)
z = ds.truth["x"] + 1j * np.tensordot(coef, ds.truth["w"], axes=1)
probe = ds.truth.get("probe", term.arrays["probe"])
pos = ds.truth.get("positions", term.arrays["positions"])
weight = fisher_weight(photons_per_unit=float(term.attrs["photons_per_unit"]))
print(f"{args.case}: n {z.shape[0]}, probe {probe.shape[0]}, step {ds.attrs['step_px']}, {len(pos)} positions, "
      f"noise {args.noise}, photons per unit {term.attrs['photons_per_unit']:.4g}")


def _line(label, bound, seconds):
    finite = bound[np.isfinite(bound)]
    print(f"| {label} | {np.sqrt(np.mean(finite**2)):.3f} | {np.median(finite):.3f} | {finite.max():.3f} | "
          f"{len(bound) - len(finite)} | {seconds:.1f} |")


print("| bound | rms (px) | median | max | infinite | time (s) |\n|---|---|---|---|---|---|")
for model in ("fourier", "cubic"):
    t = time.perf_counter()
    bound, _ = position_bounds(position_fisher(z, probe, pos, weight, model))
    _line(f"object and probe known, {model} windows", bound, time.perf_counter() - t)
if args.nuisance:
    t = time.perf_counter()
    schur = nuisance_fisher(z, probe, pos, weight, refine_probe=not args.probe_known, rtol=args.rtol)
    bound, _ = nuisance_bounds(schur)
    _line("object" + ("" if args.probe_known else " and probe") + " unknown, cubic windows, common shift removed",
          bound, time.perf_counter() - t)
