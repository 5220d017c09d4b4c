"""``mmip reconstruct``: one run on a dataset (checkpoints, ``--resume``, MPI, ``--stop validation`` and its refit);
writes a result file."""

__all__ = ["COMMAND", "continue_iterations"]

import json
import sys
import warnings
from pathlib import Path

from ..config import run_config
from ..errors import ConfigError, MultimodalIPError
from ..errors import one_line as _one_line
from ..validation import DEFAULT_FRACTION
from .command import Command
from .common import (
    _final_status,
    _refit,
    _solve_with_progress,
    _whole_data_problem,
    add_run_flags,
    build,
    resolve_stop,
    start_values,
)

#: where a refit after the held-out run starts: the start point (to the chosen iteration) or the best iterate
REFIT_FROM = ("start", "best")
#: iterations on all the data after the held-out run's best iterate b (``refit_from = "best"``) unless given:
#: b // 4, at least 1, at most this (a small problem best at b = 4 over-fits within 2 more; docs/validation.md)
REFIT_ITERATIONS = 10
#: the stopping settings of what comes after the held-out run (a checkpoint of that run resumes with any of them)
_AFTER_HELD = ("refit", "refit_from", "refit_iterations")
#: the settings a checkpoint must share with the run that resumes it
_RESUME_KEYS = ("solver", "terms", "dtype", "solver_options", "term_options", "balance_c", "refine", "refine_after",
                "likelihood", "coupling", "stopping", "refine_bound", "start", "freeze")


def add_arguments(s) -> None:
    s.add_argument("data")
    s.add_argument("-o", "--output", required=True)
    add_run_flags(s)
    s.add_argument("--checkpoint-every", dest="checkpoint_every", type=int)
    s.add_argument("--resume", action="store_true", help="continue from <output>.ckpt.h5")
    s.add_argument("--no-refit", dest="no_refit", action="store_true",
                   help="with --stop validation (or auto's choice of it), return the held-out run's best iterate "
                        "(fitted without the held-out values) instead of refitting on all the data to its iteration "
                        "(run file: [stopping] refit = false)")
    s.add_argument("--refit-from", dest="refit_from", choices=REFIT_FROM,
                   help="with --stop validation: 'start' (default) refits from the start to the chosen iteration; "
                        "'best' continues from the held-out run's best iterate on all the data for --refit-iterations "
                        "(run file: [stopping] refit_from)")
    s.add_argument("--refit-iterations", dest="refit_iterations", type=int,
                   help=f"iterations of --refit-from best on all the data (default: a quarter of the best "
                        f"iteration, 1 to {REFIT_ITERATIONS}; run file: [stopping] refit_iterations)")
    s.add_argument("--mpi", action="store_true",
                   help="split the data over MPI ranks (automatic under mpiexec with more than one rank)")


def _resume_state(args, cfg, ckpt, problem, fingerprint, ds):
    """The solver state of ``ckpt`` for ``--resume``: refused when missing, made from another input, of another
    size or with other settings; its packed vectors in the problem's packing order (a solver's state records its
    own, ``packing``; one without it packed the file's variables, then the refined unknowns)."""
    from ..io.results import load_checkpoint

    if not ckpt.exists():
        msg = f"--resume: no checkpoint {ckpt} (was the run started with this -o?)"
        raise ConfigError(msg)
    resume_state, saved = load_checkpoint(ckpt)
    if saved.get("fingerprint") != fingerprint:
        msg = f"--resume: {ckpt} was made from another input than {args.data} (fingerprints differ); start anew"
        raise ConfigError(msg)
    if resume_state["arrays"]["x"].shape != (problem.space.size,):
        msg = (f"--resume: {ckpt} holds x of shape {resume_state['arrays']['x'].shape}, the problem has "
               f"{problem.space.size} unknowns")
        raise ConfigError(msg)
    space, names = problem.space, resume_state["scalars"].get("packing") or [*ds.space.names, *problem.calibration]
    resume_state["arrays"] = {k: space.repacked(a, names) if a.shape[-1:] == (space.size,) and "history." not in k
                              else a for k, a in resume_state["arrays"].items()}  # the unknowns by name
    for k in _RESUME_KEYS:
        mine, theirs = cfg.get(k), saved.get(k)
        if k == "stopping":  # the checkpoint is of the held-out run, the same with or without a refit after it;
            # no rule: a checkpoint written before --stop auto, whose default was the iterations
            mine, theirs = ({"rule": "iterations", **{n: v for n, v in (d or {}).items() if n not in _AFTER_HELD}}
                            for d in (mine, theirs))
            for d in (mine, theirs):
                if d["rule"] == "validation":  # a validation rule that names no share held the default out
                    d.setdefault("fraction", DEFAULT_FRACTION)
        if json.dumps(theirs, sort_keys=True) != json.dumps(mine, sort_keys=True):
            hint = "; --stop, --validation-fraction and --refit-from set it" if k == "stopping" else ""
            msg = f"--resume: setting {k!r} differs from the checkpoint ({theirs!r} vs {mine!r}){hint}"
            raise ConfigError(msg)
    return resume_state


