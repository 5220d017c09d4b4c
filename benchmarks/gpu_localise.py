"""Where a backend's numbers leave numpy's: each term's value and gradient, then each array primitive, compared.

    python benchmarks/gpu_localise.py --backend cupy     # on the device (step 0 of benchmarks/gpu_check.sh)
    python benchmarks/gpu_localise.py --backend numpy    # the CPU dry run: every row must read 0

The first device run of 2026-12-05 found the joint value 8e-5 and the gradient 38 % (relative) away from numpy's on
the tiny phantom at float64 (docs/gpu.md); this prints one table row per term and per primitive the GPU path takes
differently from numpy (``cupyx.scipy.fft`` with ``overwrite_x``, the centred FFTs, real FFTs with padding, the complex
``add_at``, the scan-probe scatter, the amplitude loss's fused pass, strided window views), so one run names the
culprit. Exit 1 when a row exceeds its tolerance (float64: 1e-10 relative).
"""

import argparse
import sys

import numpy as np

TOL = 1e-10


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm((a - b).ravel()) / max(np.linalg.norm(b.ravel()), 1e-300))


def _primitives(xp, to_host):
    """(name, backend result, numpy result) of each primitive on the same random input."""
    from mmip_scanprobe.scatter import scatter_patches_

    from multimodal_ip import backend as B
    from multimodal_ip.kernels import amplitude_misfit_
    from multimodal_ip.losses import Amplitude

    def dev(a):  # a fresh backend copy: numpy's asarray would alias, and the overwriting primitives change it
        return xp.asarray(np.array(a, copy=True))

    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 16, 16)) + 1j * rng.standard_normal((6, 16, 16))
    r = rng.standard_normal((3, 20, 20))
    d = rng.random((6, 16, 16)) * 4
    out = []
    for name, f in (("fft2", B.fft2), ("ifft2", B.ifft2), ("fft2c", B.fft2c), ("ifft2c", B.ifft2c)):
        out.append((name, to_host(f(dev(z))), f(z.copy())))
    out.append(("fft2 overwrite_x", to_host(B.fft2(dev(z), overwrite_x=True)), B.fft2(z.copy(), True)))
    out.append(("ifft2 overwrite_x", to_host(B.ifft2(dev(z), overwrite_x=True)), B.ifft2(z.copy(), True)))
    shape = B.fast_shape((27, 27))
    out.append(("rfft2 padded", to_host(B.rfft2(dev(r), shape)), B.rfft2(r, shape)))
    spec = B.rfft2(r, shape)
    out.append(("irfft2", to_host(B.irfft2(dev(spec), shape)), B.irfft2(spec, shape)))
    index = rng.integers(0, 50, 200)
    out.append(("scatter_add complex", to_host(B.scatter_add(dev(index), dev(z.ravel()[:200]), 50)),
                B.scatter_add(B.interleaved_index(index), z.ravel()[:200], 50)))
    rows, cols = np.array([0, 2, 5, 2, 3, 0]), np.array([1, 1, 4, 0, 3, 1])
    probe = rng.standard_normal((16, 16)) + 1j * rng.standard_normal((16, 16))
    acc_x, acc_n = xp.zeros((24, 24), complex), np.zeros((24, 24), complex)
    scatter_patches_(acc_x, dev(z), dev(probe.conj()), rows, cols)
    scatter_patches_(acc_n, z.copy(), probe.conj(), rows, cols)
    out.append(("scatter_patches_", to_host(acc_x), acc_n))
    yx = dev(z)
    value_x = amplitude_misfit_(yx, dev(d), 0.7)
    yn = z.copy()
    value_n = amplitude_misfit_(yn, d, 0.7)
    out.append(("amplitude_misfit_ value", value_x, value_n))
    out.append(("amplitude_misfit_ gradient", to_host(yx), yn))
    loss = Amplitude(0.7)
    out.append(("Amplitude gradient", to_host(loss.value_and_gradient(dev(z), dev(d))[1]),
                loss.value_and_gradient(z, d)[1]))
    view_x = (np.lib.stride_tricks.sliding_window_view if xp is np else xp.lib.stride_tricks.sliding_window_view)(
        dev(r), (5, 5), axis=(-2, -1))
    view_n = np.lib.stride_tricks.sliding_window_view(r, (5, 5), axis=(-2, -1))
    out.append(("sliding_window_view sum", to_host(view_x.sum(axis=(-2, -1))), view_n.sum(axis=(-2, -1))))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="cupy", choices=("numpy", "cupy"))
    a = p.parse_args()
    if a.backend == "cupy":  # pragma: no cover - needs a GPU
        import cupy as xp

        to_host = xp.asnumpy
    else:
        xp, to_host = np, np.asarray
    from mmip_paper import simulate

    from multimodal_ip.io import build_problem

    rows = []
    ds = simulate("phantom", seed=1, noise=0.03, n=48, probe_size=16, step=8)
    for dtype in ("float64", "float32"):
        tol = TOL if dtype == "float64" else 1e-4
        opts = {t: {"dtype": dtype} for t in ds.terms}
        cpu, dev = build_problem(ds, term_options=opts), build_problem(ds, term_options=opts, xp=xp)
        v = cpu.space.full(1.0).astype(dtype) + 0.1
        for name in cpu.term_names:
            fc, gc = cpu.alone(name).value_and_gradient(v)
            fd, gd = dev.alone(name).value_and_gradient(xp.asarray(v))
            rows.append((f"term {name} value ({dtype})", abs(fd - fc) / abs(fc), tol))
            rows.append((f"term {name} gradient ({dtype})", _rel(to_host(gd), gc), tol))
    for name, got, want in _primitives(xp, to_host):
        rows.append((f"primitive {name} (float64)", _rel(got, want), TOL))
    print(f"| what ({a.backend} vs numpy) | relative difference | tolerance | ok |")
    print("|---|---|---|---|")
    bad = 0
    for name, diff, tol in rows:
        ok = diff <= tol
        bad += not ok
        print(f"| {name} | {diff:.3g} | {tol:g} | {'yes' if ok else 'NO'} |")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
