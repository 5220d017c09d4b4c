"""Our side of ``bench_ptychi.py --accuracy``: ``mmip reconstruct FILE --terms ptychography`` at the CLI's defaults
(plus ``--ours-flags``), run through the command's own functions so the object error can be taken after every
iteration.

At the defaults a run of one data term stops on held-out validation and refits on all the data to the iteration it
chose (``--stop auto``, docs/validation.md). Its trace is the refit's, offset by what came before it: the held-out
run's wall time (its solver clock) and the build of the whole-data problem. So the time to an error counts the
held-out run in full plus the refit until it reaches that error; the held-out run's own errors (fitted on 90 % of
the data, never returned) are kept as ``held_trace`` and not scored. With ``--refit-from best`` the refit continues
from the held-out run's best iterate: the trace is the held-out run's up to that iterate, then the refit's after
the whole held-out run and the build. With ``--stop iterations``, ``--stop noise`` or ``--no-refit`` the trace is
the one run's (up to the returned iterate).
"""

import shlex
import time

import numpy as np


def cli_config(path, args):
    """The run configuration ``mmip reconstruct path --terms ptychography`` gives with ``args.ours_flags`` (and the
    bench's ``--solver``/``--dtype``/``--likelihood``/``--loss``/``--ours-option``/``--ours-term-option`` where
    given), its stopping rule decided as the command decides it: ``(cfg, why, parsed command line)``."""
    from multimodal_ip.cli import build_parser
    from multimodal_ip.cli.common import resolve_stop
    from multimodal_ip.config import run_config

    flags = shlex.split(args.ours_flags or "")
    for name in ("solver", "dtype", "likelihood"):
        if getattr(args, name, None) is not None:
            flags += [f"--{name}", str(getattr(args, name))]
    cli = build_parser().parse_args(["reconstruct", str(path), "-o", f"{path}.out.h5", "--terms", "ptychography",
                                     *flags])
    cfg = run_config(cli)
    term = dict(getattr(args, "ours_term_options_in", {}) or {})
    if args.loss is not None:
        term["loss"] = args.loss
    if term:
        cfg["term_options"] = dict(cfg["term_options"], ptychography=dict(
            cfg["term_options"].get("ptychography", {}), **term))
    cfg["solver_options"] = dict(cfg["solver_options"], **(getattr(args, "ours_options_in", {}) or {}))
    return cfg, resolve_stop(path, cfg, cfg["terms"]), cli


def _traced(problem, cfg, error, desc, start=None):
    """Solve as the command does (from ``start``, ``{variable: array}``, where given), the error after every
    iteration: ``(result, [[s, error], ...])``."""
    from multimodal_ip.cli.common import _solve_with_progress
    from multimodal_ip.start import start_point

    errors = {0: error(problem, start_point(problem, start))}

    def on_iteration(state):
        errors[int(state.iteration)] = error(problem, state.x)

    res = _solve_with_progress(problem, cfg, desc, on_iteration=on_iteration, show=False, start=start)
    h = res.history
    trace = [[float(t), errors[int(k)]] for k, t in zip(h["iteration"], h["time_s"], strict=True) if int(k) in errors]
    return res, trace


def ours_cli_trace(path, z, coef, args, save=None):
    """``mmip reconstruct`` at its defaults on the data file ``path`` (truth ``z``, coupling ``coef``):
    ``{"trace", "wall_s", "status", "stop", ...}`` (see the module's docstring for what the times count); the
    returned complex object ``x + i sum_e a_e w_e`` saved to ``save`` (a .npy path) where given."""
    from multimodal_ip.cli.common import _refit_config, _whole_data_problem, build
    from multimodal_ip.cli.reconstruct import _refit_setting, continue_iterations

    norm = float(np.linalg.norm(z))

    def complex_of(a):
        return np.asarray(a["x"], dtype=float) + 1j * np.tensordot(coef, np.asarray(a["w"], dtype=float), axes=1)

    def error(problem, v):
        return float(np.linalg.norm(complex_of(problem.space.unpack(v)) - z) / norm)

    def saved(result, out):
        if save:
            np.save(save, complex_of(result.arrays))
        return out

    cfg, why, cli = cli_config(path, args)
    refit = _refit_setting(cli, cfg)
    ds, problem = build(path, cfg)
    held, trace = _traced(problem, cfg, error, "ours")
    held_wall = float(held.history.last()["time_s"])
    out = {"stop": why or cfg["stopping"].get("rule", "iterations"), "status": held.status}
    if held.returned_iteration is None:
        return saved(held, dict(out, trace=trace, wall_s=held_wall))
    if not refit or held.status == "failed":  # the held-out iterate itself, returned at the end of its run
        kept = [p for p, k in zip(trace, range(len(trace))) if k <= held.returned_iteration]
        return saved(held, dict(out, trace=[*kept, [held_wall, kept[-1][1]]], wall_s=held_wall, held_trace=trace))
    del problem
    t0 = time.perf_counter()
    whole = _whole_data_problem(ds, cfg)
    offset = held_wall + time.perf_counter() - t0
    best = held.returned_iteration
    if cfg["stopping"].get("refit_from", "start") == "best":  # on from the best iterate: the held-out run's path
        # up to it is the returned path's first part
        ccfg = dict(cfg, iterations=continue_iterations(cfg, best), stopping={"rule": "iterations"})
        res, refit_trace = _traced(whole, ccfg, error, "refit", start=dict(held.arrays))
        shifted = trace[:best + 1] + [[offset + t, e] for t, e in refit_trace[1:]]
    else:
        res, refit_trace = _traced(whole, _refit_config(cfg, best), error, "refit")
        shifted = [[offset + t, e] for t, e in refit_trace]
    return saved(res, dict(out, trace=shifted, wall_s=shifted[-1][0], status=res.status, held_trace=trace,
                           held_iterations=int(held.history.last()["iteration"]), returned_iteration=best))