def _checkpointer(ckpt, cfg, fingerprint, lead, packing=()):
    """The per-iteration callback writing a checkpoint every ``checkpoint_every`` iterations (on the lead rank); a
    write that fails warns once and the run goes on. Its scalars hold the problem's ``packing`` when the solver's
    state does not (a third-party solver's): ``--resume`` reads the vectors by variable name."""
    from ..io.results import save_checkpoint
    from ..safety import deferred_interrupts

    every = max(int(cfg["checkpoint_every"]), 0)
    failed_writes: list[int] = []

    def on_iteration(state):
        if lead and every and state.iteration % every == 0 and state.iteration < cfg["iterations"]:
            try:
                with deferred_interrupts():
                    sd = state.solver.state_dict()  # the packing recorded whatever solver wrote the state
                    sd["scalars"] = {"packing": list(packing), **sd["scalars"]}
                    save_checkpoint(ckpt, sd, cfg, fingerprint)
            except MultimodalIPError as exc:  # a full disk must not end a long run: warn once, go on
                if not failed_writes:
                    print(f"mmip reconstruct: warning: checkpoint not written ({_one_line(exc)}); the run goes on",
                          file=sys.stderr)
                failed_writes.append(state.iteration)

    return on_iteration


def _refit_all(args, cfg, ds, comm, held, lead, start=None):
    """The refit on all the data after a held-out run: ``(problem, result, record)``. The whole data come from the
    dataset already read (each MPI rank rereads its share); no checkpoints are written during the refit: the held-out
    run's last one stays until the result is written, and ``--resume`` replays from it and refits again."""
    if comm is None:
        problem = _whole_data_problem(ds, cfg)
    else:
        ds, problem = build(args.data, dict(cfg, stopping={}), comm=comm, allow_external=args.allow_external_links)
    if (cfg["stopping"] or {}).get("refit_from", "start") == "best":
        return problem, *_continue(problem, cfg, held, lead)
    refit_cfg, res, wall = _refit(problem, cfg, held.returned_iteration, show=lead, start=start)
    return problem, res, _refit_record(held, refit_cfg, res, wall)


