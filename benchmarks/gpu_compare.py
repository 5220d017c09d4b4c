"""Reconstruct one simulated file with numpy and with another backend; report how far the final variables differ.

    python benchmarks/gpu_compare.py --backend cupy [--iterations 30] [--out DIR]

Runs ``mmip simulate phantom`` (n=128, Np=32, step 8, 3 % noise) and ``mmip reconstruct`` with ``--backend numpy``
and ``--backend <backend>`` in float64 and float32. Tolerances, relative max-norm over every variable:
float64 1e-6 (FFT libraries differ in the last bits; 30 L-BFGS iterations amplify that by a few orders at most),
float32 2e-2 (single-precision round-off, 1e-7, amplified the same way; a wrong code path gives O(1)).
Exit 1 when a tolerance is exceeded.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from multimodal_ip.cli import main as mmip
from multimodal_ip.io import load_result

TOLERANCE = {"float64": 1e-6, "float32": 2e-2}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--backend", default="cupy", choices=("numpy", "cupy"))
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    out = Path(a.out or tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)
    data = out / "phantom.h5"
    assert mmip(["simulate", "phantom", "-o", str(data), "--n", "128", "--probe-size", "32", "--step", "8",
                 "--noise", "0.03"]) == 0
    print("| dtype | backend | iterations | final objective | max relative difference vs numpy | tolerance | ok |")
    print("|---|---|---|---|---|---|---|")
    ok = True
    for dtype in ("float64", "float32"):
        results = {}
        for backend in ("numpy", a.backend):
            path = out / f"r-{backend}-{dtype}.h5"
            code = mmip(["reconstruct", str(data), "-o", str(path), "--backend", backend, "--dtype", dtype,
                         "--iterations", str(a.iterations), "--checkpoint-every", "0", "--accept-stall"])
            if code != 0:
                print(f"| {dtype} | {backend} | - | - | run failed (exit {code}) | - | no |")
                ok = False
                break
            results[backend] = load_result(path)
        else:
            ref, got = results["numpy"], results[a.backend]
            diff = max(float(np.max(np.abs(got["variables"][k] - ref["variables"][k])))
                       / max(float(np.max(np.abs(ref["variables"][k]))), 1e-300) for k in ref["variables"])
            passed = diff <= TOLERANCE[dtype]
            ok &= passed
            print(f"| {dtype} | {a.backend} | {len(got['history']['objective']) - 1} | "
                  f"{got['history']['objective'][-1]:.6g} | {diff:.3g} | {TOLERANCE[dtype]:g} | "
                  f"{'yes' if passed else 'NO'} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
