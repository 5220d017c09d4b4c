r"""
Stopping on held-out data: the rule against the truth, at a given balance constant
==================================================================================

For every case, noise level and seed: one joint L-BFGS run of ``--iterations`` with 10 % of every term's values
held out (seed 0) at balance constant ``--c``, recording each iteration's validation loss per term and the true
error. Stopping is a function of that history (a run stopped at iteration k followed the same path up to k), so every
rule is scored on the same runs: for each patience K and each score (the weighted validation total that
``--stop validation`` uses; the per-term losses divided by their start values and summed; the sum of their logs;
one term alone), the iterate it returns against the best error along the run (the oracle). Prints the worst seed and
the mean over seeds of error(returned) / error(oracle), and the mean iteration at which the run would end.

    python examples/validation/stopping.py --c 0.01      # the paper's fixed weight (the study's "stopped" column)
    python examples/validation/stopping.py --c 1         # the weight `mmip tune` chose most often
    python examples/validation/stopping.py --c 1 --align # L-BFGS with align=true (docs/validation.md)

A second table scores the same returned iterates against the error of z = x + i w modulo its global phase.
"""

# %%
# Imports and command line.
import numpy as np
import validation_cases
from mmip_ptychography import best_phase_error

from multimodal_ip.io import build_problem
from multimodal_ip.report import markdown_table
from multimodal_ip.solvers import solve_staged
from multimodal_ip.validation import StopOnValidation

parser = validation_cases.study_parser(__doc__, "L-BFGS with align=true (the phase follows the XRF maps)")
parser.add_argument("--c", type=float, default=0.01, help="balance constant of every run")
parser.add_argument("--patience", default="10,20,30", help="patience values K to score")
args = parser.parse_args()
patiences = [int(k) for k in args.patience.split(",")]


# %%
# The library's rule (StopOnValidation, as `--stop validation` runs it), replayed on a recorded history.
def stopped(score, patience):
    """(returned iteration, last iteration run) of :class:`StopOnValidation` fed a score per iteration."""
    rule, nothing = StopOnValidation(patience), np.empty(0)
    for i, v in enumerate(score):
        if rule.update(i, float(v), nothing):
            return rule.best_iteration, i
    return rule.best_iteration, len(score) - 1


def phase_error(problem, v):
    """Relative error of z = x + i w (every case here has one element, coupling 1) after the best global phase
    factor: the one error component that intensities cannot see and the fluorescence pins only weakly."""
    a, t = problem.space.unpack(np.asarray(v)), problem.truth
    return best_phase_error(a["x"] + 1j * a["w"].sum(0), t["x"] + 1j * t["w"].sum(0))


def scores(history, terms):
    per = {t: np.asarray(history[f"validation_{t}"], dtype=float) for t in terms}
    out = {"weighted total": np.asarray(history["validation_total"], dtype=float),
           "sum of v/v0": sum(v / v[0] for v in per.values()),
           "sum of log v": sum(np.log(v) for v in per.values())}
    out.update({f"{t} alone": v for t, v in per.items()})
    return out


# %%
# Runs.
records = []
for case, noise in validation_cases.pairs(args):
    for seed in range(args.seeds):
        ds = validation_cases.dataset(case, noise, seed, args.scale)
        held = build_problem(ds, balance_c=args.c, validation=0.1)
        along = [phase_error(held, held.start())]
        h = solve_staged(held, held.start(), "lbfgs", maxiter=args.iterations, align=args.align,
                         callback=lambda state, held=held, along=along: along.append(phase_error(held, state.x))
                         ).history
        error, aligned = np.asarray(h["error_total"], dtype=float), np.asarray(along)
        assert len(aligned) == len(error), (len(aligned), len(error))  # one row per iteration and the start
        for name, score in scores(h, held.term_names).items():
            for k in patiences:
                returned, ran = stopped(score, k)
                records.append({"case": case, "noise": noise, "score": name, "patience": k,
                                "ratio": error[returned] / error.min(), "ran": ran,
                                "ratio_phase": aligned[returned] / aligned.min()})
        print(f"{case} {noise:g} seed {seed}: oracle {error.min():.4f} at {int(np.argmin(error))}; modulo the "
              f"global phase {aligned.min():.4f} at {int(np.argmin(aligned))}", flush=True)

# %%
# Table: worst seed / mean over seeds of error(returned) / error(oracle), and the mean last iteration.
names = list(dict.fromkeys(r["score"] for r in records))


def table(column, names):
    rows = []
    for case, noise in validation_cases.pairs(args):
        row = [case, f"{noise:g}"]
        for name in names:
            for k in patiences:
                key = (case, noise, name, k)
                sel = [r for r in records if (r["case"], r["noise"], r["score"], r["patience"]) == key]
                ratios = [r[column] for r in sel]
                row.append(f"{max(ratios):.3f} / {np.mean(ratios):.3f} ({np.mean([r['ran'] for r in sel]):.0f})")
        rows.append(row)
    return markdown_table(["case", "noise", *[f"{n}, K={k}" for n in names for k in patiences]], rows)


label = f"c = {args.c:g}{', align' * args.align}"
print(f"\n{label}; worst seed / mean of error(returned) / error(oracle) (mean last iteration run)\n")
print(table("ratio", names))
print(f"\n{label}; the same with the error of z = x + i w modulo its global phase (returned / best)\n")
print(table("ratio_phase", names[:1]))