def continue_iterations(cfg, best: int) -> int:
    """Iterations of ``refit_from = "best"`` after a held-out run best at iteration ``best``: ``[stopping]
    refit_iterations``, else ``best // 4`` clipped to ``[1, REFIT_ITERATIONS]``.

    Parameters
    ----------
    cfg : :obj:`dict`
        The run configuration (its ``stopping`` table).
    best : :obj:`int`
        The held-out run's best iteration.

    Returns
    -------
    iterations : :obj:`int`
        At least 1.
    """
    given = (cfg["stopping"] or {}).get("refit_iterations")
    return int(given) if given is not None else min(max(int(best) // 4, 1), REFIT_ITERATIONS)


def _continue(problem, cfg, held, lead):
    """``refit_from = "best"``: a fresh run on all the data (``problem``) from the held-out run's best iterate for
    ``refit_iterations``, calibration unknowns refined once the held-out run would have refined them:
    ``(result, record)``; its history numbers the iterations on from the best iterate's (docs/validation.md)."""
    import time
    from dataclasses import replace

    from ..solvers.history import History
    from .common import refine_after

    best = int(held.returned_iteration)
    out = dict(cfg, iterations=continue_iterations(cfg, best), stopping={"rule": "iterations"})
    if cfg["refine"]:
        out["refine_after"] = max(refine_after(cfg) - best, 0)
    t0 = time.perf_counter()
    res = _solve_with_progress(problem, out, "refit", show=lead, start={k: v for k, v in held.arrays.items()})
    res = replace(res, history=History([dict(r, iteration=r["iteration"] + best) for r in res.history.rows]))
    record = _refit_record(held, out, res, time.perf_counter() - t0)
    record["refit"].update(start="best", from_iteration=best)
    return res, record


def _summary(out, res, held, meta) -> str:
    """The line printed once the result is written."""
    last = res.history.last()
    kept = res.returned_row()
    summary = ", ".join(f"{k}={v:.4g}" for k, v in kept.items() if k.startswith(("objective", "error", "validation")))
    which = "" if res.returned_iteration is None else f"; iterate {res.returned_iteration} returned (best validation)"
    if held is not None:
        run = meta["validation_run"]
        how = (f"continued on all the data for {meta['refit']['iterations']} iterations from iterate"
               if meta["refit"].get("start") == "best" else "refit on all the data to iteration")
        which = (f"; {how} {held.returned_iteration}, the best validation of the "
                 f"held-out run ({run['status']} after {run['iterations']} iterations, {run['wall_s']:.1f} s)")
    return (f"wrote {out}: {res.status} after {last['iteration']:.0f} iterations ({last['time_s']:.1f} s){which}; "
            f"{summary}")


def _ranks(args):
    """The communicator of the run's MPI ranks (``--mpi``, or under ``mpiexec`` with more than one rank), else
    ``None``: what :func:`~multimodal_ip.cli.program.main` agrees its check of ``-o`` over."""
    from ..distributed import get_comm, mpi_world_size

    return get_comm() if args.mpi or mpi_world_size() > 1 else None


def _inputs(args, comm):
    """The run's settings and checkpoint path, with the inputs and outputs this rank sees checked (on MPI ranks in
    one agreement: a run file or folder that only one rank cannot read ends every rank)."""
    from ..safety import check_outputs, regular_input
    from ..start import start_file

    cfg = run_config(args)
    regular_input(args.data, "data file")
    inputs = [args.data, args.config, start_file(cfg["start"])]  # the start file too: never the output
    check_outputs([args.output], inputs)
    out = Path(args.output)
    ckpt = out.with_name(out.name + ".ckpt.h5")
    check_outputs([ckpt], inputs)
    if comm is not None and (cfg["stopping"] or {}).get("rule") == "noise":  # refused before any read
        msg = "--stop noise runs in one process (not on MPI ranks); use --stop validation there"
        raise ConfigError(msg)
    return cfg, ckpt


def _stopping(args, cfg):
    """The default rule decided from the file's structure (``auto``'s record), then whether a refit follows."""
    return resolve_stop(args.data, cfg, cfg["terms"], args.allow_external_links), _refit_setting(args, cfg)


def _resumed(args, cfg, ckpt, ds, problem, lead):
    """The start values, the input's fingerprint and the state ``--resume`` continues from (each rank's own reads)."""
    from ..safety import file_fingerprint

    start = start_values(cfg, ds, problem, args.allow_external_links)
    fingerprint = file_fingerprint(args.data) if args.resume or (lead and int(cfg["checkpoint_every"]) > 0) else ""
    resume_state = _resume_state(args, cfg, ckpt, problem, fingerprint, ds) if args.resume else None
    return start, fingerprint, resume_state


def run(args) -> int:
    from ..backend import to_numpy
    from ..distributed import agree
    from ..io import save_result
    from ..run_budget import run_planner
    from ..safety import deferred_interrupts

    def agreed(fn, *a):  # on MPI ranks each rank's own work before a collective ends in an agreement
        return fn(*a) if comm is None else agree(comm, fn, *a)

    comm = _ranks(args)
    cfg, ckpt = agreed(_inputs, args, comm)
    out = Path(args.output)
    auto, refit = agreed(_stopping, args, cfg)
    lead = comm is None or comm.Get_rank() == 0
    plan = run_planner(cfg, comm=comm, release_last=True, resumed=args.resume)  # (--resume: its checkpoint too)
    ds, problem = build(args.data, cfg, comm=comm, allow_external=args.allow_external_links, plan=plan)
    start, fingerprint, resume_state = agreed(_resumed, args, cfg, ckpt, ds, problem, lead)
    on_iteration = _checkpointer(ckpt, cfg, fingerprint, lead, problem.space.packing)
    res = _solve_with_progress(problem, cfg, "reconstruct", resume_state, on_iteration, show=lead, start=start)
    meta = {"returned_iteration": res.returned_iteration, **({"stop_auto": auto} if auto else {})}
    held = None
    # a held-out run that stalled or failed is the result (its status and diagnosis), never hidden by a refit
    if refit and res.returned_iteration is not None and res.status not in ("failed", "stalled"):
        held, problem = res, None  # the held-out problem's memory is freed before the whole data are built
        problem, res, record = _refit_all(args, cfg, ds, comm, held, lead, start)
        meta.update(record)
    if not lead:
        return 0
    arrays = {k: to_numpy(v) for k, v in res.arrays.items()}
    ranks = 1 if comm is None else comm.Get_size()
    extra = {f"start_{k}": to_numpy(v) for k, v in problem.calibration.items()}
    if held is not None:  # the held-out run's history beside the refit's
        extra.update({f"validation_run/history/{k}": v for k, v in held.history.as_arrays().items()})
    with deferred_interrupts():
        save_result(out, arrays, res.history, dict(cfg, data=str(args.data), mpi_ranks=ranks, **meta), res.status,
                    res.message, extra=extra)
        if ckpt.is_file():
            ckpt.unlink()
    print(_summary(out, res, held, meta))
    return _final_status(args, problem, res, label="refit: " if held is not None else "")



def _refit_setting(args, cfg) -> bool:
    """Whether ``--stop validation`` refits on all the data (default; ``--no-refit`` or ``[stopping] refit = false``
    keep the held-out fit); records ``--no-refit`` in ``cfg``."""
    if getattr(args, "no_refit", False):
        cfg["stopping"] = dict(cfg["stopping"] or {}, refit=False)
    for k in ("refit_from", "refit_iterations"):
        if getattr(args, k, None) is not None:
            cfg["stopping"] = dict(cfg["stopping"] or {}, **{k: getattr(args, k)})
    if int((cfg["stopping"] or {}).get("refit_iterations", 1)) < 1:
        msg = f"--refit-iterations must be >= 1; got {cfg['stopping']['refit_iterations']}"
        raise ConfigError(msg)
    spec = cfg["stopping"] or {}
    if spec.get("rule", "iterations") != "validation":
        given = {"refit": "--no-refit / [stopping] refit", "refit_from": "--refit-from",
                 "refit_iterations": "--refit-iterations"}
        for k in (k for k in _AFTER_HELD if k in spec):
            warnings.warn(f"{given[k]} does nothing without --stop validation", stacklevel=2)
        return False
    if not spec.get("refit", True) and any(getattr(args, k, None) is not None for k in ("refit_from",
                                                                                       "refit_iterations")):
        warnings.warn("--refit-from / --refit-iterations do nothing with --no-refit (the held-out fit is returned)",
                      stacklevel=2)
    return bool(spec.get("refit", True))


def _refit_record(held, refit_cfg, res, wall) -> dict:
    """What a result file records of a held-out run and the refit after it (its ``config``)."""
    return {"returned_iteration": None,
            "validation_run": {"status": held.status, "message": held.message,
                               "returned_iteration": held.returned_iteration,
                               "iterations": int(held.history.last()["iteration"]),
                               "wall_s": float(held.history.last()["time_s"])},
            "refit": {"iterations": refit_cfg["iterations"], "refine_after": refit_cfg["refine_after"],
                      "status": res.status, "wall_s": wall}}


COMMAND = Command(help="reconstruct a dataset; writes a result file", add_arguments=add_arguments, run=run,
                  ranks=_ranks)
