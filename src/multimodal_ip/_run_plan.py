"""The ``plan`` of a run configuration (:func:`multimodal_ip.run_budget.run_planner`): what it counts, its two
phases under MPI (no collective inside :func:`~multimodal_ip.distributed.agree`), and an MPI rank's share of the
terms a plan sees (:func:`share_plan`)."""

__all__ = ["Planner", "share_plan", "releases_last"]

import warnings

import numpy as np

from . import run_budget
from .memory import parse_size


def _refined_space(space, terms, names, registry):
    """``space`` with the calibration unknowns ``names`` appended, shaped as the terms offer their start values (an
    unknown no term offers, or a term whose offer fails on its unchecked input, adds nothing: the build refuses it
    in one line)."""
    from .variables import Variable, VariableSpace

    added: dict = {}
    for td in terms.values() if names else ():
        try:
            offers = registry.get("modality", td.modality).calibration(td)
        except Exception:  # noqa: BLE001, S112 - unchecked input, reported by the build in one line
            continue
        for k in names:
            a = np.asarray(offers[k]) if k in offers and k not in added and k not in space else None
            if a is not None and a.dtype.kind in "fc":
                added[k] = Variable(k, a.shape, np.complex128 if a.dtype.kind == "c" else np.float64)
    return VariableSpace([*space.variables, *added.values()]) if added else space


class Planner:
    """``plan(space, terms, nbytes)``: the run fitted into its memory budget (``cfg`` changed and one warning line
    when its own setting does not fit), the :class:`~multimodal_ip.run_budget.RunEstimate` kept.

    Under MPI, called as is, the plan agrees with the other ranks (a collective). An MPI build runs it in two phases
    instead, each inside :func:`~multimodal_ip.distributed.agree` and with no collective in it: :meth:`fits` (which
    settings this rank's share fits), the agreement on the first setting every rank fits between the two, then the
    plan :meth:`agreed` returns, which keeps that setting.

    Parameters
    ----------
    cfg : :obj:`dict`
        The run configuration, changed in place when the run is fitted.
    models, extra, comm, vectors, release_last, resumed
        As for :func:`~multimodal_ip.run_budget.run_planner`.
    setting : :obj:`int`, optional
        The setting agreed by the ranks (an index in the order tried): kept without communication.
    """

    def __init__(self, cfg, *, models=None, extra=None, comm=None, vectors=None, setting=None, release_last=False,
                 resumed=False):
        self.cfg, self.models, self.extra, self.comm, self.vectors = cfg, models, extra, comm, vectors
        self.setting, self.release_last, self.resumed = setting, bool(release_last), bool(resumed)

    def agreed(self, setting) -> "Planner":
        """This plan keeping the setting ``setting`` the ranks agreed on (no communication).

        Parameters
        ----------
        setting : :obj:`int`
            The index of the setting, as :meth:`fits` orders them (past the last: the refusal).

        Returns
        -------
        plan : :class:`Planner`
            The plan of the read.
        """
        return Planner(self.cfg, models=self.models, extra=self.extra, comm=self.comm, vectors=self.vectors,
                       setting=int(setting), release_last=self.release_last, resumed=self.resumed)

    def fits(self, space, terms, nbytes) -> list:
        """Whether this rank's share fits each setting, in the order tried (no communication, ``cfg`` unchanged).

        Parameters
        ----------
        space, terms, nbytes
            As the loader hands them to a plan.

        Returns
        -------
        fits : :obj:`list` of :obj:`bool`
            One per setting.
        """
        kw, _ = self._inputs(space, terms)
        tried, _ = run_budget._settings(space=kw.pop("space"), terms=terms, data_bytes=nbytes, **kw)
        return [t.fits for t in tried]

    def __call__(self, space, terms, nbytes):
        cfg = self.cfg
        kw, (option, first, chunk) = self._inputs(space, terms)
        est = run_budget.fit_run(kw.pop("space"), terms, nbytes, setting=self.setting, **kw)
        changed = []
        if est.chunk_bytes != chunk:
            cfg["chunk_memory"] = str(est.chunk_bytes)
            changed.append(f"blocks of {est.chunk_bytes / 2**20:g} MiB (--chunk-memory)")
        if option and est.pairs is not None and est.pairs < max(first, 1):
            cfg["solver_options"] = dict(cfg["solver_options"] or {}, **{option: est.pairs})
            changed.append(f"{est.pairs} L-BFGS pair(s) instead of {first}")
        if changed and (self.comm is None or self.comm.Get_rank() == 0):
            warnings.warn(f"memory budget ({run_budget._gib(est.budget)} GiB): the run keeps {' and '.join(changed)} "
                          f"to fit (estimated peak {run_budget._gib(est.total)} GiB: {est.shown()} MiB)", stacklevel=2)
        return est

    def _inputs(self, space, terms):
        """The keywords of :func:`~multimodal_ip.run_budget.fit_run` (with ``space``: the largest model's) and
        ``(option, first, chunk)``: the solver's history option, the pairs asked for (at most the iterations), the
        chunk size asked for."""
        from .config import validation_settings
        from .plugins import get_registry
        from .solvers import check_solver_options, get_solver

        cfg, comm = self.cfg, self.comm
        solver = cfg["solver"] if self.vectors is None else None
        if solver is not None:  # the options are read here before the solver sees them: the solve's one-line check
            check_solver_options(solver, get_solver(solver), cfg["solver_options"] or {})
        registry = get_registry()
        own = tuple(cfg.get("refine") or ())
        space = max((_refined_space(space, terms, (*own, *m), registry)
                     for m in [(), *(self.models(terms) if self.models else ())]), key=lambda sp: sp.size)
        vector = space.size * np.ones(1, cfg["dtype"]).real.itemsize
        parts = dict(self.extra(space, terms, vector) if self.extra else {})
        fraction, _, rule = validation_settings(cfg)[:3]
        if fraction is not None:
            parts["validation"] = (parts.get("validation", 0) + run_budget.measured_values(terms)
                                   + (rule == "validation") * vector)
        if comm is not None and comm.Get_size() > 1:
            parts["MPI sums"] = run_budget.MPI_VECTORS * vector
        option = run_budget.HISTORY.get(solver, (None, None))[0]
        asked = (cfg["solver_options"] or {}).get(option) if option else None
        first = min(int(asked if asked is not None else run_budget.HISTORY[solver][1]),
                    int(cfg["iterations"])) if option else 0
        if self.resumed:  # held through the resumed solve: the stacked pairs the restored ones are views of, x, best x
            parts["resumed checkpoint"] = (2 * first + 2) * vector
        chunk = None if cfg["chunk_memory"] is None else parse_size(cfg["chunk_memory"], allow_zero=True)
        releases = self.release_last and solver is not None and releases_last(cfg, space, registry)
        return (dict(space=space, dtype=cfg["dtype"], solver=solver, iterations=cfg["iterations"], pairs=asked,
                     chunk_bytes=chunk, extra=parts, vectors=self.vectors, comm=comm, registry=registry,
                     release_last=releases),
                (option, first, chunk))


