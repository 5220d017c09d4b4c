"""``bench_ptychi.py --positions --bound``: the scan positions of both codes against the Cramer-Rao bound.

Per case, step and seed: ``mmip simulate CASE --noise 0.03 --position-jitter J --seed S [--step STEP]`` (the file
holds the nominal raster, the true probe); the rms of the band-limited bound (:func:`mmip_ptychography.fisher.
position_bounds` of :func:`~mmip_ptychography.fisher.position_fisher`, model ``"fourier"``, the simulator's windows,
as ``examples/beyond_paper/position_bound.py``) and each code's rms per position,
:math:`\\sqrt{\\mathrm{mean}_j |p_j - p_j^*|^2}`, over the positions whose bound is finite and at most the jitter
(a larger bound says the pattern does not locate its position within the jitter's box: with one such window, nearly
flat, the rms of the phantom's finite bounds at step 20 is 21 px).

* ``--known-object``: the true object given and not optimised, positions corrected from the first epoch / iteration.
  Ours: ``mmip reconstruct d.h5 --terms ptychography --refine positions --freeze x,w --start truth:x,w
  --iterations 200`` (the term's estimator); pty-chi LSQML with ``object_options.optimizable=False``, its position
  correction from epoch 0, ``--epochs`` epochs.
* object unknown: both from the flat start, as ``--positions`` (pty-chi from epoch ``--correct-from``, ours after
  ``--refine-after`` iterations); the common shift (mean offset over the positions with a finite bound) is removed
  from both codes' positions before the rms (the data do not fix it with the object unknown).
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def bound_study(args, venv, threads, script_text, ours_unknown):
    """Rows of case, step, object, bound rms, each code's rms and ratio, and wall times; prints the table.

    Parameters
    ----------
    args : :obj:`argparse.Namespace`
        ``cases``, ``steps``, ``seeds``, ``first_seed``, ``jitter``, ``epochs``, ``correct_from``, ``refine_after``,
        ``dtype``, ``known_object``, ``codes``.
    venv : :obj:`pathlib.Path`
        pty-chi's environment.
    threads : :obj:`int`
        Threads of each code.
    script_text : :obj:`str`
        pty-chi's script (``bench_ptychi.PTYCHI_SCRIPT``).
    ours_unknown : callable
        ``bench_ptychi.ours_positions`` (object unknown).

    Returns
    -------
    :obj:`int`
        The exit status (1 when pty-chi failed).
    """
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        script = tmp / "run_ptychi.py"
        script.write_text(script_text)
        rows = []
        for case in args.cases:
            for step in args.steps:
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    row = _one(args, venv, threads, script, ours_unknown, tmp, case, step, seed)
                    if row is None:
                        return 1
                    rows.append(row)
                    print(json.dumps({k: v for k, v in row.items() if not isinstance(v, list)}), flush=True)
                    if args.json:  # every row so far, with the positions and bounds
                        Path(args.json).write_text(json.dumps(rows))
    obj = "known" if args.known_object else "unknown (common shift removed)"
    print(f"\n3 % noise, jitter ±{args.jitter} px; object {obj}; rms per position over the positions with a finite "
          f"bound <= the jitter; {threads} thread(s) per code\n")
    print("| case | step | seed | object | bound rms (px) | ours rms | ours/bound | pty-chi rms | pty-chi/bound | "
          "time ours / pty-chi (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['step']} | {r['seed']} | {r['object']} | {r['bound']:.3f} | {r['ours']:.3f} | "
              f"{r['ours'] / r['bound']:.2f} | {r['ptychi']:.3f} | {r['ptychi'] / r['bound']:.2f} | "
              f"{r['ours_s']:.1f} / {r['ptychi_s']:.1f} |")
    return 0


def _one(args, venv, threads, script, ours_unknown, tmp, case, step, seed):
    """One case, step and seed: the bound, both codes; a row (dict), or None when pty-chi failed."""
    from _ptychi_accuracy import complex_object
    from mmip_paper import simulate
    from mmip_ptychography.fisher import fisher_weight, position_bounds, position_fisher

    from multimodal_ip.io import save_dataset

    ds = simulate(case, seed=seed, noise=0.03, step=step, position_jitter_px=args.jitter)
    td = ds.terms["ptychography"]
    truth = np.asarray(ds.truth["positions"], dtype=float)
    z, _ = complex_object(ds)  # with the term's coupling coefficients (the paper's cases: ones, one element)
    probe = ds.truth.get("probe", td.arrays["probe"])
    weight = fisher_weight(photons_per_unit=float(td.attrs["photons_per_unit"]))
    bound, _ = position_bounds(position_fisher(z, probe, truth, weight, "fourier"))
    finite = np.isfinite(bound) & (bound <= args.jitter)
    row = {"case": case, "step": int(ds.attrs["step_px"]), "seed": seed, "positions": len(truth),
           "used": int(finite.sum()), "infinite": int(np.isinf(bound).sum()),
           "object": "known" if args.known_object else "unknown",
           "bound": float(np.sqrt(np.mean(bound[finite] ** 2))),
           "nominal": _rms(td.arrays["positions"], truth, finite, not args.known_object)}
    npz = tmp / f"{case}{step}_{seed}.npz"
    np.savez(npz, data=np.asarray(td.arrays["data"], dtype=np.float32), probe=td.arrays["probe"],
             positions=td.arrays["positions"], n=z.shape[0])
    cmd = [str(venv / "bin" / "python"), str(script), str(npz), "lsqml", str(args.epochs), str(threads)]
    if args.known_object:
        np.save(tmp / "object.npy", z)
        cmd += ["0", str(tmp / "object.npy")]
    else:
        cmd += [str(args.correct_from)]
    if "ptychi" in args.codes:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode:
            print(f"pty-chi failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            return None
        r = json.loads(out.stdout.strip().splitlines()[-1])
        row["ptychi"] = _rms(r["positions"], truth, finite, not args.known_object)
        row["ptychi_s"], row["ptychi_positions"] = r["wall_s"], r["positions"]
    else:
        row["ptychi"] = row["ptychi_s"] = float("nan")
    if args.known_object:
        pos, row["ours_s"] = _ours_known(ds, tmp, save_dataset)
    else:
        _, pos, row["ours_s"] = ours_unknown(ds, args.epochs, args.refine_after, args.dtype, True)
    row["ours"] = _rms(pos, truth, finite, not args.known_object)
    row.update(ours_positions=np.asarray(pos).tolist(), truth=truth.tolist(), bounds=bound.tolist())
    return row


def _ours_known(ds, tmp, save_dataset):
    """The command line's known-object calibration (the term's estimator): positions and wall time."""
    from multimodal_ip.io.results import load_result

    path, out = tmp / "d.h5", tmp / "r.h5"
    out.unlink(missing_ok=True)
    save_dataset(path, ds)
    mmip = Path(sys.executable).parent / "mmip"
    t0 = time.perf_counter()
    subprocess.run([str(mmip), "reconstruct", str(path), "-o", str(out), "--terms", "ptychography", "--refine",
                    "positions", "--freeze", "x,w", "--start", "truth:x,w", "--iterations", "200"],
                   check=True, capture_output=True)
    wall = time.perf_counter() - t0
    return np.asarray(load_result(out)["variables"]["positions"], dtype=float), wall


def _rms(positions, truth, finite, remove_shift):
    """rms per position over ``finite``, the mean offset removed when ``remove_shift``."""
    d = (np.asarray(positions, dtype=float) - truth)[finite]
    if remove_shift:
        d = d - d.mean(axis=0)
    return float(np.sqrt(np.mean(np.sum(d**2, axis=1))))
