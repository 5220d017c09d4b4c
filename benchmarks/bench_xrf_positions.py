"""XRF measured at the ptychography scan positions (as beamlines record it): file, per-term cost, peak RSS.

    python benchmarks/bench_xrf_positions.py make L.h5 [--j 4096] [--np 128] [--step 38]
    python benchmarks/bench_xrf_positions.py time L.h5 [--repeat 3] [--chunk-memory SIZE]
    python benchmarks/bench_xrf_positions.py map [--j 4096] [--np 128] [--step 38] [--repeat 3]
    /usr/bin/time -v .venv/bin/mmip reconstruct L.h5 -o r.h5 --iterations 3 [--terms fluorescence]

``make`` writes a dataset file with plain h5py (README schema, format_version 1): a square raster of J positions
at ``--step`` px, object side n = (sqrt(J) - 1) step + Np (n = 2522 for the defaults), one element, float32
diffraction intensities of a Fresnel-zone-plate probe (0.27 GB at the defaults) and the XRF counts of that element
at the same positions, kernel |P|^2 (no ``object_shape``: both terms infer the object from the scan's extent).
``time`` builds the joint problem from the file as ``mmip reconstruct`` does (default options) and times one
objective + gradient of each term at the all-ones start (best of ``--repeat`` after a warm-up), printing the XRF
term's share; then it reads this process's peak RSS. ``map`` times one product and its adjoint of the XRF map
alone (float64, random maps) at whole-pixel and at sub-pixel positions (uniform ±0.5 px) on the same raster.
"""

import argparse
import sys

import numpy as np


def make(path, j, npx, step, seed=0):
    import h5py
    from mmip_ptychography import fresnel_zone_plate_probe, ptychography_operator, raster_positions

    side = int(round(np.sqrt(j)))
    n = (side - 1) * step + npx
    pos = raster_positions(n, npx, step_px=step, grid=(side, side)).astype(float)
    probe = fresnel_zone_plate_probe(npx)
    rng = np.random.default_rng(seed)
    x = 1 + 0.1 * rng.random((n, n))
    w = 0.1 * rng.random((1, n, n))
    op = ptychography_operator(probe, pos, (n, n), 1)
    state = op.stream_prepare(np.concatenate([x.ravel(), w.ravel()]))
    intens = np.empty(op.dimsd, dtype=np.float32)
    for rows in op.blocks():
        intens[rows] = np.abs(op.stream_forward(state, rows)) ** 2
    del state
    kernel = np.abs(probe) ** 2
    ipos = pos.astype(int)
    counts = np.array([[np.sum(kernel * w[0, r : r + npx, c : c + npx]) for r, c in ipos]])  # plain loop
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "multimodal_ip"
        f.attrs["format_version"] = 1
        g = f.create_group("terms/ptychography")
        g.attrs["modality"] = "ptychography"
        g.create_dataset("data", data=intens)
        g.create_dataset("probe", data=probe)
        g.create_dataset("positions", data=pos)
        g = f.create_group("terms/fluorescence")
        g.attrs["modality"] = "fluorescence"
        g.attrs["elements"] = np.array(["Fe"], dtype=h5py.string_dtype())
        g.create_dataset("data", data=counts)
        g.create_dataset("kernel", data=kernel)
        g.create_dataset("positions", data=pos)
    print(f"{path}: n = {n}, Np = {npx}, J = {len(pos)}, diffraction data {intens.nbytes / 1e9:.2f} GB")


def time_terms(path, repeat, chunk_bytes=None):
    from _timing import best, peak_rss_bytes

    from multimodal_ip.io import build_problem, load_dataset

    problem = build_problem(load_dataset(path), chunk_bytes=chunk_bytes)
    v0 = problem.space.full(1.0)
    times = {}
    for i, term in enumerate(problem.terms):
        u = problem._term_input(i, v0)  # the term's input as the joint evaluation passes it
        times[term.name] = times.get(term.name, 0.0) + best(lambda t=term, u=u: t.linearize_input(u), repeat)
    joint = best(lambda: problem.value_and_gradient(v0), repeat)
    rss = peak_rss_bytes() / 1e9
    for name, t in times.items():
        print(f"{name:>14}: {t * 1e3:9.1f} ms per objective + gradient")
    if "ptychography" in times and "fluorescence" in times:
        print(f"XRF / ptychography: {times['fluorescence'] / times['ptychography']:.3f}")
    print(f"joint objective + gradient: {joint * 1e3:.1f} ms; peak RSS {rss:.2f} GB")


def time_map(j, npx, step, repeat):
    from _timing import best
    from mmip_fluorescence import FluorescenceMap

    side = int(round(np.sqrt(j)))
    n = (side - 1) * step + npx
    rng = np.random.default_rng(0)
    pos = np.stack(np.meshgrid(np.arange(side) * step, np.arange(side) * step, indexing="ij"), -1).reshape(-1, 2)
    kernel, w, d = rng.random((npx, npx)), rng.random(n * n), rng.random(len(pos))
    for name, fractions in (("whole-pixel", None), ("sub-pixel", rng.uniform(-0.5, 0.5, pos.shape))):
        fmap = FluorescenceMap(kernel, pos, (n, n), 1, method="gather", fractions=fractions)
        t = best(lambda f=fmap: (f @ w, f.H @ d), repeat)
        kept = "per block" if fmap.fractions is not None else "kept" if fractions is not None else "shared"
        print(f"{name:>12}: product + adjoint {t * 1e3:8.1f} ms (J = {len(pos)}, Np = {npx}, kernels {kept})")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("path")
    m.add_argument("--j", type=int, default=4096)
    m.add_argument("--np", type=int, default=128)
    m.add_argument("--step", type=int, default=38)
    t = sub.add_parser("time")
    t.add_argument("path")
    t.add_argument("--repeat", type=int, default=3)
    t.add_argument("--chunk-memory", default=None)
    m = sub.add_parser("map")
    m.add_argument("--j", type=int, default=4096)
    m.add_argument("--np", type=int, default=128)
    m.add_argument("--step", type=int, default=38)
    m.add_argument("--repeat", type=int, default=3)
    a = p.parse_args(argv)
    if a.cmd == "make":
        make(a.path, a.j, a.np, a.step)
    elif a.cmd == "map":
        time_map(a.j, a.np, a.step, a.repeat)
    else:
        from multimodal_ip.safety import parse_size

        time_terms(a.path, a.repeat, None if a.chunk_memory is None else parse_size(a.chunk_memory, allow_zero=True))


if __name__ == "__main__":
    sys.exit(main())
