"""Time of one joint objective + gradient versus the batched-FFT floor, and peak memory.

    python benchmarks/bench_gradient.py [--sizes small medium large] [--repeat 3] [--dtype float64]
                                        [--backend numpy|cupy] [--lbfgs 100] [--json out.json]

The floor is the forward + inverse FFT of all J patterns (J x Np x Np complex), which any
gradient of the ptychography term must do; it is timed in the same run, on the same backend.
``--lbfgs N`` also times N L-BFGS iterations of the joint problem and counts the bytes copied between host and
device inside the loop (cupy: wrapped ``asnumpy``/``get``/``asarray`` of host arrays; scalars excluded).
"""

import argparse
import time

import numpy as np
import scipy.fft
from mmip_fluorescence import FluorescenceMap, full_grid_positions
from mmip_ptychography import FarField, fresnel_zone_plate_probe, ptychography_operator, raster_positions

from multimodal_ip import DataTerm, JointProblem, Variable, VariableSpace, balanced_weights
from multimodal_ip.losses import Amplitude, LeastSquares
from multimodal_ip.operators import Linear

SIZES = {  # n, Np, J (square raster)
    "tiny": (96, 32, 16),
    "small": (334, 64, 100),
    "medium": (1306, 128, 1024),
    "large": (4100, 128, 10000),
}


def build(n, npx, j, dtype, xp=np):
    side = int(round(np.sqrt(j)))
    step = (n - npx) // (side - 1)
    pos = raster_positions(n, npx, step_px=step, grid=(side, side))
    probe = fresnel_zone_plate_probe(npx)
    rng = np.random.default_rng(0)
    x, w = 1 + rng.random((n, n)), 1 + rng.random((1, n, n))
    space = VariableSpace([Variable("x", (n, n), dtype), Variable("w", (1, n, n), dtype)])
    op = ptychography_operator(xp.asarray(probe), pos, (n, n), 1, dtype=dtype)
    intens = (np.abs(FarField(probe, pos, (n, n)) @ (x + 1j * w[0])) ** 2).astype(dtype)
    kernel = np.abs(probe) ** 2
    xrf_pos = full_grid_positions((n, n), kernel.shape) if n <= 1400 else pos
    counts = (FluorescenceMap(kernel, xrf_pos, (n, n), 1, dtype=dtype) @ w.ravel()).reshape(1, -1).astype(dtype)
    fop = FluorescenceMap(xp.asarray(kernel), xrf_pos, (n, n), 1, dtype=dtype)
    terms = [DataTerm(op, xp.asarray(intens), Amplitude(scale=1 / len(pos)), 1.0, ("x", "w"), "ptychography"),
             DataTerm(Linear(fop), xp.asarray(counts), LeastSquares(), 1.0, ("w",), "fluorescence")]
    problem = JointProblem(space, terms)
    v0 = xp.asarray(space.full(1.0))
    problem = problem.with_weights(balanced_weights(problem, v0, "ptychography", 0.01))
    return problem, v0, len(pos), fop.method


def _sync(xp):
    if xp is not np:
        xp.cuda.Device().synchronize()


def best(fn, repeat, xp=np):
    fn()
    _sync(xp)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync(xp)
        times.append(time.perf_counter() - t0)
    return min(times)


class TransferCounter:
    """Counts bytes moved host<->device through cupy's public copy functions while active (numpy: nothing)."""

    def __init__(self, xp):
        self.xp, self.bytes, self.calls, self._saved = xp, 0, 0, []

    def __enter__(self):
        if self.xp is np:
            return self
        xp = self.xp

        def wrap(owner, name, size_of):
            real = getattr(owner, name)

            def counted(*a, **k):
                nbytes = size_of(*a)
                if nbytes > 64:  # scalars (objective values, step lengths) are expected
                    self.bytes += nbytes
                    self.calls += 1
                return real(*a, **k)

            self._saved.append((owner, name, real))
            setattr(owner, name, counted)

        wrap(xp, "asnumpy", lambda a, *r: getattr(a, "nbytes", 0))
        wrap(xp.ndarray, "get", lambda self_, *r: self_.nbytes)
        wrap(xp, "asarray", lambda a, *r: a.nbytes if isinstance(a, np.ndarray) else 0)
        return self

    def __exit__(self, *exc):
        for owner, name, real in self._saved:
            setattr(owner, name, real)


