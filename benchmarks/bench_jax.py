"""Time of one joint objective + gradient: the hand-written models against their JAX forms, and the FFT floor.

    python benchmarks/bench_jax.py [--sizes small medium] [--repeat 3] [--dtype float64] [--json out.json]

The problems are those of ``bench_gradient.py`` (the paper's ptychography + full-grid XRF at the same sizes, the
same data, losses and weights); each is timed with the term option ``implementation`` set to ``hand-written`` and
to ``jax`` (:mod:`mmip_ptychography.jax_model`, :mod:`mmip_fluorescence.jax_model`: the Jacobians by automatic
differentiation, the losses in numpy), and against plain JAX: ``jax.jit(jax.value_and_grad)`` of the whole joint
misfit written in ``jax.numpy`` (no core, no numpy loss: the fused lower bound of the JAX route). The floor is the
forward + inverse FFT of all J patterns, by scipy.fft (all cores) and by XLA (``jnp.fft``). Also measured: the
numpy <-> JAX crossing of one evaluation (the input point in, the prediction out, the loss gradient in). Best of
``--repeat`` after one warm-up call (which compiles); the load average is printed with the table.
"""

import argparse
import os
import time

import numpy as np
import scipy.fft
from bench_gradient import SIZES, best, build
from mmip_fluorescence import full_grid_positions
from mmip_fluorescence.jax_model import fluorescence_autodiff, fluorescence_forward
from mmip_ptychography.jax_model import ptychography_autodiff, ptychography_forward

from multimodal_ip import DataTerm, JointProblem


def jax_problem(problem):
    """The same joint problem with both operators replaced by their JAX forms (same data, losses, weights)."""
    terms = []
    for t in problem.terms:
        op = t.operator
        if t.name == "ptychography":
            new = ptychography_autodiff(np.asarray(op.probe), op.positions, op.object_shape, 1, dtype=op.dtype)
            kernel, positions, shape = np.abs(np.asarray(op.probe)) ** 2, op.positions, op.object_shape
        else:  # bench_gradient's XRF: the probe's footprint on the full grid (the scan beyond n = 1400)
            grid = full_grid_positions(shape, kernel.shape) if shape[0] <= 1400 else positions
            new = fluorescence_autodiff(kernel, grid, shape, 1, dtype=op.dtype)
        terms.append(DataTerm(new, t.data, t.loss, t.weight, t.inputs, t.name))
    return JointProblem(problem.space, terms)


def plain_jax(problem):
    """``jax.jit(jax.value_and_grad)`` of the joint misfit in ``jax.numpy`` (the issue's reference measurement)."""
    import jax
    import jax.numpy as jnp

    auto = jax_problem(problem)
    (pt, ft), (po, fo) = auto.terms, [t.operator for t in auto.terms]
    scale, wf = pt.loss.scale, ft.weight
    sqrt_d = jnp.sqrt(jnp.asarray(pt.data))
    counts = jnp.asarray(ft.data)
    nx = int(np.prod(problem.space["x"].shape))
    shape = problem.space["x"].shape

    def misfit(v, pp, fp, sqrt_d, counts):  # the data as arguments (as constants XLA would fold them)
        x, w = v[:nx].reshape(shape), v[nx:].reshape((1, *shape))
        psi = ptychography_forward({"x": x, "w": w}, pp)
        f = 0.5 * scale * jnp.sum((jnp.abs(psi) - sqrt_d) ** 2)
        return f + 0.5 * wf * jnp.sum((fluorescence_forward({"w": w}, fp) - counts) ** 2)

    fn = jax.jit(jax.value_and_grad(misfit))
    return lambda v: jax.block_until_ready(fn(v, po.params, fo.params, sqrt_d, counts))


def crossing(problem, v0):
    """Seconds of the numpy <-> JAX crossings of one ptychography objective + gradient: the point in (copied),
    the prediction out (a view), the loss gradient in."""
    import jax

    op = jax_problem(problem).terms[0].operator
    y = op.forward(v0)
    g = np.array(y)
    jy = jax.device_put(g)
    t_in = best(lambda: jax.block_until_ready(op.to_jax(v0, copy=True)), 5)
    t_out = best(lambda: np.asarray(jy), 5)
    t_grad = best(lambda: jax.block_until_ready(jax.device_put(g)), 5)
    return t_in + t_out + t_grad


