r"""
Physical coupling of the element maps: what assuming the paper's ones costs
==========================================================================

Simulate the multi-element case with Im z = sum_e a_e w_e where a_e are the X-ray attenuation coefficients of
Fe, Zn and Cu at 8.8 keV relative to Fe (xraylib), then reconstruct jointly with the coupling the file declares
and with the paper's a_e = 1, same solver and budget; mean ± std (ddof=1) over seeds.

    python examples/beyond_paper/coupling.py --seeds 3
"""

# %%
import argparse

import numpy as np
from mmip_paper import simulate

from multimodal_ip import solve
from multimodal_ip.io import build_problem
from multimodal_ip.report import markdown_table

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument("--n", type=int)
parser.add_argument("--probe-size", type=int)
parser.add_argument("--step", type=int)
parser.add_argument("--noise", type=float, default=0.03)
parser.add_argument("--energy-kev", type=float, default=8.8)
parser.add_argument("--elements", default="Fe,Zn,Cu")
parser.add_argument("--seeds", type=int, default=3)
parser.add_argument("--iterations", type=int, default=100)
args = parser.parse_args()
overrides = {k: v for k, v in {"n": args.n, "probe_size": args.probe_size, "step": args.step}.items() if v}
elements = args.elements.split(",")

# %%
errors = {}
for seed in range(args.seeds):
    ds = simulate("multi-element", seed=seed, noise=args.noise, n_elements=len(elements), elements=elements,
                  coupling=f"xraylib:{args.energy_kev}", **overrides)
    if seed == 0:
        coef = ds.terms["ptychography"].attrs["coupling"]
        print("coupling a_e from xraylib:", dict(zip(elements, np.round(coef, 4).tolist())))
    for name, problem in (("joint, physical coupling (from the file)", build_problem(ds)),
                          ("joint, the paper's a_e = 1", build_problem(ds, coupling="ones"))):
        res = solve(problem, problem.start(), "lbfgs", maxiter=args.iterations)
        errors.setdefault(name, []).append(problem.relative_errors(res.x))
    print(f"seed {seed}: " + ", ".join(f"{k} {v[-1]['total']:.4f}" for k, v in errors.items()), flush=True)

# %%
rows = []
for name, errs in errors.items():
    row = [name]
    for key in ("total", "x", "w"):
        e = np.array([r[key] for r in errs])
        row.append(f"{e.mean():.4f} ± {e.std(ddof=1) if len(e) > 1 else 0:.4f}")
    rows.append(row)
print(markdown_table(["method", "error [x; w]", "error x", "error w"], rows))
