r"""
Photon-count likelihoods versus the paper's balanced least squares
==================================================================

For each seed, simulate a paper case with Poisson noise and reconstruct it jointly (and with ptychography
alone) three ways: the paper's losses with the balancing ``beta`` (``likelihood="balanced"``), photon-weighted
likelihoods (``likelihood="poisson"``: ptychography's variance-stabilised amplitude likelihood, weight
``4 * photons_per_unit``, and XRF's Poisson likelihood in counts: no ``beta``), and the same with the exact
Poisson likelihood for ptychography too. Prints mean ± std (ddof=1) of the error over ``[x; w]``.

    python examples/beyond_paper/likelihood.py --noise 0.1 --seeds 3
"""

# %%
import argparse
import json
import time
from pathlib import Path

import numpy as np
from mmip_paper import simulate

from multimodal_ip import solve
from multimodal_ip.io import build_problem
from multimodal_ip.report import markdown_table

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument("--case", default="phantom")
parser.add_argument("--n", type=int)
parser.add_argument("--probe-size", type=int)
parser.add_argument("--step", type=int)
parser.add_argument("--noise", type=float, default=0.1)
parser.add_argument("--seeds", type=int, default=3)
parser.add_argument("--iterations", type=int, default=100)
parser.add_argument("--solver", default="lbfgs")
parser.add_argument("-o", "--output", default="out/likelihood")
args = parser.parse_args()
outdir = Path(args.output)
outdir.mkdir(parents=True, exist_ok=True)
overrides = {k: v for k, v in {"n": args.n, "probe_size": args.probe_size, "step": args.step}.items() if v}

# %%
records = []
for seed in range(args.seeds):
    ds = simulate(args.case, seed=seed, noise=args.noise, **overrides)
    setups = {
        "balanced least squares (paper)": build_problem(ds),
        "photon-weighted (poisson)": build_problem(ds, likelihood="poisson"),
        "photon-weighted, exact Poisson ptychography": build_problem(
            ds, likelihood="poisson", term_options={"ptychography": {"loss": "poisson"}}),
    }
    for name, problem in setups.items():
        for label, p in ((f"{name}: joint", problem), (f"{name}: ptychography alone", problem.alone("ptychography"))):
            t0 = time.perf_counter()
            res = solve(p, p.start(), args.solver, maxiter=args.iterations)
            records.append({"seed": seed, "method": label, "error": p.relative_errors(res.x)["total"],
                            "weights": p.weights, "wall_s": time.perf_counter() - t0})
    print(f"seed {seed}: " + ", ".join(f"{r['method']} {r['error']:.4f}" for r in records[-6:]), flush=True)

# %%
rows = []
for method in dict.fromkeys(r["method"] for r in records):
    e = np.array([r["error"] for r in records if r["method"] == method])
    rows.append([method, f"{e.mean():.4f} ± {e.std(ddof=1) if len(e) > 1 else 0:.4f}"])
print(markdown_table(["method", f"error [x; w] at {args.noise:g} noise"], rows))
(outdir / "results.json").write_text(json.dumps(records, indent=2))
