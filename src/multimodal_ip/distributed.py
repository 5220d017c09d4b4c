r"""Data split across MPI ranks along each modality's ``split_axes``; shared variables replicated.

Each rank builds the data terms from its own share of the split data (reading only that
slice of the HDF5 file); terms whose modality declares no split are counted once (rank 0);
objective values, gradients and Gauss-Newton products are summed
over ranks through pylops-mpi (the adjoint of an ``MPIVStack`` over a ``SCATTER``
``DistributedArray``), so every rank holds the same numbers and the solvers run unchanged,
in lockstep. Regularizers are evaluated once, on rank 0. Reading, checking and building each rank's share, and each
evaluation's local work, end in an agreement (:func:`agree`): a failure on one rank ends every rank with the same
error. No collective runs inside an agreement (the memory plan is agreed between two).
"""

__all__ = ["DistributedProblem", "build_distributed_problem", "get_comm", "mpi_world_size", "agree"]

import contextlib
import importlib
import os

import numpy as np

from ._run_plan import share_plan as _share_plan
from .backend import get_array_module
from .errors import ConfigError
from .problem import JointProblem, Linearization, align
from .problem.linearization import _total_dict
from .variables import VariableSpace

_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS")


def mpi_world_size() -> int:
    """Number of ranks announced by the MPI launcher's environment (1 when not under ``mpiexec``).

    Returns
    -------
    size : :obj:`int`
        The launcher's number of ranks, or 1.

    Raises
    ------
    ConfigError
        The launcher's variable is not a positive integer.
    """
    for var in _SIZE_VARS[:2]:
        text = os.environ.get(var, "").strip()
        if text:
            if not text.isdigit() or int(text) < 1:
                msg = f"{var}={text!r}: expected the positive number of MPI ranks set by the launcher"
                raise ConfigError(msg)
            return int(text)
    return 1


def get_comm():
    """``mpi4py.MPI.COMM_WORLD``, with a clear error where mpi4py is missing.

    Returns
    -------
    comm : :obj:`mpi4py.MPI.Comm`
        The world communicator.

    Raises
    ------
    ConfigError
        mpi4py cannot be imported (on this rank; the others wait in ``MPI_Init``), or pylops-mpi (any rank: all).
    """
    def need(module):
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            msg = f"MPI runs need mpi4py and pylops-mpi: pip install mpich mpi4py pylops-mpi ({exc})"
            raise ConfigError(msg) from exc

    comm = need("mpi4py.MPI").COMM_WORLD  # the ranks then agree: one rank without pylops-mpi ends every rank
    agree(comm, need, "pylops_mpi")  # (the reductions use it)
    return comm