def releases_last(cfg, space, registry) -> bool:
    """Whether the solver of a run command (``cli.common._solve_with_progress``, which sets ``release_last`` where
    the solver takes it and the run does not unset it) lets its correction pairs go before its last step's
    evaluations: the native L-BFGS without a preconditioner (whose last direction would allocate more). Its
    ``method="auto"`` takes scipy's L-BFGS-B, which keeps its own history, on bounded unknowns, a constraint
    (``--regularizer``) or ``--refine-bound``: counted as not releasing.

    Parameters
    ----------
    cfg : :obj:`dict`
        The run configuration.
    space : :class:`~multimodal_ip.VariableSpace`
        The run's unknowns (their bounds).
    registry : :class:`~multimodal_ip.plugins.Registry`
        Where the regularizers are looked up.

    Returns
    -------
    releases : :obj:`bool`
        ``True`` when at most ``iterations - 2`` pairs are held at the solver's peak.
    """
    from .solvers import get_solver

    opts = cfg["solver_options"] or {}
    declared = getattr(get_solver(cfg["solver"]), "options", None) or {}
    if "release_last" not in declared or not opts.get("release_last", True):
        return False
    if opts.get("precondition", declared.get("precondition", "none")) != "none":
        return False
    method = opts.get("method", declared.get("method", "auto"))
    constrained = (space.bounds() is not None or bool(cfg.get("refine_bound"))
                   or any(getattr(registry.get("regularizer", r["name"]), "is_constraint", True)
                          for r in cfg.get("regularizers") or ()))
    return method == "native" or (method == "auto" and not constrained)


class _Share:
    """An unread h5py dataset's share along one axis: its shape and dtype, its values read only when asked."""

    def __init__(self, d, axis, sl):
        self.d, self.axis, self.sl, self.dtype = d, axis, sl, d.dtype
        self.shape = tuple(len(range(*sl.indices(n))) if i == axis else n for i, n in enumerate(d.shape))
        self.ndim, self.size = len(self.shape), int(np.prod(self.shape))

    def __array__(self, dtype=None, copy=None):
        a = self.d[tuple(self.sl if i == self.axis else slice(None) for i in range(self.ndim))]
        return a if dtype is None else a.astype(dtype)

    def __getitem__(self, key):
        return np.asarray(self)[key]


def share_plan(plan, part, precision):
    """The loader's ``plan`` for rank ``part = (rank, size)``: ``plan`` sees the terms and bytes of this rank's
    share of the split data (what it reads); the estimate it returns is kept (its blocks size the build)."""
    from dataclasses import replace

    from .io._reader import _nbytes, compact_dtype
    from .io._schema import split_slice
    from .modality import capabilities
    from .plugins import get_registry

    kept: list = []

    def share(space, terms, nbytes):
        mine = {}
        for name, td in terms.items():
            info = capabilities(get_registry().get("modality", td.modality))
            sl, total = split_slice(td.where(), td.arrays, info.split_axes, part)
            arrays = dict(td.arrays)
            for k, axis in (info.split_axes.items() if sl is not None else ()):
                if k in arrays:
                    as_dtype = compact_dtype(arrays[k].dtype, precision) if k in info.measurements else None
                    nbytes -= _nbytes(arrays[k], None, as_dtype) - _nbytes(arrays[k], (axis, sl), as_dtype)
                    arrays[k] = _Share(arrays[k], axis, sl)
            mine[name] = td if sl is None else replace(td, arrays=arrays, attrs=dict(
                td.attrs, split_total=int(total or 0), split_offset=int(sl.start)))
        kept.append(plan(space, mine, nbytes))

    return share, kept
