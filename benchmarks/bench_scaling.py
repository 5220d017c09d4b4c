"""Cost and memory of the joint problem as the scan grows: one process per size, peak RSS of that process.

    python benchmarks/bench_scaling.py [--j 256 1024 4096 10000 40000] [--np 128] [--step 37]
                                       [--dtype float32] [--repeat 3] [--lbfgs 0] [--lbfgs-memory 10]
                                       [--json out.json] [--plot out.png]

Each size runs in a fresh process (so its peak RSS is its own): it builds the joint ptychography (amplitude,
streamed) + full-grid fluorescence problem on a square raster of J positions (step ``--step`` px, object side
n = (sqrt(J) - 1) step + Np), simulates noise-free data block by block, then times one joint objective + gradient
(best of ``--repeat`` after a warm-up) and the **FFT floor** in the same process: the forward and inverse FFT of
all J patterns (complex, the run's precision), in batches of at most 256 patterns (the same work as one batch,
without a 2 x J x Np x Np allocation that would not fit at large J), timed after the peak RSS is read.
``--lbfgs N`` then runs N L-BFGS iterations. ``--xrf scan``: the XRF measured at the scan positions (gathered windows)
instead of the full grid; the XRF term's share is its own objective + gradient over the joint one.
Reported: data bytes (diffraction + fluorescence, in the run's precision), peak RSS, their ratio.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from _timing import best, peak_rss_bytes


def build(j, npx, step, dtype, xrf="grid"):
    from mmip_fluorescence import FluorescenceMap, full_grid_positions
    from mmip_ptychography import fresnel_zone_plate_probe, ptychography_operator, raster_positions

    from multimodal_ip import DataTerm, JointProblem, Variable, VariableSpace, balanced_weights
    from multimodal_ip.losses import Amplitude, LeastSquares
    from multimodal_ip.operators import Linear

    side = int(round(np.sqrt(j)))
    n = (side - 1) * step + npx
    pos = raster_positions(n, npx, step_px=step, grid=(side, side))
    probe = fresnel_zone_plate_probe(npx)
    rng = np.random.default_rng(0)
    space = VariableSpace([Variable("x", (n, n), dtype), Variable("w", (1, n, n), dtype)])
    truth = np.empty(2 * n * n, dtype=dtype)  # filled in place: no float64 copies of an object-sized vector
    truth[: n * n] = 1 + 0.1 * rng.random(n * n, dtype=np.float32)
    truth[n * n :] = 0.1 * rng.random(n * n, dtype=np.float32)
    op = ptychography_operator(probe, pos, (n, n), 1, dtype=dtype)
    state = op.stream_prepare(truth)
    intens = np.empty(op.dimsd, dtype=dtype)
    for rows in op.blocks():
        intens[rows] = np.abs(op.stream_forward(state, rows)) ** 2
    del state
    kernel = (np.abs(probe) ** 2).astype(dtype)
    # XRF on the full grid (a map value at every object pixel) or measured at the scan positions (gathered windows)
    fpos = full_grid_positions((n, n), kernel.shape) if xrf == "grid" else np.asarray(pos, dtype=float)
    fop = FluorescenceMap(kernel, fpos, (n, n), 1, dtype=dtype, method="auto" if xrf == "grid" else "gather")
    counts = (fop @ truth[n * n :]).reshape(1, -1).astype(dtype)
    del truth  # the simulation's truth is not part of a reconstruction's memory
    terms = [DataTerm(op, intens, Amplitude(scale=1 / len(pos)), 1.0, ("x", "w"), "ptychography"),
             DataTerm(Linear(fop), counts, LeastSquares(), 1.0, ("w",), "fluorescence")]
    problem = JointProblem(space, terms)
    v0 = space.full(1.0).astype(dtype)
    problem = problem.with_weights(balanced_weights(problem, v0, "ptychography", 0.01))
    return problem, v0, n, intens.nbytes + counts.nbytes


def floor(j, npx, dtype):
    from multimodal_ip.backend import fft2, ifft2

    cdt = np.result_type(dtype, np.complex64)
    for s in range(0, j, 256):
        a = np.ones((min(256, j - s), npx, npx), cdt)
        ifft2(fft2(a))


def one(args):
    """Run one size in this process and print its row as JSON."""
    t0 = time.perf_counter()
    problem, v0, n, data_bytes = build(args.j[0], args.np, args.step, args.dtype, args.xrf)
    setup = time.perf_counter() - t0
    t_grad = best(lambda: problem.value_and_gradient(v0), args.repeat)
    t_xrf = best(lambda: problem.terms[1].linearize_input(problem._term_input(1, v0)), args.repeat)  # as joint
    row = {"J": args.j[0], "n": n, "Np": args.np, "dtype": args.dtype, "setup_s": setup, "joint_s": t_grad,
           "data_GB": data_bytes / 1e9, "xrf": args.xrf, "xrf_s": t_xrf, "xrf_share": t_xrf / t_grad}
    if args.lbfgs:
        from multimodal_ip import solve

        t1 = time.perf_counter()
        res = solve(problem, v0, "lbfgs", maxiter=args.lbfgs, method="native", gtol=0.0, memory=args.lbfgs_memory)
        row.update(lbfgs_iterations=len(res.history) - 1, lbfgs_s=time.perf_counter() - t1, status=res.status,
                   evaluations=int(getattr(res, "nfev", 0) or 0))
    row["peak_GB"] = peak_rss_bytes() / 1e9  # before the floor's batches
    row["floor_s"] = best(lambda: floor(args.j[0], args.np, args.dtype), args.repeat)
    row["ratio"] = t_grad / row["floor_s"]
    row["bound_GB"] = 1.5 * row["data_GB"] + 1.0
    print(json.dumps(row))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--j", type=int, nargs="+", default=[256, 1024, 4096, 10000, 40000])
    p.add_argument("--np", type=int, default=128)
    p.add_argument("--step", type=int, default=37)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--lbfgs", type=int, default=0)
    p.add_argument("--lbfgs-memory", type=int, default=10, help="L-BFGS correction pairs kept (its history)")
    p.add_argument("--xrf", default="grid", choices=("grid", "scan"),
                   help="XRF on the full grid (default) or measured at the scan positions")
    p.add_argument("--json", help="append the rows here (JSON lines)")
    p.add_argument("--plot", help="draw time/floor and peak memory against J from --json")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        return one(args)
    if args.plot:
        return plot(args.json, args.plot)
    print(f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print("| J | n | Np | dtype | FFT floor (s) | joint obj+grad (s) | / floor | data (GB) | peak RSS (GB) "
          "| 1.5 data + 1 GB | XRF | XRF share | L-BFGS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for j in args.j:
        cmd = [sys.executable, __file__, "--one", "--j", str(j), "--np", str(args.np), "--step", str(args.step),
               "--dtype", args.dtype, "--repeat", str(args.repeat), "--lbfgs", str(args.lbfgs),
               "--lbfgs-memory", str(args.lbfgs_memory), "--xrf", args.xrf]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode:
            print(f"| {j} | failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode} |")
            continue
        row = json.loads(out.stdout.strip().splitlines()[-1])
        lb = (f"{row['lbfgs_iterations']} it, {row['lbfgs_s']:.0f} s, {row['status']}" if "lbfgs_s" in row else "")
        print(f"| {row['J']} | {row['n']} | {row['Np']} | {row['dtype']} | {row['floor_s']:.3f} | {row['joint_s']:.3f} "
              f"| {row['ratio']:.2f} | {row['data_GB']:.3f} | {row['peak_GB']:.2f} | {row['bound_GB']:.2f} "
              f"| {row['xrf']} | {row['xrf_share']:.3f} | {lb} |",
              flush=True)
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    return 0


def plot(source, target):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latest = {}  # a size measured again replaces its earlier row
    for line in open(source):
        if line.strip():
            r = json.loads(line)
            latest[(r["J"], r["Np"], r["dtype"], "lbfgs_s" in r)] = r
    rows = list(latest.values())
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for (npx, dtype) in sorted({(r["Np"], r["dtype"]) for r in rows}):
        sel = sorted((r for r in rows if r["Np"] == npx and r["dtype"] == dtype and "lbfgs_s" not in r),
                     key=lambda r: r["J"])
        js = [r["J"] for r in sel]
        line = a.loglog(js, [r["joint_s"] for r in sel], "o-", label=f"joint obj+grad, Np={npx}, {dtype}")[0]
        a.loglog(js, [r["floor_s"] for r in sel], ":", color=line.get_color(), alpha=0.7)
        b.loglog(js, [r["peak_GB"] for r in sel], "o-", color=line.get_color(), label=f"peak RSS, Np={npx}, {dtype}")
        b.loglog(js, [r["bound_GB"] for r in sel], "--", color=line.get_color(), alpha=0.5,
                 label="1.5 x data + 1 GB (same colour)")
    a.set(xlabel="scan positions J", ylabel="seconds", title="one objective + gradient (dotted: FFT floor)")
    b.set(xlabel="scan positions J", ylabel="GB", title="peak memory of the process")
    a.legend(fontsize=7)
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
