r"""
Reproduce arXiv 2511.02153 with error bars
==========================================

For each case of the paper (docs/paper.md) and each noise level, simulate
``--seeds`` noise realisations, reconstruct jointly and with each modality alone
(same solver, same iteration budget), and report the relative error
:math:`\|v - v^*\| / \|v^*\|` as mean ± std over the seeds.

    python examples/paper/reproduce.py --cases phantom --noise 0 0.03 0.1 --seeds 5 -o out/paper
"""

# %%
# Imports and command line.
import argparse
import json
import time
from pathlib import Path

import numpy as np
from mmip_paper import simulate
from mmip_paper.report import phase_corrected_error

from multimodal_ip import solve
from multimodal_ip.config import parse_value
from multimodal_ip.io import build_problem
from multimodal_ip.regularizers import TotalVariation
from multimodal_ip.report import markdown_table, plot_histories

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument("--cases", nargs="+", default=["phantom"])
parser.add_argument("--noise", nargs="+", type=float, default=[0.0, 0.03, 0.10])
parser.add_argument("--seeds", type=int, default=5)
parser.add_argument("--solver", default="lbfgs")
parser.add_argument("--iterations", type=int, default=100)
parser.add_argument("--tv", type=float, default=0.0, help="isotropic TV weight on x and w (needed by admm)")
parser.add_argument("--solver-option", action="append", default=[], metavar="KEY=VALUE")
parser.add_argument("--dtype", choices=("float32", "float64"), default=None,
                    help="compute precision of every term and unknown (default: the library's)")
parser.add_argument("-o", "--output", default="out/paper")
args = parser.parse_args()
solver_options = {k: parse_value(v) for k, v in (o.split("=", 1) for o in args.solver_option)}
outdir = Path(args.output)
outdir.mkdir(parents=True, exist_ok=True)

# %%
# Run every case, noise level and seed; keep the final errors and one history per setting.
records = []
for case in args.cases:
    for level in args.noise:
        histories = {}
        for seed in range(args.seeds if level > 0 else 1):  # without noise every seed gives the same data
            ds = simulate(case, seed=seed, noise=level)
            joint = build_problem(ds, regularizers=[TotalVariation(["x", "w"], args.tv)] if args.tv else (),
                                  dtype=args.dtype)
            methods = {"joint": joint, **{f"{t} alone": joint.alone(t) for t in joint.term_names}}
            for method, problem in methods.items():
                t0 = time.perf_counter()
                res = solve(problem, problem.start(), args.solver, maxiter=args.iterations, **solver_options)
                h = res.history
                records.append({
                    "case": case, "noise": level, "seed": seed, "method": method, "wall_s": time.perf_counter() - t0,
                    "error_x": h["error_x"][-1], "error_w": h["error_w"][-1], "error_total": h["error_total"][-1],
                    "error_z_phase": phase_corrected_error(res.arrays["x"], res.arrays["w"], ds.truth["x"],
                                                           ds.truth["w"]),
                })
                if seed == 0:
                    histories[method] = h
            print(f"{case} noise={level:g} seed={seed}: " + ", ".join(
                f"{r['method']} {r['error_total']:.4f}" for r in records[-len(methods):]), flush=True)
        plot_histories(histories, outdir / f"convergence_{case}_{level:g}.png")

# %%
# Table: mean ± std over seeds, and the joint margin over the better separate inversion in units of std.
rows = []
for case in args.cases:
    for level in args.noise:
        sel = [r for r in records if r["case"] == case and r["noise"] == level]
        for method in dict.fromkeys(r["method"] for r in sel):
            m = [r for r in sel if r["method"] == method]
            e = np.array([r["error_total"] for r in m])
            z = np.array([r["error_z_phase"] for r in m])
            rows.append([case, f"{level:g}", method, f"{e.mean():.4f} ± {e.std(ddof=1) if len(e) > 1 else 0:.4f}",
                         f"{z.mean():.4f} ± {z.std(ddof=1) if len(z) > 1 else 0:.4f}",
                         f"{np.mean([r['wall_s'] for r in m]):.1f}"])
table = markdown_table(["case", "noise", "method", "error total (mean ± std)", "error z, best phase", "wall (s)"],
                       rows)
print(table)
(outdir / "results.md").write_text(
    f"solver {args.solver} {solver_options}, {args.iterations} iterations, TV {args.tv:g}, {args.seeds} seeds, "
    f"dtype {args.dtype or 'default'}\n\n"
    f"{table}\n")
(outdir / "results.json").write_text(json.dumps(records, indent=1))
