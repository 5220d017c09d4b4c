"""XRF tomography run a block of angles at a time against the whole sinogram: time and memory of one objective +
gradient (least squares, self-absorbing model, two elements, float64; Linux).

    python benchmarks/bench_tomography_memory.py [--sizes 96:120 160:180] [--chunk-memory 16M] [--repeat 2]

Each setting runs in its own process: it builds the model, evaluates once (warm-up), then times the best of
``--repeat`` evaluations (forward and Jacobian adjoint of the residual) and prints the evaluation's traced peak
(tracemalloc), the peak RSS during it (``/proc/self/clear_refs`` resets the high-water mark first) and the
process's peak RSS (building the sampling matrices included).
"""

import argparse
import json
import subprocess
import sys


def one(n, k, chunk, repeat):
    import resource
    import time
    import tracemalloc

    import numpy as np
    from mmip_tomography import Geometry, XRFTomographyModel

    geom = Geometry.make((n, n), np.linspace(0, np.pi, k, endpoint=False))
    model = XRFTomographyModel(geom, [0.02, 0.01])
    if chunk:
        model.block = model.block_for_bytes(chunk)
    rng = np.random.default_rng(0)
    w = rng.random((2, n, n))
    data = model.forward(w * 0.9)

    def evaluation():
        y, jac = model._linearize(w)
        res = y - data
        return 0.5 * float(np.vdot(res, res)), jac.rmatvec(res.ravel())

    evaluation()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        evaluation()
        best = min(best, time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with open("/proc/self/clear_refs", "w") as fh:  # Linux: the peak RSS (VmHWM) starts again from the present
        fh.write("5")
    evaluation()
    with open("/proc/self/status") as fh:
        hwm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
    tracemalloc.start()
    evaluation()
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"n": n, "angles": k, "block": model.block, "time_s": best, "traced_bytes": traced, "rss_bytes": rss,
            "eval_rss_bytes": hwm,
            "angle_bytes": model.angle_bytes()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["96:120", "160:180"], help="n:angles")
    p.add_argument("--chunk-memory", default="16M")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        print(json.dumps(one(int(a.one[0]), int(a.one[1]), int(a.one[2]), a.repeat)))
        return 0
    from multimodal_ip.memory import parse_size

    chunk = parse_size(a.chunk_memory)
    print("| n | angles | setting | one objective + gradient (s) | its traced peak (MB) | peak RSS during it (MB) "
          "| peak RSS of the process (MB) |")
    print("|---|---|---|---|---|---|---|")
    for size in a.sizes:
        n, k = (int(v) for v in size.split(":"))
        for c in (0, chunk):
            out = subprocess.run([sys.executable, __file__, "--one", str(n), str(k), str(c), "--repeat",
                                  str(a.repeat)], capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            setting = "whole" if not c else f"blocks of {r['block']} angles ({a.chunk_memory})"
            print(f"| {n} | {k} | {setting} | {r['time_s']:.3f} | {r['traced_bytes'] / 1e6:.0f} | "
                  f"{r['eval_rss_bytes'] / 1e6:.0f} | {r['rss_bytes'] / 1e6:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
