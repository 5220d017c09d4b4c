r"""
Joint XRF + transmission tomography against each alone, over seeds, noise levels and absorption strengths
========================================================================================================

For every case, noise level and seed: simulate a slice (``mmip_tomography.simulate``), then reconstruct the element
maps ``w`` five ways with the same solver, iterations, non-negativity and total variation (``--tv``):

* ``joint``: fluorescence (self-absorption from ``w``) + transmission, gradient-norm balanced (the dataset's ``c``);
* ``xrf, self-absorbing``: the fluorescence alone, its attenuation computed from its own ``w``;
* ``xrf, oracle attenuation``: the fluorescence alone with the true attenuation map (not available in practice);
* ``xrf, attenuation ignored``: the fluorescence alone, no self-absorption in the model;
* ``transmission alone``: sees only :math:`\mu = \sum_e \mu_e w_e` (one map), so it cannot separate two elements;
* ``joint, lines not modelled`` and ``xrf, lines not modelled`` (data with the emitted lines' attenuation only): the
  ablation, the model without the emitted lines' attenuation on the way to the detector.

The data come from a finer model than the reconstruction's (``--oversample``, default 2: maps 2x finer, rays every
1/4 pixel, detector bins integrated over their width; ``mmip_tomography.simulate``), with the emitted lines attenuated
on the way to a detector at 90 degrees (``--line-attenuation on``, the default).

Prints and writes (``table.md``, ``records.json``) mean ± std (ddof=1) of the relative error of ``w`` per case, noise
and method, an absorption sweep, and a figure of the first seed's maps (``maps.png``). docs/tomography.md is this
script's output at its defaults:

    python examples/tomography/study.py -o out/tomography
"""

# %%
# Imports and command line.
import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from mmip_tomography.simulate import simulate

from multimodal_ip.io import build_problem
from multimodal_ip.regularizers import NonNegative, TotalVariation
from multimodal_ip.report import markdown_table
from multimodal_ip.solvers import solve_staged

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument("--cases", default="tomo-phantom,tomo-absorbing")
parser.add_argument("--n", type=int, help="slice size override (smaller, faster runs)")
parser.add_argument("--angles", type=int, help="number of angles override")
parser.add_argument("--noise", default="0.01,0.03", help="comma-separated relative noise levels")
parser.add_argument("--absorption", default="0.3,1,6", help="sweep of the absorption strength (tomo-absorbing; "
                    "its default, 3, is in the main table)")
parser.add_argument("--sweep-noise", type=float, default=0.03)
parser.add_argument("--seeds", type=int, default=5)
parser.add_argument("--iterations", type=int, default=100)
parser.add_argument("--tv", type=float, default=0.3, help="total-variation strength on w (0: none)")
parser.add_argument("--start", type=float, default=1.0, help="flat start value of w for every method")
parser.add_argument("--line-attenuation", default="on", choices=("on", "off"), help="in the simulated data")
parser.add_argument("--balance-c", type=float, help="balance constant of the joint (default: the file's, 0.1)")
parser.add_argument("--oversample", type=int, default=2, help="data from a model this many times finer (1: the "
                    "reconstruction's own model, the inverse crime)")
parser.add_argument("-o", "--output", default="out/tomography")
args = parser.parse_args()
outdir = Path(args.output)
outdir.mkdir(parents=True, exist_ok=True)
METHODS = ("joint", "xrf, self-absorbing", "xrf, oracle attenuation", "xrf, attenuation ignored",
           "transmission alone", "joint, lines not modelled", "xrf, lines not modelled")


def problems(ds):
    """The five problems of one dataset (see the module docstring)."""
    nonneg = [NonNegative(["w"])] + ([TotalVariation(["w"], weight=args.tv)] if args.tv else [])
    truth_mu = np.tensordot(ds.terms["xrf"].arrays["mu"], ds.truth["w"], 1)
    xrf = ds.terms["xrf"]
    oracle_arrays = dict(xrf.arrays, attenuation_map=truth_mu)
    if "mu_line" in xrf.arrays:
        oracle_arrays["line_attenuation_map"] = np.tensordot(xrf.arrays["mu_line"], ds.truth["w"], 1)
    oracle = replace(ds, terms={"xrf": replace(xrf, arrays=oracle_arrays)})
    off = {"xrf": {"line_attenuation": "off"}}
    ablation = {
        "joint, lines not modelled": build_problem(ds, regularizers=nonneg, term_options=off, balance_c=args.balance_c),
        "xrf, lines not modelled": build_problem(ds, terms=["xrf"], regularizers=nonneg, term_options=off),
    } if "mu_line" in xrf.arrays else {}
    return ablation | {
        "joint": build_problem(ds, regularizers=nonneg, balance_c=args.balance_c),
        "xrf, self-absorbing": build_problem(ds, terms=["xrf"], regularizers=nonneg),
        "xrf, oracle attenuation": build_problem(oracle, terms=["xrf"], regularizers=nonneg,
                                                 term_options={"xrf": {"attenuation": "map"}}),
        "xrf, attenuation ignored": build_problem(ds, terms=["xrf"], regularizers=nonneg,
                                                  term_options={"xrf": {"attenuation": "none"}}),
        "transmission alone": build_problem(ds, terms=["transmission"], regularizers=nonneg),
    }


