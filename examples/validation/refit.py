r"""
Stopping on held-out data, then refitting on all of it: ``mmip reconstruct --stop validation`` against the truth
===============================================================================================================

For every case, noise level and seed, three ``mmip reconstruct`` runs of the same file at balance constant ``--c``:
a plain run of ``--iterations`` on all the data (its best true error along the way is the *oracle*), ``--stop
validation`` (10 % held out, patience 10; by default it then refits on all the data to the chosen iteration) and the
same with ``--no-refit`` (the held-out run's best iterate, today's behaviour before the refit). Prints, per case and
noise level, the worst seed and the mean of error / oracle for both, the chosen iteration, and the refit's overhead:
its iterations over the held-out run's (the cost in model evaluations), and the median over seeds of the refitting
command's wall time over that of ``--no-refit`` (the whole command: reading, building, writing).

    python examples/validation/refit.py                  # the four cases, 3 % and 10 %, seeds 0-2, c = 0.01
    python examples/validation/refit.py --c 1            # the weight `mmip tune` chose most often
"""

# %%
# Imports and command line.
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import validation_cases

from multimodal_ip.cli import main
from multimodal_ip.io import load_result, save_dataset
from multimodal_ip.report import markdown_table

parser = validation_cases.study_parser(__doc__, "L-BFGS with align=true")
parser.set_defaults(iterations=200, seeds=3)
parser.add_argument("--c", type=float, default=0.01, help="balance constant of every run")
parser.add_argument("-o", "--output", help="folder for records.json (default: none written)")
args = parser.parse_args()


# %%
# One dataset: the three commands, timed.
def command(data, out, *flags):
    """Run ``mmip reconstruct`` (a stall is accepted: the iterate is still scored); ``(result, seconds)``."""
    common = ["--iterations", str(args.iterations), "--balance-c", str(args.c), "--checkpoint-every", "0",
              "--accept-stall", *(["--solver-option", "align=true"] if args.align else [])]
    t0 = time.perf_counter()
    code = main(["reconstruct", str(data), "-o", str(out), *common, *flags])
    wall = time.perf_counter() - t0
    assert code == 0, f"mmip reconstruct {' '.join(flags)} exited {code}"
    return load_result(out), wall


records = []
with tempfile.TemporaryDirectory() as tmp:
    folder = Path(tmp)
    for case, noise in validation_cases.pairs(args):
        for seed in range(args.seeds):
            data = folder / "data.h5"
            save_dataset(data, validation_cases.dataset(case, noise, seed, args.scale))
            plain, _ = command(data, folder / "plain.h5")
            refit, t_refit = command(data, folder / "refit.h5", "--stop", "validation")
            held, t_held = command(data, folder / "held.h5", "--stop", "validation", "--no-refit")
            along = np.asarray(plain["history"]["error_total"], dtype=float)
            chosen = held["config"]["returned_iteration"]
            rec = {"case": case, "noise": noise, "seed": seed, "oracle": float(along.min()),
                   "oracle_iteration": int(np.argmin(along)), "chosen_iteration": chosen,
                   "refit": float(refit["history"]["error_total"][-1]),
                   "held_out": float(held["history"]["error_total"][chosen]),
                   "plain_at_chosen": float(along[min(max(chosen, 1), len(along) - 1)]),
                   "time_refit_s": t_refit, "time_no_refit_s": t_held,
                   "held_out_iterations": refit["config"]["validation_run"]["iterations"],
                   "refit_iterations": refit["config"]["refit"]["iterations"],
                   "refit_solve_s": refit["config"]["refit"]["wall_s"]}
            records.append(rec)
            print(f"{case} {noise:g} seed {seed}: oracle {rec['oracle']:.4f} at {rec['oracle_iteration']}, chosen "
                  f"{chosen}: refit {rec['refit']:.4f}, held-out fit {rec['held_out']:.4f}; {t_refit:.1f} s vs "
                  f"{t_held:.1f} s", flush=True)

if args.output:
    Path(args.output).mkdir(parents=True, exist_ok=True)
    (Path(args.output) / "records.json").write_text(json.dumps(records, indent=1))

# %%
# Table: worst seed / mean of error / oracle, the chosen and the oracle's iteration, and the refit's time overhead.
rows = []
for case, noise in validation_cases.pairs(args):
    sel = [r for r in records if (r["case"], r["noise"]) == (case, noise)]
    refit = [r["refit"] / r["oracle"] for r in sel]
    held = [r["held_out"] / r["oracle"] for r in sel]
    overhead = [r["time_refit_s"] / r["time_no_refit_s"] for r in sel]
    extra = sum(r["refit_iterations"] for r in sel) / sum(r["held_out_iterations"] for r in sel)
    chosen, best = (np.mean([r[k] for r in sel]) for k in ("chosen_iteration", "oracle_iteration"))
    rows.append([case, f"{noise:g}", f"{np.mean([r['oracle'] for r in sel]):.4f}",
                 f"{max(refit):.3f} / {np.mean(refit):.3f}", f"{max(held):.3f} / {np.mean(held):.3f}",
                 f"{chosen:.0f} ({best:.0f})",
                 f"{extra:.2f}", f"{np.median(overhead):.2f} ({np.median([r['time_no_refit_s'] for r in sel]):.1f} s)"])
print(f"\nc = {args.c:g}{', align' * args.align}, {args.iterations} iterations, {args.seeds} seeds; error / oracle "
      "(the best along a plain run), worst seed / mean\n")
print(markdown_table(["case", "noise", "oracle (mean)", "refit / oracle", "no refit / oracle",
                      "chosen iteration (oracle's)", "refit iterations / held-out run's",
                      "time with / without refit, median (without)"], rows))
