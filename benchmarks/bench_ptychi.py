"""Side by side with pty-chi on the same ptychography data: time per full pass over the data, and position
correction (CPU).

    python benchmarks/bench_ptychi.py --install               # once: pty-chi + CPU torch in .ptychi-venv/
    python benchmarks/bench_ptychi.py [--n 1306 --np 128 --step 37] [--epochs 5] [--dtype float32]
    python benchmarks/bench_ptychi.py --positions [--cases phantom cameraman] [--seeds 3] [--epochs 150]
    python benchmarks/bench_ptychi.py --positions --bound|--known-object [--step 10 20] [--first-seed 4 --seeds 1]
    python benchmarks/bench_ptychi.py --accuracy [--cases ...] [--noise 0.03 0.1] [--seeds 5] [--threads 1]
        [--ours-flags '--stop iterations --iterations 150'] [--solver lbfgs --dtype float32 --ours-option K=V ...]
        [--ptychi-option reconstructor_options.batch_size=100 ...] [--json rows.json] [--figure fig.png]
        [--save-objects DIR]
    python benchmarks/bench_ptychi.py --replot rows.json [more.json ...] --figure fig.png

``--accuracy`` (:mod:`_ptychi_accuracy`): time to accuracy on the paper's cases (all four by default), ptychography
alone with the true positions and probe, both codes from the flat start, ``--epochs`` epochs / iterations; per case,
noise level and seed each code's best and final object error, its wall time and the time it needs to reach
pty-chi's final error, with the error-vs-time traces in the JSON rows, and each final object's error with the global
phase removed and over the lit pixels (:mod:`_ptychi_metrics`); both codes on ``--threads`` threads. Ours is
``mmip reconstruct FILE --terms ptychography`` at the CLI's defaults (:mod:`_ptychi_ours`: held-out stopping and the
refit, whose time counts the held-out run plus the refit until it reaches an error).

``--positions``: the paper's cases at 3 % noise with the positions jittered by ±``--jitter`` px (the file holds the
nominal raster, the true probe is given and fixed); pty-chi LSQML with its position correction from epoch
``--correct-from`` and ours (ptychography alone, L-BFGS, positions refined after ``--refine-after`` iterations) from
the same flat start; final object error over [x; w], positions rms against the truth, wall time; and both codes with
the true positions fixed, which shows that the two set up the same problem (pty-chi's unnormalised FFT, its
first-epoch probe rescaling and its object-probe ambiguity removal are accounted for in its script).
``--bound`` / ``--known-object`` (:mod:`_ptychi_bound`): each code's rms per position against the rms of the
band-limited Cramer-Rao bound over the positions with a finite bound of at most the jitter, object unknown (common
shift removed) or known (given, not optimised), per case and ``--step``.

pty-chi is not a dependency of this project: ``--install`` creates its own virtual environment
(``benchmarks/.ptychi-venv``, or ``--venv``) with ``torch==2.14.1``, ``torchvision==0.29.1`` and ``ptychi``,
and each pty-chi
engine runs there in a subprocess on the same file. The data: ``mmip simulate phantom`` at the given size (3 %
noise), the true probe, positions and probe fixed (object only), so both sides solve the same problem.

Reported per engine: seconds per epoch (one full pass over the J patterns; pty-chi's own loop, after a first
epoch that is not timed) and, for this project, one joint-free ptychography objective + gradient (the pass a
gradient solver makes) and the mean L-BFGS iteration time over ``--epochs`` iterations. Threads: both sides use
every core (torch's intra-op threads, scipy.fft workers).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _ptychi_accuracy import accuracy_study, replot, set_threads
from _ptychi_bound import bound_study

HERE = Path(__file__).resolve().parent

#: what runs inside pty-chi's environment: reads the .npz written below, runs one engine, prints JSON.
#: argv: npz, engine, epochs, threads, correct_from (-1: time epochs, positions fixed; -2: a whole run with the
#: positions fixed; >= 0: a whole run with position correction from that epoch), optionally a .npy of the known
#: object (given as the start and not optimised)
PTYCHI_SCRIPT = r"""
import json, sys, time
import numpy as np, torch
import ptychi.api as api
from ptychi.api.task import PtychographyTask

