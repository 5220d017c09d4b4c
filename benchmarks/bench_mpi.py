"""MPI strong scaling of `mmip reconstruct`: solver time for K ranks on one dataset.

    python benchmarks/bench_mpi.py [--ranks 1 2] [--case phantom] [--iterations 20]

Prints the solver time (the history's time_s, start-up and file I/O excluded), the speed-up
over one rank, and the largest difference of the variables from the one-rank result.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from multimodal_ip.io import load_result


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    p.add_argument("--case", default="phantom")
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--solver", default="lbfgs")
    a = p.parse_args()
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if mpiexec is None:
        sys.exit("no mpiexec: pip install mpich mpi4py")
    cli = [sys.executable, "-m", "multimodal_ip.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "d.h5"
        subprocess.run([*cli, "simulate", a.case, "-o", str(data), "--noise", "0.03"], check=True, capture_output=True)
        rows, ref = [], None
        for k in a.ranks:
            out = Path(tmp) / f"r{k}.h5"
            # one FFT thread per core: K ranks on this machine share its cores
            env = dict(os.environ, MMIP_FFT_WORKERS=str(max(1, (os.cpu_count() or 1) // k)), OMP_NUM_THREADS="1")
            subprocess.run([mpiexec, "-n", str(k), *cli, "reconstruct", str(data), "-o", str(out), "--iterations",
                            str(a.iterations), "--solver", a.solver], check=True, capture_output=True, env=env)
            res = load_result(out)
            t = float(res["history"]["time_s"][-1])
            ref = ref or (t, res["variables"]["x"])
            rows.append((k, t, ref[0] / t, float(np.abs(res["variables"]["x"] - ref[1]).max())))
    print(f"| ranks | solver time (s), {a.iterations} {a.solver} iterations, {a.case} | speed-up | max |x - x_1rank| |")
    print("|---|---|---|---|")
    for k, t, s, d in rows:
        print(f"| {k} | {t:.2f} | {s:.2f} | {d:.1e} |")


if __name__ == "__main__":
    main()
