r"""
How much do the data say about each scan position? (diagnostic for position refinement)
=======================================================================================

With the **true** object and probe (so nothing but the positions is unknown), a paper case with jittered scan
positions is examined four ways:

1. the objective at the true positions with noise-free data (the model error: the simulator makes jittered data with
   band-limited windows, the reconstruction samples them by cubic convolution);
2. an exhaustive search over whole-pixel offsets within ``--radius`` px of the nominal raster, per position, on the
   noisy data: how many positions have an offset whose misfit is lower than the true position's (the data cannot
   place those positions, whatever the method);
3. L-BFGS on the positions alone from the nominal raster;
4. the same from the positions the search found.

    python examples/beyond_paper/position_information.py --case phantom --noise 0.03 --jitter 2
"""

# %%
# Imports and command line.
import argparse
import time

import numpy as np
from mmip_paper import simulate
from mmip_ptychography import PtychographyModel

from multimodal_ip.io import build_problem
from multimodal_ip.solvers import solve_staged

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument("--case", default="phantom")
parser.add_argument("--n", type=int)
parser.add_argument("--probe-size", type=int)
parser.add_argument("--step", type=int)
parser.add_argument("--noise", type=float, default=0.03)
parser.add_argument("--jitter", type=float, default=2.0)
parser.add_argument("--radius", type=int, default=3)
parser.add_argument("--iterations", type=int, default=100)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
size = {k: v for k, v in {"n": args.n, "probe_size": args.probe_size, "step": args.step}.items() if v}


def rms(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def at_truth(problem, ds, positions):
    arrays = problem.space.unpack(problem.start())
    return problem.space.pack({**arrays, "x": ds.truth["x"], "w": ds.truth["w"], "positions": positions})


# %%
# 1. The refinement model at the true positions, noise-free.
clean = simulate(args.case, seed=args.seed, noise=0.0, position_jitter_px=args.jitter, **size)
truth = clean.truth["positions"]
nominal = clean.terms["ptychography"].arrays["positions"].astype(float)
problem = build_problem(clean, terms=["ptychography"], refine=("positions",))
f_at_truth, f_nominal = (problem.value(at_truth(problem, clean, p)) for p in (truth, nominal))
print(f"noise-free objective at the true positions {f_at_truth:.3g}, at the nominal raster {f_nominal:.3g} "
      f"(nominal rms error {rms(nominal, truth):.3f} px)")

# %%
# 2. Per-position exhaustive search over whole-pixel offsets, noisy data, true object and probe.
ds = simulate(args.case, seed=args.seed, noise=args.noise, position_jitter_px=args.jitter, **size)
td = ds.terms["ptychography"]
n = ds.truth["x"].shape[0]
npx = td.arrays["probe"].shape[0]
main = np.concatenate([ds.truth["x"].ravel(), ds.truth["w"].ravel()])
root = np.sqrt(np.maximum(td.arrays["data"], 0))


def misfit(positions):
    """Amplitude misfit of every position at the true object (positions clipped to the object)."""
    y = PtychographyModel(td.arrays["probe"], np.clip(positions, 0, n - npx), (n, n), 1).forward(main)
    r = np.abs(y) - root
    return (r * r).sum(axis=(1, 2))


t0 = time.perf_counter()
f_true = misfit(truth)
best, found = misfit(nominal), nominal.copy()
for dr in range(-args.radius, args.radius + 1):
    for dc in range(-args.radius, args.radius + 1):
        cand = nominal + np.array([dr, dc], dtype=float)
        f = misfit(cand)
        better = f < best
        best[better], found[better] = f[better], cand[better]
beaten = int(np.sum(best < f_true))
print(f"whole-pixel search within ±{args.radius} px ({time.perf_counter() - t0:.1f} s): rms {rms(found, truth):.3f} "
      f"px; {beaten} of {len(truth)} positions have an offset that fits the noisy data better than the true position")

# %%
# 3. L-BFGS on the positions alone, from the nominal raster.
problem = build_problem(ds, terms=["ptychography"], refine=("positions",))
res = solve_staged(problem.with_frozen(("x", "w")), at_truth(problem, ds, nominal), "lbfgs", maxiter=args.iterations)
print(f"L-BFGS on the positions alone, {args.iterations} iterations: {res.status}, rms "
      f"{rms(res.arrays['positions'], truth):.3f} px (max {np.abs(res.arrays['positions'] - truth).max():.2f} px)")

# %%
# 4. The same L-BFGS started from the whole-pixel search's positions.
res = solve_staged(problem.with_frozen(("x", "w")), at_truth(problem, ds, found), "lbfgs", maxiter=args.iterations)
print(f"L-BFGS from the search's positions, {args.iterations} iterations: {res.status}, rms "
      f"{rms(res.arrays['positions'], truth):.3f} px (max {np.abs(res.arrays['positions'] - truth).max():.2f} px)")
