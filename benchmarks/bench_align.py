"""Cost of ``align``: one alignment (the search along the ptychography's global phase, evaluating the other terms)
against the floor of one joint objective + gradient at the same point.

    python benchmarks/bench_align.py [--cases phantom cameraman] [--repeat 20]

The problem is built once; a point after 5 L-BFGS iterations is aligned and linearized alternately (drifting load
hits both alike); best of ``--repeat`` each, with the number of objective evaluations of the other terms one
alignment takes. An aligned iteration costs one L-BFGS iteration (1-2 linearizations with the line search) plus one
alignment. The load average is printed (this machine is shared).
"""

import argparse
import os
import time

from mmip_paper import simulate

from multimodal_ip.io import build_problem
from multimodal_ip.solvers import solve_staged


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=["phantom", "cameraman"])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    for case in args.cases:
        problem = build_problem(simulate(case, seed=0, noise=0.03))
        v = solve_staged(problem, problem.start(), "lbfgs", maxiter=5).x
        calls = []
        pinned = type(problem).with_terms

        def counting(self, names, calls=calls, pinned=pinned):  # count the other terms' evaluations
            out = pinned(self, names)
            value = out.value
            out.value = lambda x: (calls.append(1), value(x))[1]
            return out

        best = {"alignment": float("inf"), "objective + gradient": float("inf")}
        for _ in range(args.repeat):
            calls.clear()
            type(problem).with_terms = counting
            t0 = time.perf_counter()
            problem.align(v)
            best["alignment"] = min(best["alignment"], time.perf_counter() - t0)
            type(problem).with_terms = pinned
            t0 = time.perf_counter()
            problem.linearize(v)
            best["objective + gradient"] = min(best["objective + gradient"], time.perf_counter() - t0)
        a, f = best["alignment"], best["objective + gradient"]
        print(f"{case}: alignment {a * 1e3:.1f} ms ({len(calls)} evaluations of the other terms), objective + "
              f"gradient {f * 1e3:.1f} ms, ratio {a / f:.2f} (best of {args.repeat}, load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
