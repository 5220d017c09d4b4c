"""Time to accuracy against pty-chi (``bench_ptychi.py --accuracy``): per paper case, noise level and seed, each
code's object error along its run (ours from the solver's history, pty-chi after every epoch), its best and final
error, its wall time and the wall time it needs to reach pty-chi's final error; JSON rows, a markdown table and a
figure of error against wall time.

The problem is the one of ``bench_ptychi.py --positions`` with the true positions fixed: ptychography alone, the
true probe given and fixed, both codes from our flat start x = w_e = 1 (z = 1 + i sum_e a_e; the intensities do
not fix the global phase). The error is that of the complex object ``z = x + i sum_e a_e w_e`` against the truth
(for one element map the error over ``[x; w]``). Times exclude the error evaluation on both sides: ours is the
solver's own clock (``time_s`` of its history: set-up and iterations, not the bookkeeping after each one), pty-chi's
the time spent in ``task.run`` (one call per epoch).
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _ptychi_metrics import final_errors
from _ptychi_ours import ours_cli_trace

#: runs inside pty-chi's environment. argv: npz (data, probe, positions, n, truth, start), epochs, threads, seed,
#: options as JSON ({"reconstructor_options.batch_size": 50, ...}: dotted paths into LSQMLOptions; an enum field
#: takes its member's name), optionally a .npy path the final object is saved to. Prints one JSON line: trace
#: [[seconds, error], ...] (epoch 0 = the start), wall_s.
TRACE_SCRIPT = r"""
import enum, json, sys, time
import numpy as np, torch
import ptychi.api as api
from ptychi.api.task import PtychographyTask

torch.set_num_threads(int(sys.argv[3]))
f = np.load(sys.argv[1])
epochs, seed, extra = int(sys.argv[2]), int(sys.argv[4]), json.loads(sys.argv[5])
data, probe, pos, n, truth, start = f["data"], f["probe"], f["positions"], int(f["n"]), f["truth"], complex(f["start"])
o = api.LSQMLOptions()
# the same problem as ours (see bench_ptychi.py's PTYCHI_SCRIPT): unnormalised FFT, our start (x = w_e = 1:
# z = 1 + i sum_e a_e; the intensities do not fix the global phase), the given probe neither rescaled nor traded
# against the object
o.data_options.data = data * float(probe.size)
o.object_options.initial_guess = torch.full((1, n, n), start, dtype=torch.complex64)
o.object_options.pixel_size_m = 1.0
o.object_options.optimizable = True
o.object_options.optimizer = api.Optimizers.SGD
o.object_options.step_size = 1.0
o.object_options.remove_object_probe_ambiguity.enabled = False
o.probe_options.initial_guess = torch.as_tensor(probe[None, None], dtype=torch.complex64)
o.probe_options.optimizable = False
shift = (np.array(probe.shape) - 1) / 2.0 - (np.round(n / 2.0) - 0.5)
o.probe_position_options.position_x_px = (pos + shift)[:, 1]
o.probe_position_options.position_y_px = (pos + shift)[:, 0]
o.probe_position_options.optimizable = False
o.reconstructor_options.batch_size = 20
o.reconstructor_options.num_epochs = epochs
o.reconstructor_options.random_seed = seed
o.reconstructor_options.noise_model = api.NoiseModels.GAUSSIAN
o.reconstructor_options.rescale_probe_intensity_in_first_epoch = False
for path, value in extra.items():
    *parents, leaf = path.split(".")
    target = o
    for p in parents:
        target = getattr(target, p)
    old = getattr(target, leaf)
    setattr(target, leaf, type(old)[str(value).upper()] if isinstance(old, enum.Enum) else value)
task = PtychographyTask(o)
norm = float(np.linalg.norm(truth))


def error():
    obj = np.asarray(task.get_data_to_cpu("object", as_numpy=True))[0]
    return float(np.linalg.norm(obj - truth) / norm)


