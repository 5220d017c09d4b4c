"""Side by side with pty-chi on the same ptychography data: time per full pass over the data (CPU).

    python benchmarks/bench_ptychi.py --install               # once: pty-chi + CPU torch in .ptychi-venv/
    python benchmarks/bench_ptychi.py [--n 1306 --np 128 --step 37] [--epochs 5] [--dtype float32]

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

HERE = Path(__file__).resolve().parent

#: what runs inside pty-chi's environment: reads the .npz written below, runs one engine, prints JSON
PTYCHI_SCRIPT = r"""
import json, sys, time
import numpy as np, torch
import ptychi.api as api
from ptychi.api.task import PtychographyTask

torch.set_num_threads(int(sys.argv[4]))
f = np.load(sys.argv[1])
engine, epochs = sys.argv[2], int(sys.argv[3])
data, probe, pos, n = f["data"], f["probe"], f["positions"], int(f["n"])
options = {"lsqml": api.LSQMLOptions, "epie": api.EPIEOptions}[engine]()
options.data_options.data = data
options.object_options.initial_guess = torch.ones((1, n, n), dtype=torch.complex64)
options.object_options.pixel_size_m = 1.0
options.object_options.optimizable = True
options.object_options.optimizer = api.Optimizers.SGD
options.object_options.step_size = 1.0 if engine == "lsqml" else 0.1
options.probe_options.initial_guess = torch.as_tensor(probe[None, None], dtype=torch.complex64)
options.probe_options.optimizable = False
# pty-chi takes probe centres relative to its origin pixel, round(n / 2) - 0.5 (absolute centres put every window
# off the object: pty-chi then padded its buffers by n / 2 on two sides)
centre = pos + (np.array(probe.shape) - 1) / 2.0 - (np.round(n / 2.0) - 0.5)
options.probe_position_options.position_x_px = centre[:, 1]
options.probe_position_options.position_y_px = centre[:, 0]
options.probe_position_options.optimizable = False
options.reconstructor_options.batch_size = 100
options.reconstructor_options.num_epochs = epochs + 1
if engine == "lsqml":
    options.reconstructor_options.noise_model = api.NoiseModels.GAUSSIAN
task = PtychographyTask(options)
task.run(n_epochs=1)  # first epoch: allocation and warm-up, not timed
t0 = time.perf_counter()
task.run(n_epochs=epochs)
elapsed = time.perf_counter() - t0
print(json.dumps({"engine": engine, "epochs": epochs, "s_per_epoch": elapsed / epochs}))
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


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--install", action="store_true", help="create pty-chi's environment and exit")
    p.add_argument("--venv", default=str(HERE / ".ptychi-venv"))
    p.add_argument("--n", type=int, default=1306)
    p.add_argument("--np", type=int, default=128)
    p.add_argument("--step", type=int, default=37)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--engines", nargs="+", default=["lsqml", "epie"])
    args = p.parse_args()
    venv = Path(args.venv)
    if args.install:
        install(venv)
        return 0
    if not (venv / "bin" / "python").exists():
        print(f"pty-chi's environment {venv} does not exist: run with --install first", file=sys.stderr)
        return 2
    from mmip_paper import simulate

    from multimodal_ip.io import load_dataset, save_dataset

    threads = os.cpu_count() or 1
    print(f"load {os.getloadavg()[0]:.2f} on {threads} cores")
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
                                  str(threads)], capture_output=True, text=True, check=False)
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
