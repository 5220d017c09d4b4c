r"""
Cramer-Rao bound of the scan positions of a paper case
======================================================

The smallest rms error an unbiased estimate of each scan position can reach from its diffraction pattern, with the
object and probe known (the true ones, at the true positions): per position
:math:`\sqrt{\operatorname{tr} F_j^{-1}}`, :math:`F_j` the Poisson Fisher information of its pattern
(:func:`mmip_ptychography.fisher.position_fisher`), for the band-limited Fourier-shift windows the simulator made
the data with and for the reconstruction's cubic windows. ``--nuisance`` adds the bound with the object and probe
unknown (:func:`mmip_ptychography.fisher.nuisance_fisher`: one conjugate-gradient solve per position coordinate; slow
on the full cases). ``--object-unknown`` adds the bound with the object unknown and the probe known (as a run that
refines the positions only), at full size (:func:`mmip_ptychography.nuisance_full.nuisance_fisher_full`: the exact
Schur complement, batched single-precision solves with a second-order correction), from the ptychography alone and,
``--xrf``, with the XRF's Poisson information on the object added (the joint run's; ``--xrf-samples N``: its rms
by Hutchinson's estimate, :func:`mmip_ptychography.nuisance_trace.nuisance_trace_samples`).

    python examples/beyond_paper/position_bound.py --case cameraman --noise 0.03 --jitter 2 --seed 17
    python examples/beyond_paper/position_bound.py --step 10 --seed 4 --object-unknown --xrf --xrf-samples 16
"""

# %%
# Imports and command line.
import argparse
import time

import numpy as np
from mmip_paper import simulate
from mmip_ptychography.fisher import fisher_weight, nuisance_bounds, nuisance_fisher, position_bounds, position_fisher
from mmip_ptychography.nuisance_full import ObjectGaussNewton, nuisance_fisher_full, poisson_fisher_operator
from mmip_ptychography.nuisance_trace import nuisance_trace_samples

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
parser.add_argument("--case", default="cameraman")
parser.add_argument("--n", type=int)
parser.add_argument("--probe-size", type=int)
parser.add_argument("--step", type=int)
parser.add_argument("--noise", type=float, default=0.03)
parser.add_argument("--jitter", type=float, default=2.0)
parser.add_argument("--seed", type=int, default=17)
parser.add_argument("--nuisance", action="store_true", help="also the bound with the object and probe unknown")
parser.add_argument("--probe-known", action="store_true", help="the nuisance bound with the probe known")
parser.add_argument("--rtol", type=float, default=1e-3,
                    help="CG tolerance of the nuisance bound (1e-3 and 1e-4 agree to 0.04 %%; measured)")
parser.add_argument("--object-unknown", action="store_true",
                    help="the exact bound with the object unknown, the probe known, at full size")
parser.add_argument("--xrf", action="store_true", help="with --object-unknown: also with the XRF's information")
parser.add_argument("--windows", choices=("cubic", "fourier"), default="cubic", help="window model of --object-unknown")
parser.add_argument("--full-rtol", type=float, default=1e-2, help="CG tolerance of --object-unknown (corrected)")
parser.add_argument("--xrf-samples", type=int, default=0,
                    help="with --xrf: estimate its rms by this many Hutchinson samples instead of exactly")
parser.add_argument("--save", help="with --object-unknown: save the Schur complement to this .npy")
args = parser.parse_args()

# %%
# The case: the data's photon scale, the true object, probe and positions.
ds = simulate(args.case, seed=args.seed, noise=args.noise, n=args.n, probe_size=args.probe_size, step=args.step,
              position_jitter_px=args.jitter)
term = ds.terms["ptychography"]
coef = np.asarray(term.attrs.get("coupling", np.ones(len(ds.truth["w"]))), dtype=float)
z = ds.truth["x"] + 1j * np.tensordot(coef, ds.truth["w"], axes=1)
probe = ds.truth.get("probe", term.arrays["probe"])
pos = ds.truth.get("positions", term.arrays["positions"])
weight = fisher_weight(photons_per_unit=float(term.attrs["photons_per_unit"]))
print(f"{args.case}: n {z.shape[0]}, probe {probe.shape[0]}, step {ds.attrs['step_px']}, {len(pos)} positions, "
      f"noise {args.noise}, photons per unit {term.attrs['photons_per_unit']:.4g}")


def _line(label, bound, seconds):
    finite = bound[np.isfinite(bound)]
    print(f"| {label} | {np.sqrt(np.mean(finite**2)):.3f} | {np.median(finite):.3f} | {finite.max():.3f} | "
          f"{len(bound) - len(finite)} | {seconds:.1f} |")


