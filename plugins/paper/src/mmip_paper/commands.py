"""``mmip hessian``: the paper's Hessian study (eigenvalue spectra and loss landscapes at the true point), a command
added through ``mmip_register_commands``."""

__all__ = ["HESSIAN"]

from multimodal_ip.cli import Command


def add_arguments(s) -> None:
    from multimodal_ip.cli.common import add_run_flags

    s.add_argument("data")
    s.add_argument("-o", "--output", required=True)
    add_run_flags(s)
    s.add_argument("--dense-max", type=int, default=9000, help="largest size for a dense Hessian")
    s.add_argument("--k", type=int, default=40, help="eigenvalues at each end with Lanczos (large problems)")
    s.add_argument("--grid", type=int, default=21, help="landscape grid points per axis")


def run(args) -> int:
    from multimodal_ip.atomic import staged_folder
    from multimodal_ip.cli.common import build, check_folder
    from multimodal_ip.config import run_config
    from multimodal_ip.errors import ConfigError
    from multimodal_ip.io.problem_builder import balance_reference

    from .hessian import hessian_study

    cfg = run_config(args)
    check_folder(args, [args.data, args.config])
    for k in ("dense_max", "k", "grid"):
        if getattr(args, k) < 1:
            msg = f"--{k.replace('_', '-')} must be >= 1, got {getattr(args, k)}"
            raise ConfigError(msg)
    if cfg["refine"]:
        msg = "--refine: the Hessian study is over the object (x, w) at the true point; run it without --refine"
        raise ConfigError(msg)
    asked = cfg["chunk_memory"]
    ds, joint = build(args.data, cfg, allow_external=args.allow_external_links, plan=_planner(cfg, args))  # no solver
    reference = balance_reference(joint.term_names, ds, cfg["balance_reference"]) if len(joint.term_names) > 1 \
        else joint.term_names[0]
    with staged_folder(args.output, [args.data, args.config]) as stage:  # never through a link already there
        summary = hessian_study(ds, joint, stage, dense_max=args.dense_max, k=args.k, grid=args.grid,
                                reference=reference,
                                run={"chunk_memory": cfg["chunk_memory"], "fitted": cfg["chunk_memory"] != asked})
    print(summary.replace(f"wrote {stage}/", f"wrote {args.output}/"))
    return 0


def _planner(cfg, args):
    """The memory plan of the study (before the data are read): its Hessian blocks, no solver (fitted with smaller
    term blocks, or refused in one line, as a run is: :func:`~multimodal_ip.run_budget.run_planner`)."""
    from multimodal_ip.run_budget import run_planner

    from .hessian import STUDY_VECTORS, study_bytes

    def blocks(space, terms, vector):
        n, landscape = space.size, 40 * args.grid * args.grid  # the parts named as the study's own checks name them
        kind = f"the dense Hessian of {n} unknowns (--dense-max)" if n <= args.dense_max else "Lanczos vectors (--k)"
        return {kind: study_bytes(n, args.dense_max, args.k, args.grid) - landscape,
                f"a loss landscape of {args.grid} x {args.grid} points (--grid)": landscape}

    return run_planner(cfg, extra=blocks, vectors=STUDY_VECTORS)


#: ``mmip hessian DATA -o FOLDER``: the run flags, ``--dense-max``, ``--k``, ``--grid``
HESSIAN = Command(help="Hessian eigenvalues and loss landscapes at the true point", add_arguments=add_arguments,
                  run=run, folder_files=("eigenvalues.png", "landscapes.png", "hessian.json"))
