r"""
A global scan drift: can an affine model of the positions recover it? (diagnostic for position refinement)
=========================================================================================================

The true positions are the nominal raster compressed by a linear ramp of ``--ramp`` px across the scan (columns
move inward by up to ramp / 2 at each edge) plus uniform jitter of ``--jitter`` px; the data are simulated with
band-limited windows and Poisson noise. The positions are then modelled as an affine map of the nominal raster,
:math:`p_j = n_j + A (n_j - c) + t` (six parameters, gradients by the chain rule from the problem's position
gradient), and fitted two ways with scipy's L-BFGS-B:

* ``oracle``: the true object is given, the six parameters are the only unknowns;
* ``joint``: the object is unknown: ``--stage1`` L-BFGS iterations with the positions fixed, then object and affine
  parameters together for ``--iterations``.

    python examples/beyond_paper/drift.py --case cameraman --mode oracle
    python examples/beyond_paper/drift.py --case cameraman --mode joint --stage1 50 --iterations 100
"""

# %%
# Imports and command line.
import argparse
import warnings
from dataclasses import replace

import numpy as np
import scipy.optimize as so
from mmip_paper import band_limited_spectra, poisson_noise, simulate

from multimodal_ip.io import build_problem
from multimodal_ip.solvers import solve

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
truth = nominal + rng.uniform(-args.jitter, args.jitter, nominal.shape)
truth[:, 1] += args.ramp / 2 - args.ramp * (nominal[:, 1] - lo) / max(hi - lo, 1)
truth = np.clip(truth, 0, n - npx)
z = ds.truth["x"] + 1j * ds.truth["w"][0]
data, photons = poisson_noise(np.abs(band_limited_spectra(z, td.arrays["probe"], truth)) ** 2, args.noise,
                              np.random.default_rng([args.seed, 8]))
ds.terms["ptychography"] = replace(td, arrays=dict(td.arrays, data=data),
                                   attrs=dict(td.attrs, photons_per_unit=photons))
ds.truth["positions"] = truth
center = nominal.mean(axis=0)
slope = -args.ramp / max(hi - lo, 1)


def rms(p):
    return float(np.sqrt(np.mean((p - truth) ** 2)))


def positions(theta):
    """The affine model: theta = [A00, A01, A10, A11, t0, t1]."""
    return nominal + (nominal - center) @ theta[:4].reshape(2, 2).T + theta[4:]


def chain(gp):
    """d f / d theta from the gradient in the positions."""
    return np.concatenate([(gp.T @ (nominal - center)).ravel(), gp.sum(axis=0)])


# %%
# Fit.
terms = ["ptychography"] if args.mode == "oracle" else None
problem = build_problem(ds, terms=terms, refine=("positions",))
sl = problem.space.slice("positions")
if args.mode == "oracle":
    arrays = problem.space.unpack(problem.start())
    v0 = problem.space.pack({**arrays, "x": ds.truth["x"], "w": ds.truth["w"], "positions": nominal})
    fixed = problem.with_frozen(("x", "w"))

    def fun(u):
        v = v0.copy()
        v[sl] = positions(u).ravel()
        f, g = fixed.value_and_gradient(v)
        return f, chain(g[sl].reshape(-1, 2))

    u0 = np.zeros(6)
else:
    v0 = solve(problem.with_frozen(("positions",)), problem.start(), "lbfgs", maxiter=args.stage1).x

    def fun(u):
        v = np.concatenate([u[: sl.start], positions(u[-6:]).ravel(), u[sl.start : -6]])
        f, g = problem.value_and_gradient(v)
        return f, np.concatenate([g[: sl.start], g[sl.stop :], chain(g[sl].reshape(-1, 2))])

    u0 = np.concatenate([v0[: sl.start], v0[sl.stop :], np.zeros(6)])
res = so.minimize(fun, u0, jac=True, method="L-BFGS-B", options={"maxiter": args.iterations, "ftol": 0, "gtol": 0})
theta = res.x[-6:]
ideal = np.array([0, 0, 0, slope, 0, args.ramp / 2 - args.ramp * (center[1] - lo) / max(hi - lo, 1)])
print(f"{args.case}, {args.mode}: nominal rms {rms(nominal):.3f} px, the true affine map "
      f"{rms(positions(ideal)):.3f} px (the jitter); fitted after {res.nit} iterations: column scale "
      f"{theta[3]:+.4f} (true {slope:+.4f}), rms {rms(positions(theta)):.3f} px")
if args.mode == "joint":
    v = np.concatenate([res.x[: sl.start], positions(theta).ravel(), res.x[sl.start : -6]])
    print(f"object error after the fit {problem.relative_errors(v)['total']:.4f} (after stage 1 "
          f"{problem.relative_errors(v0)['total']:.4f})")