def run(case, noise, seed, **overrides):
    ds = simulate(case, seed=seed, noise=noise, line_attenuation=args.line_attenuation, oversample=args.oversample,
                  **overrides)
    out, maps = [], {}
    for method, problem in problems(ds).items():
        t0 = time.perf_counter()
        res = solve_staged(problem, problem.start(args.start), "lbfgs", maxiter=args.iterations)
        out.append({"case": case, "noise": noise, "seed": seed, "method": method, "status": res.status,
                    "error": problem.relative_errors(res.x)["w"], "wall_s": time.perf_counter() - t0, **overrides})
        maps[method] = res.arrays["w"]
    return out, maps, ds


def stats(records, key):
    groups: dict = {}
    for r in records:
        groups.setdefault(tuple(r[k] for k in key), []).append(r["error"])
    return {k: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v)) for k, v in groups.items()}


# %%
# Every case, noise level and seed: five reconstructions.
size = {k: v for k, v in {"n": args.n, "n_angles": args.angles}.items() if v}
records, first = [], {}
for case in filter(None, args.cases.split(",")):
    for noise in (float(s) for s in args.noise.split(",")):
        for seed in range(args.seeds):
            out, maps, ds = run(case, noise, seed, **size)
            records += out
            if seed == 0 and noise == args.sweep_noise:
                first[case] = (maps, ds.truth["w"])
            print(f"{case} noise {noise:g} seed {seed}: " + ", ".join(f"{r['method']} {r['error']:.4f}" for r in out),
                  flush=True)

# %%
# Absorption sweep: tomo-absorbing at one noise level, the thickest ray's attenuation exponent varied.
sweep = []
for absorption in (float(s) for s in args.absorption.split(",") if s):
    for seed in range(args.seeds):
        out, _, _ = run("tomo-absorbing", args.sweep_noise, seed, absorption=absorption, **size)
        sweep += out
    print(f"absorption {absorption:g}: done", flush=True)

# %%
# Tables: mean ± std over the seeds.
main = stats(records, ("case", "noise", "method"))
rows = []
for case in filter(None, args.cases.split(",")):
    for noise in (float(s) for s in args.noise.split(",")):
        rows.append([case, f"{noise:g}", *(f"{main[(case, noise, m)][0]:.4f} ± {main[(case, noise, m)][1]:.4f}"
                                           if (case, noise, m) in main else "–" for m in METHODS)])
table = markdown_table(["case", "noise", *METHODS], rows) if rows else ""
sw = stats(sweep, ("absorption", "method"))
absorptions = sorted({r["absorption"] for r in sweep})
sweep_table = markdown_table(["absorption", *METHODS],
                             [[f"{a:g}", *(f"{sw[(a, m)][0]:.4f} ± {sw[(a, m)][1]:.4f}" if (a, m) in sw else "–"
                                           for m in METHODS)]
                              for a in absorptions]) if sweep else ""
stalled = sorted({(r["case"], r["method"], r["status"]) for r in records + sweep if r["status"] not in
                  ("converged", "maxiter")})
text = (f"relative error of w, mean ± std over {args.seeds} seed(s), L-BFGS {args.iterations} iterations, "
        f"non-negative, TV {args.tv:g}, start w = {args.start:g}; data: oversample {args.oversample}, emitted "
        f"lines' attenuation {args.line_attenuation}\n\n{table}\n\n"
        f"absorption sweep (tomo-absorbing, noise {args.sweep_noise:g}):\n\n{sweep_table}\n"
        + (f"\nruns that ended otherwise than converged/maxiter: {stalled}\n" if stalled else ""))
print(text)
(outdir / "table.md").write_text(text)
(outdir / "records.json").write_text(json.dumps(records + sweep, indent=1))

# %%
# Figure: the first seed's maps of every method, per case.
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:  # pragma: no cover
    plt = None
if plt is not None and first:
    for case, (maps, truth) in first.items():
        ne, shown = truth.shape[0], [m for m in METHODS if m in maps]
        fig, axes = plt.subplots(ne, len(shown) + 1, figsize=(2.2 * (len(shown) + 1), 2.3 * ne), squeeze=False)
        for e in range(ne):
            vmax = float(truth[e].max())
            for ax, (label, img) in zip(axes[e], [("truth", truth[e])] + [(m, maps[m][e]) for m in shown]):
                ax.imshow(img, cmap="viridis", vmin=0, vmax=vmax)
                ax.set_title(f"{label}: w[{e}]", fontsize=7)
                ax.axis("off")
        fig.tight_layout()
        fig.savefig(outdir / f"maps_{case}.png", dpi=90)
        plt.close(fig)
    print(f"wrote {outdir}/table.md, records.json, maps_*.png")