def best_cpu(fn, repeat):
    """``(best wall seconds, best CPU seconds)`` of ``fn`` after one warm-up call: the CPU time of the process (all
    its threads) is what a shared machine's load does not inflate."""
    fn()
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus)


def jax_floor(batch):
    """The FFT floor in JAX: a function computing ``jnp.fft.ifft2(jnp.fft.fft2(b))`` of the same batch, compiled
    (XLA's CPU FFT)."""
    import jax
    import jax.numpy as jnp

    fn = jax.jit(lambda b: jnp.fft.ifft2(jnp.fft.fft2(b, norm="ortho"), norm="ortho"))
    b = jax.device_put(batch)
    return lambda: jax.block_until_ready(fn(b))


def _cell(r, key) -> str:
    """``wall, CPU`` seconds of measurement ``key`` of row ``r``."""
    return f"{r[key + '_s']:.4f}, {r[key + '_cpu_s']:.4f}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", nargs="+", default=["small", "medium"], choices=list(SIZES))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    p.add_argument("--json", help="write the rows as JSON here too")
    a = p.parse_args()
    cdtype = np.result_type(a.dtype, np.complex64)
    rows = []
    for size in a.sizes:
        n, npx, j = SIZES[size]
        problem, v0, j, xrf_method = build(n, npx, j, a.dtype)
        batch = (np.ones((j, npx, npx)) + 0j).astype(cdtype)

        def floor(b=batch):
            return scipy.fft.ifft2(scipy.fft.fft2(b, workers=-1, norm="ortho"), workers=-1, norm="ortho")

        auto = jax_problem(problem)
        t0 = time.perf_counter()
        auto.value_and_gradient(v0)
        t_compile = time.perf_counter() - t0
        fused = plain_jax(problem)
        row = {"size": size, "n": n, "Np": npx, "J": j, "dtype": a.dtype, "xrf": xrf_method,
               "first_jax_call_s": t_compile, "crossing_s": crossing(problem, v0)}
        for key, fn in (("floor", floor), ("jax_floor", jax_floor(batch)),
                        ("hand", lambda p=problem, v=v0: p.value_and_gradient(v)),
                        ("jax", lambda p=auto, v=v0: p.value_and_gradient(v)),
                        ("plain_jax", lambda f=fused, v=v0: f(v))):
            row[key + "_s"], row[key + "_cpu_s"] = best_cpu(fn, a.repeat)
        row["load"] = os.getloadavg()[0]
        # off the all-ones start (its constant object has spectra with exact zeros, where the amplitude loss's
        # gradient jumps and the two FFTs round differently)
        v = v0 + 0.01 * np.random.default_rng(1).standard_normal(v0.size).astype(v0.dtype)
        gh, gj = problem.value_and_gradient(v)[1], auto.value_and_gradient(v)[1]
        row["rel_diff_gradient"] = float(np.linalg.norm(gh - gj) / np.linalg.norm(gh))
        rows.append(row)
    print("| case | n | Np | J | dtype | FFT floor (s, CPU s) | JAX FFT floor | hand-written | JAX forms | JAX / hand "
          "(CPU) | plain JAX | crossing (s) | first JAX call (s) | gradient rel. diff | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['n']} | {r['Np']} | {r['J']} | {r['dtype']} | {_cell(r, 'floor')} | "
              f"{_cell(r, 'jax_floor')} | {_cell(r, 'hand')} | {_cell(r, 'jax')} | "
              f"{r['jax_cpu_s'] / r['hand_cpu_s']:.2f} | {_cell(r, 'plain_jax')} | {r['crossing_s']:.4f} | "
              f"{r['first_jax_call_s']:.2f} | "
              f"{r['rel_diff_gradient']:.1e} | {r['load']:.1f} |")
    if a.json:
        import json

        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
