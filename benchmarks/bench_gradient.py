"""Time of one joint objective + gradient versus the batched-FFT floor, and peak memory.

    python benchmarks/bench_gradient.py [--sizes small medium large] [--repeat 3] [--dtype float64]

The floor is the forward + inverse FFT of all J patterns (J x Np x Np complex), which any
gradient of the ptychography term must do; it is timed in the same run.
"""

import argparse
import resource
import time

import numpy as np
import scipy.fft
from mmip_fluorescence import FluorescenceMap, full_grid_positions
from mmip_ptychography import FarField, fresnel_zone_plate_probe, ptychography_operator, raster_positions

from multimodal_ip import DataTerm, JointProblem, Variable, VariableSpace, balanced_weights
from multimodal_ip.losses import Amplitude, LeastSquares
from multimodal_ip.operators import Linear

SIZES = {  # n, Np, J (square raster)
    "small": (334, 64, 100),
    "medium": (1306, 128, 1024),
    "large": (4100, 128, 10000),
}


def build(n, npx, j, dtype):
    side = int(round(np.sqrt(j)))
    step = (n - npx) // (side - 1)
    pos = raster_positions(n, npx, step_px=step, grid=(side, side))
    probe = fresnel_zone_plate_probe(npx)
    rng = np.random.default_rng(0)
    x, w = 1 + rng.random((n, n)), 1 + rng.random((1, n, n))
    space = VariableSpace([Variable("x", (n, n), dtype), Variable("w", (1, n, n), dtype)])
    op = ptychography_operator(probe, pos, (n, n), 1, dtype=dtype)
    intens = (np.abs(FarField(probe, pos, (n, n)) @ (x + 1j * w[0])) ** 2).astype(dtype)
    kernel = np.abs(probe) ** 2
    xrf_pos = full_grid_positions((n, n), kernel.shape) if n <= 1400 else pos
    fop = FluorescenceMap(kernel, xrf_pos, (n, n), 1, dtype=dtype)
    terms = [DataTerm(op, intens, Amplitude(scale=1 / len(pos)), 1.0, ("x", "w"), "ptychography"),
             DataTerm(Linear(fop), (fop @ w.ravel()).reshape(1, -1).astype(dtype), LeastSquares(), 1.0, ("w",),
                      "fluorescence")]
    problem = JointProblem(space, terms)
    v0 = space.full(1.0)
    problem = problem.with_weights(balanced_weights(problem, v0, "ptychography", 0.01))
    return problem, v0, len(pos), fop.method


def best(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", nargs="+", default=["small", "medium"], choices=list(SIZES))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    a = p.parse_args()
    cdtype = np.result_type(a.dtype, np.complex64)
    rows = []
    for size in a.sizes:
        n, npx, j = SIZES[size]
        problem, v0, j, xrf_method = build(n, npx, j, a.dtype)
        batch = (np.ones((j, npx, npx)) + 0j).astype(cdtype)

        def floor(b=batch):
            scipy.fft.ifft2(scipy.fft.fft2(b, workers=-1, norm="ortho"), workers=-1, norm="ortho")

        t_floor = best(floor, a.repeat)
        ptycho = problem.with_terms(["ptychography"])
        t_grad = best(lambda p=problem, v=v0: p.value_and_gradient(v), a.repeat)
        t_ptycho = best(lambda p=ptycho, v=v0: p.value_and_gradient(v), a.repeat)
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        rows.append((size, n, npx, j, a.dtype, t_floor, t_ptycho, t_grad, t_grad / t_floor, xrf_method, peak_gb))
    print("| case | n | Np | J | dtype | FFT floor (s) | ptycho obj+grad (s) | joint obj+grad (s) | joint / floor "
          "| XRF method | peak RSS so far (GB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]:.4f} | {r[6]:.4f} | {r[7]:.4f} | {r[8]:.2f} "
              f"| {r[9]} | {r[10]:.2f} |")


if __name__ == "__main__":
    main()