torch.set_num_threads(int(sys.argv[4]))
f = np.load(sys.argv[1])
engine, epochs, correct_from = sys.argv[2], int(sys.argv[3]), int(sys.argv[5])
data, probe, pos, n = f["data"], f["probe"], f["positions"], int(f["n"])
options = {"lsqml": api.LSQMLOptions, "epie": api.EPIEOptions}[engine]()
# the same problem as ours: pty-chi's FFT is unnormalised (ours orthonormal), so its intensities are Np0 * Np1 times
# ours; the same start (1 + 1j: x = w = 1); the probe is the given one, so pty-chi must not rescale it to the data's
# power in the first epoch nor move the object's mean transmission to 1 (both change the object's scale)
options.data_options.data = data * float(probe.size)
known = len(sys.argv) > 6
options.object_options.initial_guess = (torch.as_tensor(np.load(sys.argv[6])[None], dtype=torch.complex64) if known
                                        else torch.full((1, n, n), 1 + 1j, dtype=torch.complex64))
options.object_options.pixel_size_m = 1.0
options.object_options.optimizable = not known
options.object_options.optimizer = api.Optimizers.SGD
options.object_options.step_size = 1.0 if engine == "lsqml" else 0.1
options.object_options.remove_object_probe_ambiguity.enabled = False
options.probe_options.initial_guess = torch.as_tensor(probe[None, None], dtype=torch.complex64)
options.probe_options.optimizable = False
# pty-chi takes probe centres relative to its origin pixel, round(n / 2) - 0.5 (absolute centres put every window
# off the object: pty-chi then padded its buffers by n / 2 on two sides)
shift = (np.array(probe.shape) - 1) / 2.0 - (np.round(n / 2.0) - 0.5)
centre = pos + shift
options.probe_position_options.position_x_px = centre[:, 1]
options.probe_position_options.position_y_px = centre[:, 0]
options.probe_position_options.optimizable = correct_from >= 0
if correct_from >= 0:
    options.probe_position_options.optimization_plan.start = correct_from
timing = correct_from == -1
options.reconstructor_options.batch_size = 100 if timing else 20
options.reconstructor_options.num_epochs = epochs + timing
if engine == "lsqml":
    options.reconstructor_options.noise_model = api.NoiseModels.GAUSSIAN
    options.reconstructor_options.rescale_probe_intensity_in_first_epoch = False
task = PtychographyTask(options)
out = {"engine": engine, "epochs": epochs}
if timing:
    task.run(n_epochs=1)  # first epoch: allocation and warm-up, not timed
    t0 = time.perf_counter()
    task.run(n_epochs=epochs)
    out["s_per_epoch"] = (time.perf_counter() - t0) / epochs
else:
    t0 = time.perf_counter()
    task.run()
    out["wall_s"] = time.perf_counter() - t0
    p = task.get_data_to_cpu("probe_positions", as_numpy=True)
    out["positions"] = (np.asarray(p)[:, :2] - shift).tolist()  # back to top-left corners (row, col)