print("| bound | rms (px) | median | max | infinite | time (s) |\n|---|---|---|---|---|---|")
for model in ("fourier", "cubic"):
    t = time.perf_counter()
    bound, _ = position_bounds(position_fisher(z, probe, pos, weight, model))
    _line(f"object and probe known, {model} windows", bound, time.perf_counter() - t)
if args.nuisance:
    t = time.perf_counter()
    schur = nuisance_fisher(z, probe, pos, weight, refine_probe=not args.probe_known, rtol=args.rtol)
    bound, _ = nuisance_bounds(schur)
    _line("object" + ("" if args.probe_known else " and probe") + " unknown, cubic windows, common shift removed",
          bound, time.perf_counter() - t)


# %%
# The object unknown, the probe known, every position coordinate solved (a progress line per batch of eight). The
# XRF map sees Im z = a w (one element map): its Poisson information p M^T diag(1/M w) M on w, divided by a^2.
def _xrf_fisher(dataset, coefficient):
    from mmip_fluorescence import FluorescenceMap
    from mmip_scanprobe import split_positions

    xrf = dataset.terms["fluorescence"]
    kernel, w = np.asarray(xrf.arrays["kernel"], dtype=float), np.asarray(dataset.truth["w"], dtype=float)
    corners, _ = split_positions(np.asarray(xrf.arrays["positions"], dtype=float), w.shape[1:], kernel.shape,
                                 allow_outside=True)
    m = FluorescenceMap(kernel, corners, w.shape[1:], 1)
    apply, diagonal_of = poisson_fisher_operator(m.matvec, m.rmatvec, m.matvec(w.ravel()),
                                                 float(xrf.attrs["photons_per_unit"]))
    diag = diagonal_of(FluorescenceMap(kernel**2, corners, w.shape[1:], 1).rmatvec).reshape(w.shape[1:])
    return (lambda d: apply(d) / coefficient**2), diag / coefficient**2


if args.object_unknown:
    if len(coef) != 1:
        msg = f"--object-unknown: one element map expected (Im z = a w); got {len(coef)}"
        raise SystemExit(msg)
    known, _ = position_bounds(position_fisher(z, probe, pos, weight, args.windows))
    gn = ObjectGaussNewton(z, probe, pos, weight, model=args.windows, single=True)
    schur, info = nuisance_fisher_full(gn, rtol=args.full_rtol, log=print)
    bound, _ = nuisance_bounds(schur)
    label = f"object unknown, probe known, {args.windows} windows"
    _line(f"{label}, ptychography, common shift removed", bound, info["seconds"])
    print(f"ratio to the known-object bound ({args.windows}): rms {np.sqrt(np.mean(bound**2) / np.mean(known**2)):.3f}"
          f"; CG iterations {int(info['iterations'].min())}-{int(info['iterations'].max())} per column, "
          f"{info['unconverged']} unconverged; correction {info['correction']:.2e}")
    if args.save:
        np.save(args.save, schur)
    if args.xrf:
        with_xrf = ObjectGaussNewton(z, probe, pos, weight, model=args.windows, imag_fisher=_xrf_fisher(ds, coef[0]),
                                     single=True)
        t = time.perf_counter()
        if args.xrf_samples:  # Hutchinson, the ptychography's exact trace as control variate (same v for both)
            alone, _ = nuisance_trace_samples(gn, args.xrf_samples, rtol=args.full_rtol, log=print)
            joint, it = nuisance_trace_samples(with_xrf, args.xrf_samples, rtol=args.full_rtol, log=print)
            diff = joint - alone
            trace = np.sum(bound**2) + diff.mean()
            error = diff.std(ddof=1) / np.sqrt(len(diff)) / (2 * len(pos) * np.sqrt(trace / len(pos)))
            print(f"| {label}, ptychography + XRF, common shift removed (Hutchinson, {args.xrf_samples} samples) | "
                  f"{np.sqrt(trace / len(pos)):.4f} +- {error:.4f} | | | | {time.perf_counter() - t:.1f} |")
            print(f"without the control variate: {np.sqrt(joint.mean() / len(pos)):.3f}; ptychography alone "
                  f"{np.sqrt(alone.mean() / len(pos)):.3f} (exact {np.sqrt(np.mean(bound**2)):.3f})")
        else:  # exact: about three times the iterations of the ptychography alone (measured on a 64 px case)
            schur, info = nuisance_fisher_full(with_xrf, rtol=args.full_rtol, log=print)
            _line(f"{label}, ptychography + XRF, common shift removed", nuisance_bounds(schur)[0], info["seconds"])