def agree(comm, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on every rank, then one agreement (an ``allgather`` of each rank's outcome): where
    any rank failed, every rank raises the failure of the lowest such rank, with the same class and line (bad input
    read by one rank only, such as a NaN in its share of the positions, ends every rank with exit 2 instead of
    leaving the others waiting in a reduction the failed rank never joins).

    Parameters
    ----------
    comm : :obj:`mpi4py.MPI.Comm`
        Communicator every rank calls this with.
    fn : :obj:`callable`
        Work of this rank.
    *args, **kwargs
        Passed to ``fn``.

    Returns
    -------
    value : :obj:`object`
        What ``fn`` returned on this rank.

    Raises
    ------
    MultimodalIPError, MemoryError
        This rank's or another rank's failure (the message names that rank). A bug (any other exception) is
        re-raised as is on its rank and as a ``RuntimeError`` naming it on the others. A failure an agreement
        inside ``fn`` raised (on every rank) is raised again as is.
    """
    from . import errors

    outcome, mine = None, None
    try:
        value = fn(*args, **kwargs)
    except (errors.MultimodalIPError, MemoryError) as exc:
        outcome, mine = (type(exc).__name__, str(exc)), exc
    except Exception as exc:  # noqa: BLE001 - a bug on one rank must end the others too, not leave them waiting
        outcome, mine = ("bug", f"{type(exc).__name__}: {exc}"), exc
    outcomes = comm.allgather(outcome)
    failed = [(r, o) for r, o in enumerate(outcomes) if o is not None]
    if not failed:
        return value
    rank, (kind, text) = failed[0]
    if mine is not None and ((rank == comm.Get_rank() and kind == "bug") or getattr(mine, "mmip_agreed", False)):
        mine.mmip_agreed = True  # type: ignore[union-attr]
        raise mine  # a bug, on its rank; or a failure an agreement inside ``fn`` already ended every rank with
    where = f" (MPI rank {rank} of {comm.Get_size()})"
    cls = getattr(errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.MultimodalIPError)):
        cls = errors.MultimodalIPError
    failure = MemoryError(text + where) if kind == "MemoryError" else RuntimeError(
        f"MPI rank {rank} of {comm.Get_size()} failed: {text}") if kind == "bug" else cls(text + where)
    failure.mmip_agreed = True  # type: ignore[union-attr]  # (an agreement around this one raises it as is)
    raise failure from None


def _check_ranks(ds, size) -> None:
    """Every split term has at least one entry of its split axis per rank."""
    for name, td in ds.terms.items():
        total = td.attrs.get("split_total")
        if total is not None and int(total) < size:
            msg = (f"{ds.source}:/terms/{name}: {int(total)} entries to split over {size} MPI ranks; run with at "
                   f"most {int(total)} ranks (mpiexec -n {int(total)})")
            raise ConfigError(msg)


class DistributedProblem:
    r"""A :class:`~multimodal_ip.JointProblem` whose data terms are split across ranks: the sum over ranks of each
    rank's share, built by composition around that share (its linearization is the share's
    :meth:`~multimodal_ip.problem.Linearization.reduced` by the sum over ranks). An
    :class:`~multimodal_ip.problem.objective.Objective`: the solvers run it unchanged, in lockstep on every rank.

    Parameters
    ----------
    local : :class:`~multimodal_ip.JointProblem`
        This rank's terms (its share of the split data) over the full, replicated variables.
    comm : ``mpi4py.MPI.Comm``
    replicated : sequence of :obj:`str`, optional
        Terms every rank holds whole (their modality declares no split): counted once, on rank 0.
    agreed : :obj:`bool`, optional
        Each evaluation's local work (objectives, linearization, term gradients) ends in an agreement (:func:`agree`)
        before its sums, so that a rank's failure (its share out of memory) ends every rank instead of a hang.
    """

    def __init__(self, local: JointProblem, comm, replicated=(), agreed=True):
        self.comm, self.agreed = comm, bool(agreed)
        self.rank = comm.Get_rank()
        self.replicated = tuple(replicated)
        self.whole = local  # this rank's terms at their true weights: the one state every property reads
        # terms that are not split (their modality declares no split_axes) are held by every rank but counted
        # once: weight 0 beside rank 0, so the sums over ranks do not multiply them
        self.local = local if self.rank == 0 else local.with_regularizers(()).with_weights(
            {n: 0.0 for n in self.replicated if n in local.term_names})

    # ---- what every rank holds alike: read from its share ---------------------------
    @property
    def space(self) -> VariableSpace:
        return self.whole.space

    @property
    def xp(self):
        return self.whole.xp

    @property
    def terms(self) -> tuple:
        return self.whole.terms

    @property
    def regularizers(self) -> tuple:
        return self.whole.regularizers

    @property
    def calibration(self) -> dict:
        return self.whole.calibration

    @property
    def frozen(self) -> tuple:
        return self.whole.frozen

    @property
    def truth(self):
        return self.whole.truth

    @property
    def term_names(self) -> tuple:
        return self.whole.term_names

    @property
    def weights(self) -> dict:
        return self.whole.weights

    @property
    def parts(self) -> dict:
        return self.whole.parts

    @property
    def has_holdout(self) -> bool:
        return self.whole.has_holdout

    def start(self, fill_value=1.0, xp=None):
        return self.whole.start(fill_value, xp)

    def at_precision(self, v):
        return self.whole.at_precision(v)

    def invariances(self) -> dict:
        return self.whole.invariances()

    def relative_errors(self, v) -> dict:
        return self.whole.relative_errors(v)

    # ---- reductions --------------------------------------------------------------
    def _sum_array(self, a):
        """Sum of every rank's ``a``: the adjoint of pylops-mpi's ``MPIVStack`` of identities applied to a
        ``SCATTER`` ``DistributedArray`` holding one copy per rank (an allreduce; MPI sums commute, so every
        rank gets the same bits and the solvers stay in lockstep)."""
        import pylops
        import pylops_mpi

        n, size = a.size, self.comm.Get_size()
        engine = "numpy" if get_array_module(a) is np else "cupy"
        stacked = pylops_mpi.DistributedArray(global_shape=n * size, local_shapes=[(n,)] * size,
                                              partition=pylops_mpi.Partition.SCATTER, base_comm=self.comm,
                                              engine=engine, dtype=a.dtype)
        stacked[:] = a.ravel()
        total = pylops_mpi.MPIVStack([pylops.Identity(n, dtype=a.dtype)], base_comm=self.comm).H @ stacked
        return total.local_array.reshape(a.shape)

    # ---- every sum over the split data is reduced ------------------------------------
    def _mine(self, fn, v):
        """``fn(v)`` on this rank's share, agreed before any sum when ``agreed``."""
        return agree(self.comm, fn, v) if self.agreed else fn(v)

    def objectives(self, v) -> dict:
        return _total_dict(self._sum_array, self._mine(self.local.objectives, v))

    def value(self, v) -> float:
        return float(sum(self.objectives(v).values()))

    __call__ = value

    def linearize(self, v) -> Linearization:
        return self._mine(self.local.linearize, v).reduced(self._sum_array)

    def gradient(self, v):
        return self.linearize(v).gradient

    def value_and_gradient(self, v):
        lin = self.linearize(v)
        return lin.objective, lin.gradient

    def term_gradients(self, v) -> dict:
        return {n: self._sum_array(g) for n, g in self._mine(self.local.term_gradients, v).items()}

    def align(self, v, steps=None) -> tuple:
        """``multimodal_ip.problem.align`` on the sum over ranks (every rank moves alike)."""
        return align(self, v, steps)

    # ---- construction helpers: the same split, another problem -------------------------
    def with_terms(self, names) -> "DistributedProblem":
        return DistributedProblem(self.whole.with_terms(names), self.comm, self.replicated, self.agreed)

    def alone(self, name) -> "DistributedProblem":
        return DistributedProblem(self.whole.alone(name), self.comm, self.replicated, self.agreed)

    def with_weights(self, weights) -> "DistributedProblem":
        return DistributedProblem(self.whole.with_weights(weights), self.comm, self.replicated, self.agreed)

    def with_frozen(self, names) -> "DistributedProblem":
        return DistributedProblem(self.whole.with_frozen(names), self.comm, self.replicated, self.agreed)

    def with_regularizers(self, regularizers) -> "DistributedProblem":
        return DistributedProblem(self.whole.with_regularizers(regularizers), self.comm, self.replicated, self.agreed)

    def __repr__(self) -> str:
        return f"DistributedProblem(rank {self.rank}/{self.comm.Get_size()}, {self.local!r})"


class _Surveyed(Exception):  # noqa: N818 - not an error: ends a survey of the file's structure before any read
    """Ends the first phase of an MPI rank's build once its plan has seen the structure."""


def build_distributed_problem(path, comm, terms=None, options=None, allow_external=False, plan=None, **overrides):
    """Each rank loads its share of the split data of ``path`` and builds its local terms; the paper's
    balancing is computed on the whole (reduced) problem, so it equals the single-process weights.
    Shared calibration unknowns may be refined (gradients summed over ranks); those a modality lists in
    ``split_unknowns`` may not (each rank holds only its share of them).

    ``options`` (a :class:`~multimodal_ip.io.problem_builder.BuildOptions`, with ``overrides`` of its fields) are
    those of :func:`~multimodal_ip.io.build_problem`, the same object as a one-process run's.

    Parameters
    ----------
    path : :obj:`str` or :obj:`pathlib.Path`
        Dataset file.
    comm : :obj:`mpi4py.MPI.Comm`
        Communicator; rank ``r`` of ``n`` reads part ``(r, n)`` of each split term.
    terms : sequence of :obj:`str`, optional
        Keep only these data terms.
    options : :class:`~multimodal_ip.io.problem_builder.BuildOptions`, optional
        How to build it (default ``BuildOptions()``).
    allow_external : :obj:`bool`, optional
        Accept external links and external storage in the file.
    plan : callable, optional
        The loader's ``plan`` (:func:`~multimodal_ip.io.load_dataset`), called on every rank with the terms and
        bytes of its own share before any array is read (e.g. :func:`~multimodal_ip.run_budget.run_planner`); the
        chunk size of an estimate it returns sizes this rank's blocks. It runs inside an agreement (:func:`agree`)
        and must not communicate; a plan with phases (``fits``, ``agreed``: ``run_planner``'s) runs them in two
        agreements, the ranks agreeing on its setting between them (the file's structure is read twice).
    **overrides
        Fields of ``BuildOptions`` that replace those of ``options``.

    Returns
    -------
    dataset : :class:`~multimodal_ip.io.Dataset`
        This rank's share of the data.
    problem : :class:`DistributedProblem`
        The problem whose values and gradients are summed over the ranks.

    Raises
    ------
    MultimodalIPError
        On every rank, when any rank's input is invalid (a split not matching the ranks, a bad file or balance, ...).
    """
    from dataclasses import replace

    from .io import build_problem, load_dataset
    from .io.problem_builder import BuildOptions, apply_balance
    from .modality import capabilities
    from .plugins import get_registry
    from .run_budget import _agreed

    o = replace(options or BuildOptions(), **overrides)
    part = (comm.Get_rank(), comm.Get_size())

    def survey():
        """Which settings of the run's plan this rank's share fits: the file's structure read, no array."""
        fits: list = []

        def stop(space, found, nbytes):
            fits.append(plan.fits(space, found, nbytes))
            raise _Surveyed

        with contextlib.suppress(_Surveyed):
            load_dataset(path, terms=terms, part=part, allow_external=allow_external, precision=o.dtype,
                         plan=_share_plan(stop, part, o.dtype)[0])
        return fits[0]

    if hasattr(plan, "fits"):  # no collective inside an agreement: the ranks agree on the plan's setting between two
        plan = plan.agreed(_agreed(comm, agree(comm, survey)))

    def build_local():
        """This rank's share: read, checked and built (every rank then agrees before any reduction)."""
        share, kept = _share_plan(plan, part, o.dtype) if plan is not None else (None, [])
        ds = load_dataset(path, terms=terms, part=part, allow_external=allow_external, precision=o.dtype, plan=share)
        _check_ranks(ds, comm.Get_size())
        split = {u for td in ds.terms.values()
                 for u in capabilities(get_registry().get("modality", td.modality)).split_unknowns}
        bad = [r for r in (o.refine or ()) if r in split]
        if bad:
            msg = f"refining {bad} is not available with MPI (each rank holds only its share of them)"
            raise ConfigError(msg)
        blocks = getattr(kept[0], "chunk_bytes", o.chunk_bytes) if kept else o.chunk_bytes
        return ds, build_problem(ds, options=replace(o, balance=False, chunk_bytes=blocks))

    ds, local = agree(comm, build_local)
    unsplit = tuple(n for n, td in ds.terms.items() if "split_total" not in td.attrs)
    problem = DistributedProblem(local, comm, replicated=unsplit)
    if o.balance and o.likelihood == "balanced":
        try:  # its sums run between agreements (each local gradient agreed before its sum), its outcome after them
            balanced: object = apply_balance(problem, ds, o.balance_c, o.reference, xp=o.xp)
        except Exception as exc:  # noqa: BLE001 - agreed just below (a bug stays a bug)
            if getattr(exc, "mmip_agreed", False):  # already every rank's (a failing rank's last agreement met ours)
                raise
            balanced = exc
        problem = DistributedProblem(agree(comm, _outcome, balanced).whole, comm, replicated=unsplit)
    return ds, problem


def _outcome(value):
    """``value``, raised when it is an exception (the outcome of work whose sums took every rank)."""
    if isinstance(value, BaseException):
        raise value
    return value
