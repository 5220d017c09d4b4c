"""Cost of refinement: one joint objective + gradient with the calibration fixed or refined, side by side.

    python benchmarks/bench_refinement.py [--sizes small medium] [--repeat 3]

Rows, all in one run on the same data: the paper's model (whole-pixel positions, ``FarField``), the same with
sub-pixel positions (``PtychographyModel``: one probe shift per position), and with the probe, the positions or both
refined (``build_problem(refine=...)``). Ratios are to the fixed joint gradient and to the batched-FFT floor (the
forward + inverse FFT of all J patterns that any ptychography gradient does).
"""

import argparse
import warnings
from dataclasses import replace

import numpy as np
import scipy.fft
from bench_gradient import best  # same folder: the script's directory is on sys.path
from mmip_paper import simulate

from multimodal_ip.io import build_problem

SIZES = {"small": (334, 64, 30), "medium": (1306, 128, 38)}  # n, Np, raster step (J = 100 and 1024)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", nargs="+", default=["small", "medium"], choices=list(SIZES))
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    warnings.simplefilter("ignore", UserWarning)  # full-grid XRF shares only the probe: expected
    print("| case | J | setting | joint obj+grad (s) | / fixed | / FFT floor |")
    print("|---|---|---|---|---|---|")
    for size in a.sizes:
        n, npx, step = SIZES[size]
        ds = simulate("phantom", n=n, probe_size=npx, step=step, position_jitter_px=1.0)
        td = ds.terms["ptychography"]
        j = td.arrays["data"].shape[0]
        subpixel = replace(ds, terms={**ds.terms, "ptychography": replace(
            td, arrays={**td.arrays, "positions": ds.truth["positions"]})})
        batch = np.ones((j, npx, npx), dtype=complex)
        t_floor = best(lambda b=batch: scipy.fft.ifft2(scipy.fft.fft2(b, workers=-1), workers=-1), a.repeat)
        settings = {"fixed (FarField)": build_problem(ds), "sub-pixel positions, fixed": build_problem(subpixel),
                    "refine probe": build_problem(ds, refine=("probe",)),
                    "refine positions": build_problem(ds, refine=("positions",)),
                    "refine probe + positions": build_problem(ds, refine=("probe", "positions"))}
        base = None
        for name, problem in settings.items():
            v = problem.start()
            t = best(lambda p=problem, v=v: p.value_and_gradient(v), a.repeat)
            base = base or t
            print(f"| {size} (n={n}, Np={npx}) | {j} | {name} | {t:.4f} | {t / base:.2f} | {t / t_floor:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
