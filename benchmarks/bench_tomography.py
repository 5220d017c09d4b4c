"""Joint XRF + transmission tomography: one objective + gradient versus its interpolation passes alone.

    python benchmarks/bench_tomography.py [--n 256] [--angles 180] [--elements 3] [--repeat 5] [--dtype float64]
        [--line-attenuation off|on]

The floor is what no gradient of these two terms can avoid: the sampling of the element maps along every ray
(one sparse product with Ne columns), its transpose (one product, Ne columns) for the fluorescence, and the line
integrals and their transpose (one column each) for the transmission; timed in the same process on the same
matrices. Best of ``--repeat``; the load average is printed with the result (this machine is shared).
The data come from the reconstruction's own model (``oversample=1``: only the speed is measured here); the emitted
lines' attenuation is off by default (``--line-attenuation on`` adds the paths to the detector: a second sampling
grid per detector, about 3x the samples).
"""

import argparse
import os
import resource
import time

from _timing import best
from mmip_tomography.simulate import simulate

from multimodal_ip.io import build_problem


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--angles", type=int, default=180)
    parser.add_argument("--elements", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    parser.add_argument("--line-attenuation", default="off", choices=("off", "on"))
    args = parser.parse_args()
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
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    load = os.getloadavg()[0]
    print(f"n={args.n} angles={args.angles} elements={args.elements} dtype={args.dtype}: samples "
          f"{samples.shape[:3]} ({xrf.sampling.nnz / 1e6:.1f} M weights), set-up {setup:.1f} s")
    print(f"objective+gradient {total:.3f} s, interpolation passes alone {base:.3f} s: ratio {total / base:.2f}; "
          f"peak RSS {peak:.2f} GB; load {load:.1f}")


if __name__ == "__main__":
    main()