trace, spent = [[0.0, error()]], 0.0
for _ in range(epochs):
    t0 = time.perf_counter()
    task.run(n_epochs=1)
    spent += time.perf_counter() - t0
    trace.append([spent, error()])
if len(sys.argv) > 6:  # --save-objects: the final object
    np.save(sys.argv[6], np.asarray(task.get_data_to_cpu("object", as_numpy=True))[0])
print(json.dumps({"trace": trace, "wall_s": spent}))
"""


def parse_options(items, flag):
    """``KEY=VALUE`` strings (repeated flag ``flag``) as a dict, values parsed as bool/int/float/str; ``None`` and
    a message when one has no ``=``."""
    from multimodal_ip.config import parse_value

    out = {}
    for item in items or ():
        if "=" not in item:
            return None, f"{flag} expects KEY=VALUE; got {item!r}"
        k, v = item.split("=", 1)
        out[k.strip()] = parse_value(v)
    return out, None


def complex_object(ds):
    """The truth ``z = x + i sum_e a_e w_e`` of ``ds`` and the coupling coefficients ``a``."""
    td = ds.terms["ptychography"]
    ne = ds.truth["w"].shape[0]
    coef = np.asarray(td.attrs.get("coupling", np.ones(ne)), dtype=float)
    return ds.truth["x"] + 1j * np.tensordot(coef, ds.truth["w"], axes=1), coef


def ptychi_trace(venv, script, npz, args, seed, options, save=None):
    """pty-chi LSQML on ``npz`` in its environment: ``{"trace", "wall_s"}``, or ``None`` and its last error line;
    its final object saved to ``save`` (a .npy path) where given."""
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    out = subprocess.run([str(venv / "bin" / "python"), str(script), str(npz), str(args.epochs), str(args.threads),
                          str(seed), json.dumps(options), *([str(save)] if save else [])], capture_output=True,
                         text=True, check=False, env=env)
    if out.returncode:
        return None, (out.stderr.strip().splitlines() or ["(no message)"])[-1]
    return json.loads(out.stdout.strip().splitlines()[-1]), None


def time_to(trace, target):
    """The first time in ``trace`` ([[s, error], ...]) at which the error is at most ``target``; ``None`` if never."""
    for t, e in trace:
        if e <= target:
            return float(t)
    return None


def accuracy_study(args, venv):
    """Run every case x noise x seed for the codes in ``args.codes``; print the table, write JSON and figure."""
    ours_opts, msg = parse_options(args.ours_option, "--ours-option")
    pc_opts, msg2 = parse_options(args.ptychi_option, "--ptychi-option")
    term_opts, msg3 = parse_options(getattr(args, "ours_term_option", None), "--ours-term-option")
    if msg or msg2 or msg3:
        print(msg or msg2 or msg3, file=sys.stderr)
        return 2
    args.ours_term_options_in = term_opts
    from multimodal_ip.config import DEFAULTS
    from multimodal_ip.errors import MultimodalIPError
    from multimodal_ip.solvers import check_solver_options, get_solver

    solver = args.solver or DEFAULTS["solver"]
    try:
        check_solver_options(solver, get_solver(solver), dict(ours_opts))
    except MultimodalIPError as e:
        print(f"--solver {solver} / --ours-option: {e}", file=sys.stderr)
        return 2
    args.ours_options_in = ours_opts
    from mmip_paper import simulate

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "trace_ptychi.py"
        script.write_text(TRACE_SCRIPT)
        if "ours" in args.codes:  # compile/load numba's kernels and plan the FFTs outside the timed runs
            from argparse import Namespace

            from multimodal_ip.io import save_dataset

            first = simulate(args.cases[0], seed=0, noise=args.noise[0], position_jitter_px=args.jitter or 0.0)
            first = _with_true_positions(first, args.data_model)
            save_dataset(Path(tmp) / "warm.h5", first)
            warm = Namespace(**dict(vars(args), ours_flags=f"{args.ours_flags or ''} --iterations 2"))
            ours_cli_trace(Path(tmp) / "warm.h5", *complex_object(first), warm)
        for case in args.cases:
            for noise in args.noise:
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    ds = _with_true_positions(simulate(case, seed=seed, noise=noise,
                                                       position_jitter_px=args.jitter or 0.0), args.data_model)
                    found = _one(ds, case, noise, seed, args, venv, script, Path(tmp), ours_opts, pc_opts)
                    if isinstance(found, str):
                        print(found, file=sys.stderr)
                        return 1
                    rows += found
    if args.json:
        Path(args.json).write_text(json.dumps(rows))
    report(rows, args.figure)
    return 0


def _with_true_positions(ds, data_model="band-limited"):
    """``ds`` with its file's positions replaced by the true ones (jittered data: ``--jitter``); with
    ``data_model="cubic"`` its patterns made again by our reconstruction's model (cubic windows) at those positions,
    with the same noise level and seed (``mmip simulate`` makes jittered data with band-limited windows)."""
    from dataclasses import replace

    if "positions" not in ds.truth:
        return ds
    td = ds.terms["ptychography"]
    arrays = dict(td.arrays, positions=ds.truth["positions"])
    if data_model == "cubic":
        from mmip_paper.cases import poisson_noise
        from mmip_ptychography import PtychographyModel

        x, w = ds.truth["x"], ds.truth["w"]
        coef = td.attrs.get("coupling")
        model = PtychographyModel(td.arrays["probe"], arrays["positions"], x.shape, w.shape[0], coefficients=coef)
        intens = np.abs(model.forward(np.concatenate([x.ravel(), w.ravel()]))) ** 2
        arrays["data"] = poisson_noise(intens, ds.attrs["noise_level"], np.random.default_rng(ds.attrs["seed"]))[0]
    return replace(ds, terms=dict(ds.terms, ptychography=replace(td, arrays=arrays)))


def _one(ds, case, noise, seed, args, venv, script, tmp, ours_opts, pc_opts):
    """The rows of one dataset (each code in ``args.codes``), or a one-line message when pty-chi failed."""
    z, _ = complex_object(ds)
    td = ds.terms["ptychography"]
    npz = tmp / f"{case}{noise}{seed}.npz"
    common = {"case": case, "noise": noise, "seed": seed, "threads": args.threads, "epochs": args.epochs,
              "jitter": args.jitter or 0.0, "data_model": args.data_model if args.jitter else "raster"}
    found = []
    keep = Path(getattr(args, "save_objects", None) or tmp)  # --save-objects DIR: the final objects kept there
    keep.mkdir(parents=True, exist_ok=True)
    saved = {c: keep / f"{c}.{case}.{noise:g}.{seed}.npy" for c in ("ptychi", "ours")}
    if "ptychi" in args.codes:
        np.savez(npz, data=np.asarray(td.arrays["data"], dtype=np.float32), probe=td.arrays["probe"],
                 positions=td.arrays["positions"], n=z.shape[0], truth=z.astype(np.complex64),
                 start=1 + 1j * complex_object(ds)[1].sum())
        load = os.getloadavg()[0]
        r, err = ptychi_trace(venv, script, npz, args, seed, pc_opts, saved["ptychi"])
        if r is None:
            return f"pty-chi failed on {case} seed {seed}: {err}"
        found.append(dict(common, code="pty-chi", label=_label("pty-chi", args, pc_opts), options=pc_opts,
                          load=load, **r))
    if "ours" in args.codes:  # mmip reconstruct at its defaults on the same data, written as a file
        from multimodal_ip.io import save_dataset

        h5 = tmp / f"{case}{noise}{seed}.h5"
        save_dataset(h5, ds)
        load = os.getloadavg()[0]
        found.append(dict(common, code="ours", label=_label("ours", args, {}), options=dict(args.ours_options_in),
                          load=load, **ours_cli_trace(h5, z, complex_object(ds)[1], args, saved["ours"])))
    target = next((r["trace"][-1][1] for r in found if r["code"] == "pty-chi"), None)
    for r in found:
        errs = [e for _, e in r["trace"]]
        r.update(best=min(errs), best_iteration=int(np.argmin(errs)), final=errs[-1], ptychi_final=target,
                 t_to_ptychi_final_s=None if target is None else time_to(r["trace"], target),
                 **final_errors(np.load(saved["ptychi" if r["code"] == "pty-chi" else "ours"]), z,
                                td.arrays["probe"], td.arrays["positions"]))
        print(f"{case} {noise:g} seed {seed} {r['label']}: best {r['best']:.4f} (#{r['best_iteration']}), final "
              f"{r['final']:.4f} (phase removed {r['final_aligned']:.4f}, lit pixels {r['final_lit']:.4f}), "
              f"{r['wall_s']:.1f} s, to pty-chi's final {_fmt_t(r['t_to_ptychi_final_s'])} (load {r['load']:.1f})",
              flush=True)
    return found


def _label(code, args, options):
    """The row's code as the table shows it."""
    extra = "".join(f", {k}={v}" for k, v in sorted(options.items()))
    if code == "pty-chi":
        return f"pty-chi 2.2 LSQML{extra}"
    extra = "".join(f", {k}={v}" for k, v in sorted({**args.ours_options_in,
                                                        **getattr(args, "ours_term_options_in", {})}.items()))
    given = [f"--{k} {getattr(args, k)}" for k in ("solver", "dtype", "likelihood") if getattr(args, k) is not None]
    given += [f"loss={args.loss}"] * (args.loss is not None) + ([args.ours_flags] if args.ours_flags else [])
    return f"multimodal_ip, mmip reconstruct {' '.join(given) if given else 'defaults'}{extra}"


