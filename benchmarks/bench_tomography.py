"""Joint XRF + transmission tomography: one objective + gradient versus its interpolation passes alone.

    python benchmarks/bench_tomography.py [--n 256] [--angles 180] [--elements 3] [--repeat 5] [--dtype float64]
        [--line-attenuation off|on]
    python benchmarks/bench_tomography.py --peer astra --install [--venv DIR]   # once: astra-toolbox in its own venv
    python benchmarks/bench_tomography.py --peer astra --n 64 --angles 60 [--iterations 25,100] [--venv DIR]

The floor is what no gradient of these two terms can avoid: the sampling of the element maps along every ray
(one sparse product with Ne columns), its transpose (one product, Ne columns) for the fluorescence, and the line
integrals and their transpose (one column each) for the transmission; timed in the same process on the same
matrices. Best of ``--repeat``; the load average is printed with the result (this machine is shared).
The data come from the reconstruction's own model (``oversample=1``: only the speed is measured here); the emitted
lines' attenuation is off by default (``--line-attenuation on`` adds the paths to the detector: a second sampling
grid per detector, about 3x the samples).

``--peer astra``: the transmission alone, reconstructed by us and by astra-toolbox (CPU: FBP, and SIRT non-negative
and CGLS at the same iteration counts as our L-BFGS, strip projector) from the same noisy sinogram of a one-element
``tomo-absorbing`` slice simulated with the finer model (no inverse crime); relative error of the attenuation map and
wall time per reconstruction. First it checks that astra's forward projection of the truth in our geometry (angles
pi/2 - t, bins reversed; ``_astra_peer.py``) equals our own model's line integrals (noise-free), and stops if not.
astra is not a dependency: ``--install`` makes its own environment (``benchmarks/.astra-venv`` or ``--venv``) with
``astra-toolbox==2.5.0``; without it the command says so in one line (exit 2).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _timing import best, peak_rss_bytes
from mmip_tomography.simulate import simulate

from multimodal_ip.io import build_problem
from multimodal_ip.regularizers import NonNegative
from multimodal_ip.solvers import solve_staged

HERE = Path(__file__).resolve().parent
GEOMETRY_TOLERANCE = 0.02  # relative difference of the forward projections (interpolations differ: bilinear vs strip)


def install(venv: Path) -> None:
    """astra-toolbox's own environment (CPU algorithms; the wheel's CUDA part is unused without a GPU)."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "astra-toolbox==2.5.0"], check=True)