def time_lbfgs(problem, v0, iterations, xp):
    """Wall time of ``iterations`` native L-BFGS iterations and the host<->device bytes inside the loop."""
    from multimodal_ip import solve

    _sync(xp)
    with TransferCounter(xp) as counter:
        t0 = time.perf_counter()
        res = solve(problem, v0, "lbfgs", maxiter=iterations, method="native", gtol=0.0)
        _sync(xp)
        wall = time.perf_counter() - t0
    return wall, len(res.history) - 1, counter.bytes, counter.calls, res.status


def main():
    import json

    from multimodal_ip.backend import fft2, ifft2

    p = argparse.ArgumentParser()
    p.add_argument("--sizes", nargs="+", default=["small", "medium"], choices=list(SIZES))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    p.add_argument("--backend", default="numpy", choices=("numpy", "cupy"))
    p.add_argument("--lbfgs", type=int, default=0, help="also time this many L-BFGS iterations per size")
    p.add_argument("--json", help="write the rows as JSON here too")
    a = p.parse_args()
    if a.backend == "cupy":
        import cupy as xp
    else:
        xp = np
    cdtype = np.result_type(a.dtype, np.complex64)
    rows = []
    for size in a.sizes:
        n, npx, j = SIZES[size]
        if xp is not np:
            xp.get_default_memory_pool().free_all_blocks()
        problem, v0, j, xrf_method = build(n, npx, j, a.dtype, xp)
        batch = xp.asarray((np.ones((j, npx, npx)) + 0j).astype(cdtype))

        def floor(b=batch):
            if xp is np:
                scipy.fft.ifft2(scipy.fft.fft2(b, workers=-1, norm="ortho"), workers=-1, norm="ortho")
            else:
                ifft2(fft2(b))

        t_floor = best(floor, a.repeat, xp)
        ptycho = problem.with_terms(["ptychography"])
        t_grad = best(lambda p=problem, v=v0: p.value_and_gradient(v), a.repeat, xp)
        t_ptycho = best(lambda p=ptycho, v=v0: p.value_and_gradient(v), a.repeat, xp)
        if xp is np:
            from _timing import peak_rss_bytes  # (run from its folder, as the benchmarks are)

            peak_gb = peak_rss_bytes() / 1e9
        else:
            peak_gb = xp.get_default_memory_pool().total_bytes() / 1e9  # the pool keeps its high-water blocks
        row = {"size": size, "n": n, "Np": npx, "J": j, "dtype": a.dtype, "backend": a.backend,
               "floor_s": t_floor, "ptycho_s": t_ptycho, "joint_s": t_grad, "ratio": t_grad / t_floor,
               "xrf": xrf_method, "peak_gb": peak_gb}
        if a.lbfgs:
            wall, its, nbytes, calls, status = time_lbfgs(problem, v0, a.lbfgs, xp)
            row.update(lbfgs_s=wall, lbfgs_iterations=its, per_iteration_s=wall / max(its, 1),
                       transfer_bytes=nbytes, transfer_calls=calls, lbfgs_status=status)
        rows.append(row)
    print("| case | n | Np | J | dtype | backend | FFT floor (s) | ptycho obj+grad (s) | joint obj+grad (s) "
          "| joint / floor | XRF method | peak memory (GB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['n']} | {r['Np']} | {r['J']} | {r['dtype']} | {r['backend']} | {r['floor_s']:.4f} "
              f"| {r['ptycho_s']:.4f} | {r['joint_s']:.4f} | {r['ratio']:.2f} | {r['xrf']} | {r['peak_gb']:.2f} |")
    for r in rows:
        if "lbfgs_s" in r:
            print(f"L-BFGS {r['size']}: {r['lbfgs_iterations']} iterations in {r['lbfgs_s']:.2f} s "
                  f"({r['per_iteration_s'] * 1e3:.1f} ms/iteration, {r['lbfgs_status']}); host<->device inside the "
                  f"loop: {r['transfer_bytes']} bytes in {r['transfer_calls']} copies")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