def _fmt_t(t):
    return "not reached" if t is None else f"{t:.1f} s"


def report(rows, figure_path=None):
    """Print the markdown table of ``rows`` (mean ± std over seeds) and draw the figure when a path is given.

    The times to pty-chi's final and best errors are read from the traces against the default pty-chi run of the
    same data (case, jitter, noise, seed), else any pty-chi run of it; ``-`` where none is in ``rows``."""
    ref = {}
    for r in sorted(rows, key=lambda r: r["label"] != "pty-chi 2.2 LSQML"):
        if r["code"] == "pty-chi":
            ref.setdefault(_data(r), r)
    groups = {}
    for r in rows:
        groups.setdefault((_case(r), r["noise"], r["label"]), []).append(r)
    print("\n| case | noise | code | best error | final error | wall time (s) | time to pty-chi's final (s) | "
          "time to pty-chi's best (s) | speed-up to pty-chi's final | final, phase removed | its lit pixels |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (case, noise, label), rs in groups.items():
        best, final, wall = (np.array([r[k] for r in rs], dtype=float) for k in ("best", "final", "wall_s"))
        cols = []
        for key in ("final", "best"):
            targets = [(r, ref[_data(r)][key]) for r in rs if _data(r) in ref]
            reached = [t for t in (time_to(r["trace"], e) for r, e in targets) if t is not None]
            cols.append("-" if not targets else f"{np.mean(reached):.1f} ({len(reached)}/{len(targets)})"
                        if reached else f"not reached (0/{len(targets)})")
        print(f"| {case} | {noise * 100:g} % | {label} | {_ms(best)} | {_ms(final)} | {wall.mean():.1f} | "
              f"{cols[0]} | {cols[1]} | {_speedup(rs, ref)} | {_ms_of(rs, 'final_aligned')} | "
              f"{_ms_of(rs, 'final_lit')} |")
    loads = [r["load"] for r in rows]
    print(f"\n{len(rows)} runs on {rows[0]['threads']} thread(s) each; load {min(loads):.1f}-{max(loads):.1f}; "
          "times to pty-chi's errors: mean over the seeds that reach them (reached/seeds); speed-up: median over "
          "seeds of pty-chi's time to its final error / this code's")
    if figure_path:
        figure(rows, figure_path)


def _speedup(rs, ref):
    """Median over seeds of pty-chi's time to its final error over this row's time to it: both runs of a seed ran
    one after the other on the same data, so the ratio holds under a load that changes between seeds."""
    ratios = []
    for r in rs:
        p = ref.get(_data(r))
        if p is not None:
            mine, theirs = time_to(r["trace"], p["final"]), time_to(p["trace"], p["final"])
            if mine and theirs:
                ratios.append(theirs / mine)
    return f"{np.median(ratios):.1f}x" if ratios else "-"


def _data(r):
    """What identifies the data of a row: case, jitter, data model, noise, seed."""
    return (r["case"], r.get("jitter", 0.0), r.get("data_model", "raster"), r["noise"], r["seed"])


def _case(r):
    """The row's case, with its jitter when the data were made at jittered (true) positions."""
    if not r.get("jitter"):
        return r["case"]
    made = "" if r.get("data_model", "band-limited") == "band-limited" else f", {r['data_model']} data"
    return f"{r['case']} (jitter ±{r['jitter']:g} px{made})"


def _ms_of(rs, key):
    """:func:`_ms` of ``key`` over the rows that have it (rows of earlier runs may not: ``-``)."""
    v = np.array([r[key] for r in rs if key in r], dtype=float)
    return _ms(v) if len(v) else "-"


def _ms(v):
    return f"{v.mean():.4f} ± {v.std(ddof=1):.4f}" if len(v) > 1 else f"{v.mean():.4f}"


def figure(rows, path):
    """Object error against wall time, one panel per case, every run a line (colour: code, style: noise)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(dict.fromkeys(_case(r) for r in rows))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    noises = sorted({r["noise"] for r in rows})
    cols = min(len(cases), 2)
    fig, axes = plt.subplots((len(cases) + cols - 1) // cols, cols, figsize=(6 * cols, 4 * ((len(cases) + 1) // 2)),
                             squeeze=False)
    for ax, case in zip(axes.ravel(), cases, strict=False):
        for r in (r for r in rows if _case(r) == case):
            t, e = np.array(r["trace"]).T
            ci, ni = labels.index(r["label"]), noises.index(r["noise"])
            first = r["seed"] == min(q["seed"] for q in rows if _case(q) == case)
            ax.plot(np.maximum(t, 1e-2), e, color=f"C{ci}", ls=("-", "--", ":")[ni % 3], lw=1, alpha=0.7,
                    label=f"{r['label']}, {r['noise'] * 100:g} %" if first else None)
            if r.get("held_trace"):  # the held-out run before a refit (fitted on 90 % of the data; not returned)
                th, eh = np.array(r["held_trace"]).T
                ax.plot(np.maximum(th, 1e-2), eh, color=f"C{ci}", ls=("-", "--", ":")[ni % 3], lw=0.5, alpha=0.25)
        ax.set_xscale("log")
        ax.set_title(case)
        ax.set_xlabel("wall time (s)")
        ax.set_ylabel("object error")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(cases):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"figure: {path}")


def replot(paths, figure_path):
    """The table and figure of saved JSON rows (``--json`` of earlier runs), without running anything."""
    rows = []
    for p in paths:
        rows += json.loads(Path(p).read_text())
    report(rows, figure_path)
    return 0


def set_threads(threads):
    """Our side on ``threads`` threads: scipy.fft workers and numba's pool (before numba is imported)."""
    os.environ["MMIP_FFT_WORKERS"] = str(threads)
    os.environ["NUMBA_NUM_THREADS"] = str(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "numba" in sys.modules:
        sys.modules["numba"].set_num_threads(threads)
