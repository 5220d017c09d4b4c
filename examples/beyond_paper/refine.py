r"""
Probe and position refinement, jointly and with ptychography alone
==================================================================

Simulate a paper case whose file holds a wrong probe (defocus off by ``--probe-error``) and the nominal raster
while the data were taken at jittered positions (``--jitter`` px), then reconstruct four ways with the same
solver and iteration budget: joint / ptychography alone, each with the calibration fixed at the file's
values or refined (``refine=("probe", "positions")``, frozen for the first ``--refine-after`` iterations).
Prints mean ± std (ddof=1) of the relative error over ``[x; w]`` over the seeds and draws the refined
positions and probe of the first seed.

    python examples/beyond_paper/refine.py --seeds 3 -o out/refine
"""

# %%
# Imports and command line.
import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
from mmip_paper import simulate
from mmip_ptychography import best_phase_error

from multimodal_ip.io import build_problem
from multimodal_ip.report import markdown_table
from multimodal_ip.solvers import solve_staged

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument("--case", default="phantom")
parser.add_argument("--n", type=int, help="object size override (smaller, faster runs)")
parser.add_argument("--probe-size", type=int)
parser.add_argument("--step", type=int)
parser.add_argument("--noise", type=float, default=0.03)
parser.add_argument("--probe-error", type=float, default=0.2)
parser.add_argument("--jitter", type=float, default=2.0)
parser.add_argument("--xrf-grid", choices=("full", "scan"), default="full")
parser.add_argument("--seeds", type=int, default=3)
parser.add_argument("--iterations", type=int, default=150)
parser.add_argument("--refine-after", type=int, default=50)
parser.add_argument("--solver", default="lbfgs")
parser.add_argument("--likelihood", choices=("balanced", "poisson"), default="balanced")
parser.add_argument("--methods", default="joint, fixed;joint, refined;ptychography alone, fixed;ptychography alone, "
                    "refined", help="which of the four methods to run, separated by ';'")
parser.add_argument("-o", "--output", default="out/refine")
args = parser.parse_args()
outdir = Path(args.output)
outdir.mkdir(parents=True, exist_ok=True)
warnings.simplefilter("ignore", UserWarning)  # a full-grid XRF shares only the probe: expected here


def rms_px(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


# %%
# Every seed: one dataset, four reconstructions.
overrides = {k: v for k, v in {"n": args.n, "probe_size": args.probe_size, "step": args.step}.items() if v}
records, first = [], {}
for seed in range(args.seeds):
    ds = simulate(args.case, seed=seed, noise=args.noise, probe_error=args.probe_error,
                  position_jitter_px=args.jitter, xrf_grid=args.xrf_grid, **overrides)
    fixed = build_problem(ds, likelihood=args.likelihood)
    refined = build_problem(ds, refine=("probe", "positions"), likelihood=args.likelihood)
    methods = {"joint, fixed": fixed, "joint, refined": refined,
               "ptychography alone, fixed": fixed.alone("ptychography"),
               "ptychography alone, refined": refined.alone("ptychography")}
    methods = {m: methods[m] for m in (m.strip() for m in args.methods.split(";"))}
    for method, problem in methods.items():
        t0 = time.perf_counter()
        res = solve_staged(problem, problem.start(), args.solver, maxiter=args.iterations,
                           refine_after=args.refine_after)
        a = res.arrays
        probe = a.get("probe", ds.terms["ptychography"].arrays["probe"])
        positions = a.get("positions", ds.terms["ptychography"].arrays["positions"])
        records.append({"seed": seed, "method": method, "error": problem.relative_errors(res.x)["total"],
                        "probe_error": best_phase_error(probe, ds.truth["probe"]),
                        "positions_rms_px": rms_px(positions, ds.truth["positions"]),
                        "wall_s": time.perf_counter() - t0})
        if seed == 0:  # the history's relative position error as an rms in px, per iteration
            scale = np.linalg.norm(ds.truth["positions"]) / np.sqrt(ds.truth["positions"].size)
            per_it = res.history["error_positions"] * scale if "error_positions" in res.history.columns else None
            first[method] = (probe, positions, per_it)
    print(f"seed {seed}: " + ", ".join(f"{r['method']} {r['error']:.4f}" for r in records[-len(methods):]),
          flush=True)
    if seed == 0:
        truth0 = (ds.truth["probe"], ds.truth["positions"], ds.terms["ptychography"].arrays["probe"],
                  ds.terms["ptychography"].arrays["positions"])

# %%
# Table: mean ± std over the seeds.
rows = []
for method in dict.fromkeys(r["method"] for r in records):
    sel = [r for r in records if r["method"] == method]

    def stat(key, sel=sel):
        v = np.array([r[key] for r in sel])
        return f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0:.4f}"

    rows.append([method, stat("error"), stat("probe_error"), stat("positions_rms_px"),
                 f"{np.mean([r['wall_s'] for r in sel]):.1f}"])
print(markdown_table(["method", "error [x; w]", "probe error", "positions rms (px)", "time (s)"], rows))
(outdir / "results.json").write_text(json.dumps(records, indent=2))

# %%
# Figure (seed 0): position errors (nominal -> joint refined as arrows; the truth is the origin), true, start and
# refined probe amplitude, and the positions' rms error per iteration.
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:  # pragma: no cover
    plt = None
refined_runs = [m for m in ("joint, refined", "ptychography alone, refined") if m in first]
if plt is not None and refined_runs:
    true_probe, true_pos, start_probe, nominal = truth0
    main_run = refined_runs[0]  # the joint refinement when it ran
    fig, ax = plt.subplots(1, 5, figsize=(20, 4))
    for label, pos, marker in (("file (nominal)", nominal, "x"),
                               *((m, first[m][1], "o" if m == "joint, refined" else ".") for m in refined_runs)):
        err = pos - true_pos
        ax[0].scatter(err[:, 1], err[:, 0], marker=marker, s=18,
                      label=f"{label}: rms {np.sqrt(np.mean(err ** 2)):.2f} px")
    start, end = nominal - true_pos, first[main_run][1] - true_pos  # the truth is the origin
    ax[0].quiver(start[:, 1], start[:, 0], end[:, 1] - start[:, 1], end[:, 0] - start[:, 0], angles="xy",
                 scale_units="xy", scale=1, width=0.003, color="0.4")
    ax[0].axhline(0, color="k", lw=0.5)
    ax[0].axvline(0, color="k", lw=0.5)
    ax[0].set_aspect("equal")
    ax[0].set_xlabel("column error (px)")
    ax[0].set_ylabel("row error (px)")
    ax[0].set_title("position - true position")
    ax[0].legend(fontsize=7)
    for i, (title, p) in enumerate((("true probe", true_probe), ("file probe", start_probe),
                                    (main_run, first[main_run][0]))):
        ax[i + 1].imshow(np.abs(p), cmap="magma")
        ax[i + 1].set_title(f"|P|: {title}")
        ax[i + 1].axis("off")
    for method in refined_runs:
        if first[method][2] is not None:
            ax[4].plot(first[method][2], label=method)
    ax[4].axvline(args.refine_after, color="k", lw=0.5, ls="--")
    ax[4].set_xlabel("iteration")
    ax[4].set_ylabel("positions rms (px)")
    ax[4].set_title("positions error per iteration (seed 0)")
    ax[4].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(outdir / "refinement.png", dpi=110)
    print(f"wrote {outdir}/refinement.png, results.json")