obj = np.asarray(task.get_data_to_cpu("object", as_numpy=True))[0]
np.save(sys.argv[1] + f".{engine}.object.npy", obj)
print(json.dumps(out))
"""


def install(venv: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    # torchvision (pty-chi imports it) must match torch: this pair installs together (a CUDA build that runs on the CPU)
    subprocess.run([*pip, "torch==2.14.1", "torchvision==0.29.1", "ptychi"], check=True)


def ours(path, epochs, dtype):
    """Seconds of one ptychography objective + gradient (best of 3) and of one L-BFGS iteration (mean)."""
    from multimodal_ip import solve
    from multimodal_ip.io import build_problem, load_dataset

    problem = build_problem(load_dataset(path), terms=["ptychography"], dtype=dtype, balance=False)
    v0 = problem.start()
    problem.value_and_gradient(v0)
    best = min(_timed(lambda: problem.value_and_gradient(v0)) for _ in range(3))
    t0 = time.perf_counter()
    res = solve(problem, v0, "lbfgs", maxiter=epochs, method="native", gtol=0.0)
    per_iteration = (time.perf_counter() - t0) / max(len(res.history) - 1, 1)
    return best, per_iteration


def ours_positions(ds, iterations, refine_after, dtype, refine):
    """Ptychography alone from the flat start, the given probe fixed; positions refined after ``refine_after``
    iterations (or fixed at the file's when not ``refine``). Returns (object x + iw, positions, seconds)."""
    from multimodal_ip.io import build_problem
    from multimodal_ip.solvers import solve_staged

    problem = build_problem(ds, terms=["ptychography"], dtype=dtype, refine=("positions",) if refine else ())
    t0 = time.perf_counter()
    res = solve_staged(problem, problem.start(), "lbfgs", maxiter=iterations,
                       refine_after=refine_after if refine else 0)
    wall = time.perf_counter() - t0
    positions = res.arrays["positions"] if refine else ds.terms["ptychography"].arrays["positions"]
    return res.arrays["x"] + 1j * res.arrays["w"][0], np.asarray(positions, dtype=float), wall


def positions_study(args, venv, threads):
    """Position correction side by side: the same data (3 % noise, uniform jitter, the true probe given), each code
    from the flat start; also both with the true positions fixed (the two codes' conventions agree)."""
    with tempfile.TemporaryDirectory() as tmp:
        return _positions_study(args, venv, threads, Path(tmp))


def _positions_study(args, venv, threads, script_dir):
    """:func:`positions_study` with its files (pty-chi's script, each dataset, pty-chi's objects) in ``script_dir``."""
    from dataclasses import replace

    from mmip_paper import simulate

    script = script_dir / "run_ptychi.py"
    script.write_text(PTYCHI_SCRIPT)
    rows = {}
    for case in args.cases:
        for seed in range(args.seeds):
            ds = simulate(case, seed=seed, noise=0.03, position_jitter_px=args.jitter)
            td = ds.terms["ptychography"]
            truth = ds.truth["positions"]
            z = ds.truth["x"] + 1j * ds.truth["w"][0]
            exact = replace(ds, terms={"ptychography": replace(td, arrays=dict(td.arrays, positions=truth))})
            for label, data, correct in (("nominal, corrected", ds, True), ("true positions, fixed", exact, False)):
                term = data.terms["ptychography"]
                npz = script_dir / f"{case}{seed}.npz"
                np.savez(npz, data=np.asarray(term.arrays["data"], dtype=np.float32), probe=term.arrays["probe"],
                         positions=term.arrays["positions"], n=z.shape[0])
                out = subprocess.run([str(venv / "bin" / "python"), str(script), str(npz), "lsqml", str(args.epochs),
                                      str(threads), str(args.correct_from if correct else -2)], capture_output=True,
                                     text=True, check=False)
                if out.returncode:
                    print(f"pty-chi failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                    return 1
                r = json.loads(out.stdout.strip().splitlines()[-1])
                obj = np.load(str(npz) + ".lsqml.object.npy")
                pc_pos = np.asarray(r["positions"]) if correct else truth
                pc = (float(np.linalg.norm(obj - z) / np.linalg.norm(z)), _rms(pc_pos, truth), r.get("wall_s", np.nan))
                mine, pos, wall = ours_positions(data, args.epochs, args.refine_after, args.dtype, correct)
                err = float(np.linalg.norm(mine - z) / np.linalg.norm(z))  # over [x; w]: |z| = |[x; w]| for Ne = 1
                rows.setdefault((case, label, "pty-chi 2.2 LSQML"), []).append(pc)
                rows.setdefault((case, label, "multimodal_ip L-BFGS"), []).append((err, _rms(pos, truth), wall))
                print(f"{case} seed {seed} {label}: pty-chi {pc[0]:.4f} / {pc[1]:.3f} px / {pc[2]:.1f} s, ours "
                      f"{err:.4f} / {_rms(pos, truth):.3f} px / {wall:.1f} s", flush=True)
    print(f"\n{args.epochs} epochs / L-BFGS iterations; pty-chi position correction from epoch {args.correct_from}, "
          f"ours refines positions after {args.refine_after} iterations; 3 % noise, jitter ±{args.jitter} px, "
          f"{args.seeds} seeds (mean ± std); nominal positions rms "
          f"{_rms(ds.terms['ptychography'].arrays['positions'], truth):.3f} px (last seed)\n")
    print("| case | positions | code | object error [x; w] | positions rms (px) | time (s) |")
    print("|---|---|---|---|---|---|")
    for (case, label, code), vals in rows.items():
        v = np.array(vals, dtype=float)
        sd = v.std(axis=0, ddof=1) if len(v) > 1 else np.zeros(3)
        m = v.mean(axis=0)
        print(f"| {case} | {label} | {code} | {m[0]:.4f} ± {sd[0]:.4f} | {m[1]:.3f} ± {sd[1]:.3f} | {m[2]:.1f} |")
    return 0


def _rms(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _accuracy_flags(p):
    """The flags of ``--accuracy`` (time to accuracy, :mod:`_ptychi_accuracy`)."""
    p.add_argument("--accuracy", action="store_true",
                   help="time to accuracy on the paper's cases, true positions: best/final error, wall time, time "
                        "to pty-chi's final error, error-vs-time traces")
    p.add_argument("--noise", type=float, nargs="+", default=[0.03, 0.1], help="noise levels (--accuracy)")
    p.add_argument("--data-model", default="band-limited", choices=("band-limited", "cubic"),
                   help="with --accuracy --jitter: the patterns made with band-limited windows (mmip simulate's) "
                        "or with ours (cubic)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds first..first + --seeds - 1 (--accuracy)")
    p.add_argument("--codes", nargs="+", default=["ptychi", "ours"], choices=("ptychi", "ours"))
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads of each code: torch's, our FFT workers and numba's (default: every core)")
    p.add_argument("--solver", help="our solver (--accuracy; default: mmip reconstruct's)")
    p.add_argument("--likelihood", choices=("balanced", "poisson"), help="ours (--accuracy; default: the CLI's)")
    p.add_argument("--loss", choices=("amplitude", "poisson"),
                   help="ours: the ptychography loss (--accuracy; --likelihood poisson only weights it in photons)")
    p.add_argument("--ours-flags", dest="ours_flags", default="", metavar="'FLAGS'",
                   help="more flags of mmip reconstruct for our run, e.g. '--stop iterations --iterations 150' "
                        "(--accuracy; ours is the command at its defaults, ptychography alone)")
    p.add_argument("--ours-option", action="append", metavar="KEY=VALUE", help="our solver's options, repeatable")
    p.add_argument("--ours-term-option", action="append", metavar="KEY=VALUE",
                   help="our ptychography term's options, e.g. windows=band-limited, repeatable (--accuracy)")
    p.add_argument("--ptychi-option", action="append", metavar="PATH=VALUE",
                   help="pty-chi LSQMLOptions field, e.g. reconstructor_options.batch_size=100, repeatable")
    p.add_argument("--json", help="write every row (with its error-vs-time trace; with --bound its positions and "
                                  "bounds) to this JSON file")
    p.add_argument("--figure", help="draw error against wall time per case to this PNG "
                                    "(e.g. docs/ptychi_time_to_accuracy.png)")
    p.add_argument("--replot", nargs="+", metavar="JSON", help="table and figure of saved --json files; no run")
    p.add_argument("--save-objects", metavar="DIR", help="save each code's final complex object to "
                                                        "DIR/CODE.CASE.NOISE.SEED.npy (--accuracy)")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--install", action="store_true", help="create pty-chi's environment and exit")
    p.add_argument("--venv", default=str(HERE / ".ptychi-venv"))
    p.add_argument("--n", type=int, default=1306)
    p.add_argument("--np", type=int, default=128)
    p.add_argument("--step", type=int, nargs="+", help="raster step (px): timing 37 (one value); with --bound each "
                   "value, passed to mmip simulate (default: the case's)")
    p.add_argument("--epochs", type=int, help="epochs / iterations (default 5 for timing, 150 with --positions)")
    p.add_argument("--dtype", choices=("float32", "float64"), help="ours (default float32; with --accuracy the CLI's)")
    p.add_argument("--engines", nargs="+", default=["lsqml", "epie"])
    p.add_argument("--positions", action="store_true",
                   help="position correction side by side on the paper's cases (jittered positions, true probe)")
    p.add_argument("--cases", nargs="+", help="paper cases (default: phantom cameraman; with --accuracy all four)")
    p.add_argument("--seeds", type=int, help="seeds 0..N-1 (default 3; with --accuracy 5)")
    p.add_argument("--jitter", type=float, help="true positions = raster + uniform ±this (px; default 2 with "
                   "--positions, 0 with --accuracy, where the true positions are given)")
    p.add_argument("--correct-from", type=int, default=10, help="pty-chi: first epoch of position correction")
    p.add_argument("--refine-after", type=int, default=50, help="ours: iterations before the positions move")
    p.add_argument("--bound", action="store_true", help="with --positions: both codes' rms per position against "
                   "the Cramer-Rao bound (:mod:`_ptychi_bound`; object unknown: common shift removed)")
    p.add_argument("--known-object", action="store_true", help="with --positions: --bound with the true object "
                   "given and fixed (ours: mmip reconstruct --freeze x,w --start truth:x,w)")
    _accuracy_flags(p)
    args = p.parse_args()
    venv = Path(args.venv)
    if args.install:
        install(venv)
        return 0
    set_threads(args.threads)
    if args.replot:
        return replot(args.replot, args.figure)
    if not (venv / "bin" / "python").exists() and not (args.accuracy and args.codes == ["ours"]):
        print(f"pty-chi's environment {venv} does not exist: run with --install first", file=sys.stderr)
        return 2
    from mmip_paper import simulate

    from multimodal_ip.io import load_dataset, save_dataset

    threads = args.threads
    print(f"load {os.getloadavg()[0]:.2f}; {threads} thread(s) per code on {os.cpu_count()} cores")
    if args.epochs is None:
        args.epochs = 150 if args.positions or args.accuracy else 5  # a whole run; timing a few epochs
    if args.accuracy:  # ours: mmip reconstruct at its defaults (--ours-flags and the flags above change it)
        args.cases = args.cases or ["phantom", "cameraman", "multi-element", "phantom-large"]
        args.seeds = args.seeds or 5
        return accuracy_study(args, venv)
    args.cases, args.seeds = args.cases or ["phantom", "cameraman"], args.seeds or 3
    args.dtype = args.dtype or "float32"
    args.jitter = 2.0 if args.jitter is None else args.jitter
    if args.positions and (args.bound or args.known_object):
        args.steps = args.step or [None]  # seeds --first-seed.. (--accuracy's flag)
        return bound_study(args, venv, threads, PTYCHI_SCRIPT, ours_positions)
    if args.positions:
        return positions_study(args, venv, threads)
    args.step = (args.step or [37])[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.h5"
        save_dataset(path, simulate("phantom", seed=0, noise=0.03, n=args.n, probe_size=args.np, step=args.step))
        term = load_dataset(path).terms["ptychography"]
        npz = Path(tmp) / "data.npz"
        np.savez(npz, data=np.asarray(term.arrays["data"], dtype=np.float32), probe=term.arrays["probe"],
                 positions=term.arrays["positions"], n=args.n)
        j = term.arrays["data"].shape[0]
        script = Path(tmp) / "run_ptychi.py"
        script.write_text(PTYCHI_SCRIPT)
        rows = []
        for engine in args.engines:
            out = subprocess.run([str(venv / "bin" / "python"), str(script), str(npz), engine, str(args.epochs),
                                  str(threads), "-1"], capture_output=True, text=True, check=False)
            if out.returncode:
                print(f"pty-chi {engine} failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                continue
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        grad, iteration = ours(path, args.epochs, args.dtype)
    print(f"\nphantom n={args.n}, Np={args.np}, J={j}, step {args.step}; probe and positions fixed\n")
    print("| code | what one pass is | seconds per pass |")
    print("|---|---|---|")
    for r in rows:
        print(f"| pty-chi 2.2 {r['engine'].upper()} (batch 100, complex64) | one epoch | {r['s_per_epoch']:.3f} |")
    print(f"| multimodal_ip ({args.dtype}) | one objective + gradient | {grad:.3f} |")
    print(f"| multimodal_ip ({args.dtype}) | one L-BFGS iteration (mean of {args.epochs}) | {iteration:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
