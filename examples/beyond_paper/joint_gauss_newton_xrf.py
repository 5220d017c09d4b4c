r"""
Joint Gauss-Newton on the run's own problem: ptychography and XRF, object and scan positions
===========================================================================================

An experiment (not part of the solvers): where does the minimiser of the *joint* objective that ``mmip reconstruct``
minimises (the same terms, losses and balanced weights, built from the data file and the result's configuration)
put the scan positions? From a run's result (or, diagnostic, from the truth in the data file) it takes ``K``
damped Gauss-Newton steps on the object (``x``, ``w``) and all the positions together, the probe known:
:class:`multimodal_ip.solvers.gauss_newton.GaussNewton` on the problem's Gauss-Newton operator
:math:`\sum_t w_t J_t^T M_t J_t` (the XRF's block included), CG preconditioned by the terms' block-diagonal
curvature (the positions' exact 2 x 2 blocks), Levenberg-Marquardt damping. Unlike ``joint_gauss_newton.py`` (the
ptychography's misfit alone, hand-built operator), nothing is re-derived: ``--terms ptychography`` drops the XRF
from the same problem. The truth is used only to score each step: the rms position error per position after
removing the common shift, and the object's relative errors.

    mmip simulate cameraman --noise 0.03 --seed 4 --position-jitter 2 --step 10 -o d4.h5
    mmip reconstruct d4.h5 -o r4.h5 --refine positions --refine-after 50 --iterations 400
    python examples/beyond_paper/joint_gauss_newton_xrf.py --data d4.h5 --result r4.h5 --steps 10 --cg 200
    python examples/beyond_paper/joint_gauss_newton_xrf.py --data d4.h5 --result r4.h5 --from-truth --steps 10
"""

# %%
# Imports and command line.
import argparse
import json
import time

import h5py
import numpy as np

from multimodal_ip.cli.common import build
from multimodal_ip.config import DEFAULTS
from multimodal_ip.solvers.gauss_newton import GaussNewton
from multimodal_ip.start import read_start, start_point

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument("--data", required=True, help="the simulated data set (with /truth/positions)")
parser.add_argument("--result", required=True, help="the run's result: its configuration, and the start point")
parser.add_argument("--steps", type=int, default=5, help="joint Gauss-Newton steps")
parser.add_argument("--cg", type=int, default=200, help="CG iterations per step (cap)")
parser.add_argument("--rtol", type=float, default=1e-3, help="CG relative residual at which a step's solve stops")
parser.add_argument("--damping", type=float, default=1e-3,
                    help="initial Levenberg-Marquardt lambda, relative to the curvature along the gradient")
parser.add_argument("--terms", help="comma-separated data terms (default: the run's; 'ptychography': no XRF)")
parser.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                    help="precision of the problem (default float64: misfit differences of 1e-6 resolved)")
parser.add_argument("--from-truth", action="store_true",
                    help="diagnostic: start at the true object and positions (where the estimator's minimum lies)")
args = parser.parse_args()

# %%
# The run's problem: its configuration (terms, likelihood, weights, refined unknowns) read back from the result.
with h5py.File(args.result, "r") as f:
    saved = json.loads(f["results"].attrs["config"])
cfg = dict(DEFAULTS, **{k: v for k, v in saved.items() if k in DEFAULTS})
cfg.update(dtype=args.dtype, start=None, freeze=[], stopping={"rule": "iterations"})
if args.terms:
    cfg["terms"] = args.terms.split(",")
ds, problem = build(args.data, cfg)
source = "truth" if args.from_truth else args.result
x0 = start_point(problem, read_start(source, problem.space, dataset=ds, coupling=cfg.get("coupling")))
truth = {k: np.asarray(v, dtype=float) for k, v in ds.truth.items()}
names = problem.space.names
pos_name = next(n for n in names if n.endswith("positions"))


def score(x):
    """rms position error per position (common shift removed), px; relative errors of x and w."""
    arrays = problem.space.unpack(x)
    e = np.asarray(arrays[pos_name], dtype=float).reshape(-1, 2) - truth["positions"].reshape(-1, 2)
    e -= e.mean(axis=0)
    err = problem.relative_errors(x)
    return float(np.sqrt(np.mean(np.sum(e**2, axis=1)))), err.get("x", np.nan), err.get("w", np.nan)


def row(k, x, objectives, lam, products, seconds):
    rms, ex, ew = score(x)
    terms = " | ".join(f"{objectives.get(t, 0.0):.9g}" for t in problem.term_names)
    print(f"| {k} | {sum(objectives.values()):.9g} | {terms} | {rms:.4f} | {ex:.4f} | {ew:.4f} | "
          f"{'' if lam is None else f'{lam:.1e}'} | {products} | {seconds:.1f} |", flush=True)


# %%
# The steps, scored after each. The objective is the run's (weighted sum of the terms' losses).
print(f"{source}: terms {', '.join(problem.term_names)} (weights "
      f"{', '.join(f'{k} {v:.4g}' for k, v in problem.weights.items())}), variables {', '.join(names)}, "
      f"{args.dtype}, CG cap {args.cg}, rtol {args.rtol:g}")
print(f"| step | objective | {' | '.join(problem.term_names)} | rms position error (px) | error x | error w | "
      "lambda | Gauss-Newton products | seconds |")
print("|---|---|" + "---|" * len(problem.term_names) + "---|---|---|---|---|---|")
t0 = time.perf_counter()
row(0, x0, problem.objectives(x0), None, 0, 0.0)


class _Counted:
    """A Gauss-Newton operator that counts its products (CG iterations and the solver's model evaluations)."""

    count = 0

    def __init__(self, op):
        self.op = op

    def matvec(self, v):
        _Counted.count += 1
        return self.op.matvec(v)


class CountedGaussNewton(GaussNewton):
    """:class:`GaussNewton` whose operator counts its products."""

    def _hessian(self, lam):
        return _Counted(super()._hessian(lam))


def callback(state):
    row(state.iteration, state.x, state.solver.lin.objectives, state.solver.lam, _Counted.count,
        time.perf_counter() - t0)


solver = CountedGaussNewton(problem, inner_iterations=args.cg, inner_rtol=args.rtol, damping=args.damping,
                     precondition="curvature", maxiter=args.steps, gtol=0.0, callback=callback)
result = solver.solve(x0)
print(f"status {result.status}: {result.message}")
