r"""
A global scan drift: can an affine model of the positions recover it? (diagnostic for position refinement)
=========================================================================================================

The true positions are the nominal raster compressed by a linear ramp of ``--ramp`` px across the scan (columns
move inward by up to ramp / 2 at each edge) plus uniform jitter of ``--jitter`` px; the data are simulated with
band-limited windows and Poisson noise. The positions are then refined as the library's ``affine`` calibration
unknown (:func:`mmip_scanprobe.affine_positions`: six parameters in pixels, the scan's global shift, scale, shear and
rotation), optionally with per-position offsets too (``--offsets``, bounded by ``--bound`` px):

* ``oracle``: the true object is given, the calibration is the only unknown;
* ``joint``: the object is unknown: ``--stage1`` L-BFGS iterations with the positions fixed, then object and
  calibration together for ``--iterations`` (the library's staged refinement, ``refine_after``).

    python examples/beyond_paper/drift.py --case cameraman --mode oracle
    python examples/beyond_paper/drift.py --case cameraman --mode joint --stage1 50 --iterations 100
    python examples/beyond_paper/drift.py --case cameraman --mode joint --offsets --bound 1
"""

# %%
# Imports and command line.
import argparse
import warnings
from dataclasses import replace

import numpy as np
from mmip_paper import band_limited_spectra, poisson_noise, simulate
from mmip_scanprobe import affine_frame, affine_positions

from multimodal_ip.io import build_problem
from multimodal_ip.solvers import solve_staged

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument("--case", default="cameraman")
parser.add_argument("--n", type=int)
parser.add_argument("--probe-size", type=int)
parser.add_argument("--step", type=int)
parser.add_argument("--noise", type=float, default=0.03)
parser.add_argument("--ramp", type=float, default=3.0)
parser.add_argument("--jitter", type=float, default=0.5)
parser.add_argument("--mode", choices=("oracle", "joint"), default="oracle")
parser.add_argument("--stage1", type=int, default=50)
parser.add_argument("--iterations", type=int, default=100)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--offsets", action="store_true", help="refine per-position offsets besides the affine map")
parser.add_argument("--bound", type=float, help="keep every offset within this distance (px) of its start")
args = parser.parse_args()
warnings.simplefilter("ignore", UserWarning)  # a full-grid XRF shares only the probe: expected here
size = {k: v for k, v in {"n": args.n, "probe_size": args.probe_size, "step": args.step}.items() if v}

# %%
# Data at drifted positions (inward ramp along the columns, so no window leaves the object but by the jitter).
ds = simulate(args.case, seed=args.seed, noise=0.0, **size)
td = ds.terms["ptychography"]
nominal = td.arrays["positions"].astype(float)
n, npx = ds.truth["x"].shape[0], td.arrays["probe"].shape[0]
rng = np.random.default_rng([args.seed, 7])
lo, hi = nominal[:, 1].min(), nominal[:, 1].max()
slope = -args.ramp / max(hi - lo, 1)


def ramp(column):
    """The drift's column shift at a nominal column: +ramp/2 at the first column, -ramp/2 at the last."""
    return args.ramp / 2 + slope * (column - lo)


truth = nominal + rng.uniform(-args.jitter, args.jitter, nominal.shape)
truth[:, 1] += ramp(nominal[:, 1])
truth = np.clip(truth, 0, n - npx)
z = ds.truth["x"] + 1j * ds.truth["w"][0]
data, photons = poisson_noise(np.abs(band_limited_spectra(z, td.arrays["probe"], truth)) ** 2, args.noise,
                              np.random.default_rng([args.seed, 8]))
ds.terms["ptychography"] = replace(td, arrays=dict(td.arrays, data=data),
                                   attrs=dict(td.attrs, photons_per_unit=photons))
ds.truth["positions"] = truth


def rms(p):
    return float(np.sqrt(np.mean((p - truth) ** 2)))


# %%
# Fit: the affine unknown (and, with --offsets, the positions), from the identity and the nominal raster.
refine = ("positions", "affine") if args.offsets else ("affine",)
bounds = {"positions": args.bound} if args.bound else None
problem = build_problem(ds, terms=["ptychography"] if args.mode == "oracle" else None, refine=refine,
                        refine_bounds=bounds, dtype="float64")
start = problem.start()
if args.mode == "oracle":
    start = problem.space.pack({**problem.space.unpack(start), "x": ds.truth["x"], "w": ds.truth["w"]})
    problem = problem.with_frozen(("x", "w"))
stage1 = args.stage1 if args.mode == "joint" else 0
res = solve_staged(problem, start, "lbfgs", maxiter=stage1 + args.iterations, refine_after=stage1)
a = res.arrays["affine"]
fitted = affine_positions(nominal, a, (n, n), (npx, npx), base=res.arrays["positions"] if args.offsets else None)
# the drift in the affine frame: the column scale m11 is the ramp's slope times the frame's half-extent
centre, half = affine_frame((n, n), (npx, npx))
ideal = np.zeros(6)
ideal[3] = slope * half
ideal[5] = ramp(centre[1])
print(f"{args.case}, {args.mode}{' + offsets' if args.offsets else ''}: nominal rms {rms(nominal):.3f} px, the true "
      f"affine map {rms(affine_positions(nominal, ideal, (n, n), (npx, npx))):.3f} px (the jitter); fitted after "
      f"{len(res.history) - 1} iterations ({res.status}): column scale {a[3] / half:+.4f} (true {slope:+.4f}), "
      f"rms {rms(fitted):.3f} px")
if args.mode == "joint":
    errors = problem.relative_errors(res.x)
    print(f"object error after the fit: x {errors['x']:.4f}, w {errors['w']:.4f}")