def _relative(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def peer_astra(args) -> int:
    """Transmission alone: ours (L-BFGS, non-negative) against astra's FBP, SIRT and CGLS on the same sinogram."""
    venv = Path(args.venv)
    if args.install:
        install(venv)
        return 0
    if not (venv / "bin" / "python").exists():
        print(f"bench_tomography.py: astra's environment {venv} does not exist: run with --peer astra --install first "
              f"(or --venv DIR)", file=sys.stderr)
        return 2
    iterations = [int(i) for i in args.iterations.split(",")]
    t0 = time.perf_counter()
    ds = simulate("tomo-absorbing", n=args.n, n_angles=args.angles, elements=["Fe"], noise=args.noise, seed=0,
                  line_attenuation="off", terms=("transmission",))
    print(f"simulation (finer model, transmission only) {time.perf_counter() - t0:.1f} s", flush=True)
    term = ds.terms["transmission"]
    truth = float(term.arrays["mu"][0]) * ds.truth["w"][0]
    t0 = time.perf_counter()
    problem = build_problem(ds, regularizers=[NonNegative(["w"])], dtype="float64")
    setup = time.perf_counter() - t0
    radon = problem.terms[0].operator.radon
    geom = problem.terms[0].operator.geom
    sinogram = -np.log(np.clip(np.asarray(term.arrays["data"], dtype=float), 1e-12, None))
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, angles=np.asarray(geom.angles), shape=np.array(geom.shape), bins=geom.bins, truth=truth,
                 sinogram=sinogram, iterations=np.array(iterations))
        subprocess.run([str(venv / "bin" / "python"), str(HERE / "_astra_peer.py"), str(src), str(dst)], check=True)
        peer = dict(np.load(dst))
    own = np.asarray(radon.forward(truth)).reshape(geom.sinogram_shape)
    checks = {p: _relative(peer[f"fp_{p}"], own) for p in ("line", "linear", "strip")}
    print(f"astra {peer['astra_version']} (CUDA {bool(peer['cuda'])}): forward projection of the truth against ours, "
          "relative difference " + ", ".join(f"{p} {v:.4f}" for p, v in checks.items()))
    if checks["strip"] > GEOMETRY_TOLERANCE:
        print(f"bench_tomography.py: astra's geometry does not match ours (strip {checks['strip']:.3f} > "
              f"{GEOMETRY_TOLERANCE})", file=sys.stderr)
        return 1
    rows = [("astra FBP (ram-lak)", "-", _relative(peer["FBP"], truth), float(peer["time_FBP"]))]
    for it in iterations:
        t0 = time.perf_counter()
        res = solve_staged(problem, problem.start(0.0), "lbfgs", maxiter=it)
        seconds = time.perf_counter() - t0
        mu_map = float(term.arrays["mu"][0]) * problem.space.unpack(res.x)["w"][0]
        rows.append(("ours, L-BFGS non-negative", str(it), _relative(mu_map, truth), seconds))
        rows += [(f"astra {a}", str(it), _relative(peer[f"{a.split()[0]}_{it}"], truth),
                  float(peer[f"time_{a.split()[0]}_{it}"])) for a in ("SIRT non-negative", "CGLS")]
    print(f"n={args.n} angles={args.angles} noise={args.noise:g}; our set-up (sparse matrices) {setup:.2f} s; "
          f"load {os.getloadavg()[0]:.1f}")
    print("| method | iterations | error of mu | time (s) |\n|---|---|---|---|")
    for name, count, err, sec in rows:
        print(f"| {name} | {count} | {err:.4f} | {sec:.3f} |")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--angles", type=int, default=180)
    parser.add_argument("--elements", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    parser.add_argument("--line-attenuation", default="off", choices=("off", "on"))
    parser.add_argument("--peer", choices=("astra",), help="compare the transmission alone with astra-toolbox")
    parser.add_argument("--install", action="store_true", help="with --peer astra: create astra's environment")
    parser.add_argument("--venv", default=str(HERE / ".astra-venv"), help="astra's environment")
    parser.add_argument("--iterations", default="25,100", help="with --peer: iteration counts (ours, SIRT, CGLS)")
    parser.add_argument("--noise", type=float, default=0.03, help="with --peer: relative Poisson noise")
    args = parser.parse_args()
    if args.peer:
        return peer_astra(args)
    names = ["Ca", "Fe", "Zn", "Cu", "Ni"][: args.elements]
    t0 = time.perf_counter()
    ds = simulate("tomo-absorbing", n=args.n, n_angles=args.angles, elements=names, noise=0.03, oversample=1,
                  line_attenuation=args.line_attenuation)
    problem = build_problem(ds, dtype=args.dtype, chunk_bytes=0)
    setup = time.perf_counter() - t0
    xrf, trans = (problem.terms[problem.term_names.index(n)].operator for n in ("xrf", "transmission"))
    v = problem.start(0.5)
    w = problem.space.unpack(v)["w"]
    total = best(lambda: problem.value_and_gradient(v), args.repeat)
    samples = xrf.sampling.forward(w)
    rays = trans.radon.forward(w[0])

    def floor():
        xrf.sampling.forward(w)
        xrf.sampling.adjoint(samples)
        trans.radon.forward(w[0])
        trans.radon.adjoint(rays, single=True)

    base = best(floor, args.repeat)
    peak = peak_rss_bytes() / 2**20
    load = os.getloadavg()[0]
    print(f"n={args.n} angles={args.angles} elements={args.elements} dtype={args.dtype}: samples "
          f"{samples.shape[:3]} ({xrf.sampling.nnz / 1e6:.1f} M weights), set-up {setup:.1f} s")
    print(f"objective+gradient {total:.3f} s, interpolation passes alone {base:.3f} s: ratio {total / base:.2f}; "
          f"peak RSS {peak:.2f} GB; load {load:.1f}")


if __name__ == "__main__":
    sys.exit(main())
