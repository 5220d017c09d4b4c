"""Cost of held-out validation: one joint objective + gradient with and without 10 % of the data held out.

    python benchmarks/bench_validation.py [--cases phantom cameraman] [--repeat 40]

Both problems are built once and timed alternately (so drifting load hits both alike); best of ``--repeat`` each;
the load average is printed (this machine is shared).
"""

import argparse
import os
import time

from mmip_paper import simulate

from multimodal_ip.io import build_problem


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=["phantom", "cameraman"])
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()
    for case in args.cases:
        ds = simulate(case, seed=0, noise=0.03)
        problems = {"without": build_problem(ds), "with 10 % held out": build_problem(ds, validation=0.1)}
        v = problems["without"].start() * 1.01
        best = {k: float("inf") for k in problems}
        for p in problems.values():
            p.linearize(v)
        for _ in range(args.repeat):
            for k, p in problems.items():
                t0 = time.perf_counter()
                p.linearize(v)
                best[k] = min(best[k], time.perf_counter() - t0)
        a, b = best.values()
        print(f"{case}: without {a * 1e3:.1f} ms, with 10 % held out {b * 1e3:.1f} ms, ratio {b / a:.3f} "
              f"(best of {args.repeat}, load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
