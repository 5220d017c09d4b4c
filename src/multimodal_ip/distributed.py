r"""Data split across MPI ranks along each modality's ``split_axes``; shared variables replicated.

Each rank builds the data terms from its own share of the split data (reading only that
slice of the HDF5 file); terms whose modality declares no split are counted once (rank 0);
objective values, gradients and Gauss-Newton products are summed
over ranks through pylops-mpi (the adjoint of an ``MPIVStack`` over a ``SCATTER``
``DistributedArray``), so every rank holds the same numbers and the solvers run unchanged,
in lockstep. Regularizers are evaluated once, on rank 0.
"""

__all__ = ["DistributedProblem", "build_distributed_problem", "get_comm", "mpi_world_size"]

import os

import numpy as np

from .backend import get_array_module
from .errors import ConfigError
from .problem import JointProblem

_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS")


def mpi_world_size() -> int:
    """Number of ranks announced by the MPI launcher's environment (1 when not under ``mpiexec``)."""
    for var in _SIZE_VARS[:2]:
        text = os.environ.get(var, "").strip()
        if text:
            if not text.isdigit() or int(text) < 1:
                msg = f"{var}={text!r}: expected the positive number of MPI ranks set by the launcher"
                raise ConfigError(msg)
            return int(text)
    return 1


def get_comm():
    """``mpi4py.MPI.COMM_WORLD``, with a clear error where mpi4py is missing."""
    try:
        import pylops_mpi  # noqa: F401 - the reductions use it
        from mpi4py import MPI
    except ImportError as exc:
        from .errors import ConfigError

        msg = f"MPI runs need mpi4py and pylops-mpi: pip install mpich mpi4py pylops-mpi ({exc})"
        raise ConfigError(msg) from exc
    return MPI.COMM_WORLD


class DistributedProblem(JointProblem):
    r"""A :class:`~multimodal_ip.JointProblem` whose data terms are split across ranks.

    Parameters
    ----------
    local : :class:`~multimodal_ip.JointProblem`
        This rank's terms (its share of the split data) over the full, replicated variables.
    comm : ``mpi4py.MPI.Comm``
    """

    def __init__(self, local: JointProblem, comm, replicated=()):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.replicated = tuple(replicated)
        super().__init__(local.space, local.terms, local.regularizers, local.truth, local.calibration)
        self._whole = local  # this rank's terms at their true weights
        # terms that are not split (their modality declares no split_axes) are held by every rank but counted
        # once: weight 0 beside rank 0, so the sums over ranks do not multiply them
        self.local = local if self.rank == 0 else local.with_regularizers(()).with_weights(
            {n: 0.0 for n in self.replicated if n in local.term_names})

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

    def _sum_dict(self, d: dict) -> dict:
        keys = sorted(d)
        vals = self._sum_array(np.array([d[k] for k in keys], dtype=np.float64))
        return {k: float(v) for k, v in zip(keys, vals)}

    # ---- what differs from one process: every sum over the split data is reduced -------
    def objectives(self, v) -> dict:
        return self._sum_dict(self.local.objectives(v))

    def linearize(self, v):
        lin = self.local.linearize(v)
        lin.objectives = self._sum_dict(lin.objectives)
        if lin.validation:  # held-out losses are sums over the split data too
            lin.validation = self._sum_dict(lin.validation)
        lin.objective = float(sum(lin.objectives.values()))
        lin.gradient = self._sum_array(lin.gradient)
        lin.reduce = self._sum_array
        return lin

    def term_gradients(self, v) -> dict:
        return {n: self._sum_array(g) for n, g in self.local.term_gradients(v).items()}

    def with_terms(self, names):
        return DistributedProblem(self._whole.with_terms(names), self.comm, self.replicated)

    def with_weights(self, weights):
        return DistributedProblem(self._whole.with_weights(weights), self.comm, self.replicated)

    def with_frozen(self, names):
        return DistributedProblem(self._whole.with_frozen(names), self.comm, self.replicated)

    def with_regularizers(self, regularizers):
        return DistributedProblem(self._whole.with_regularizers(regularizers), self.comm, self.replicated)

    def __repr__(self) -> str:
        return f"DistributedProblem(rank {self.rank}/{self.comm.Get_size()}, {self.local!r})"


def build_distributed_problem(path, comm, terms=None, balance=True, balance_c=None, term_options=None, xp=None,
                              dtype=None, refine=(), likelihood="balanced", coupling=None, reference=None,
                              regularizers=(), allow_external=False, chunk_bytes=None, validation=None,
                              validation_seed=0, refine_bounds=None):
    """Each rank loads its share of the split data of ``path`` and builds its local terms; the paper's
    balancing is computed on the whole (reduced) problem, so it equals the single-process weights.
    Shared calibration unknowns may be refined (gradients summed over ranks); those a modality lists in
    ``split_unknowns`` may not (each rank holds only its share of them)."""
    from .io import build_problem, load_dataset
    from .io.problem_builder import apply_balance
    from .modality import capabilities
    from .plugins import get_registry

    ds = load_dataset(path, terms=terms, part=(comm.Get_rank(), comm.Get_size()), allow_external=allow_external,
                      precision=dtype)
    split = {u for td in ds.terms.values()
             for u in capabilities(get_registry().get("modality", td.modality)).split_unknowns}
    bad = [r for r in (refine or ()) if r in split]
    if bad:
        msg = f"refining {bad} is not available with MPI (each rank holds only its share of them)"
        raise ConfigError(msg)
    local = build_problem(ds, balance=False, term_options=term_options, xp=xp, dtype=dtype, refine=refine,
                          likelihood=likelihood, coupling=coupling, regularizers=regularizers, chunk_bytes=chunk_bytes,
                          validation=validation, validation_seed=validation_seed, refine_bounds=refine_bounds)
    unsplit = tuple(n for n, td in ds.terms.items() if "split_total" not in td.attrs)
    problem = DistributedProblem(local, comm, replicated=unsplit)
    return ds, apply_balance(problem, ds, balance_c, reference, xp=xp) if balance and likelihood == "balanced" \
        else problem
