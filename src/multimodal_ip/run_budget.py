"""The memory budget of a whole run: before any array is read, a run estimates its peak (the program, the data, the
unknowns and the solver's vectors with its history, each term's evaluation temporaries) and either fits it into
``MMIP_MAX_MEMORY`` (smaller blocks through the chunk size, fewer L-BFGS pairs) or refuses in one line naming what
does not fit and the smallest budget that would.

Each term's temporaries come from its modality's offer ``working_memory(td, space, dtype=..., chunk_bytes=...)``
(bytes one objective + gradient of the term allocates besides the data and the problem's vectors, with its blocks
sized by ``chunk_bytes``; ``None``: its default blocks), else from :func:`default_working_memory`. With
``MMIP_MAX_MEMORY`` set the budget caps the whole process (its present resident memory counts); without it the budget
is 80 % of the memory still available (or of an address-space limit), which the program's present memory has
already left, so only ``PROGRAM_MARGIN`` counts for it.
"""

__all__ = ["RunEstimate", "estimate_run", "fit_run", "run_planner", "default_working_memory", "measured_values",
           "peak_pairs"]

import os
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError
from .memory import ENV_MEMORY, memory_budget_bytes

#: bytes the program adds after the check (modules a solver imports, allocator slack)
PROGRAM_MARGIN = 48 << 20
#: unknown-sized work vectors of a solver besides its history and the joint evaluation's: L-BFGS holds its iterate,
#: gradient, direction and trial point (the trial's gradient is the joint evaluation's;
#: ``multimodal_ip.solvers.lbfgs.WORK_VECTORS``, counted by tests/solvers/test_lbfgs_memory.py); the run's start
#: point is handed over as the first iterate (tests/test_run_peak.py; docs/performance.md, "Memory budget of a run")
SOLVER_VECTORS = {"lbfgs": 4}
#: work vectors of a solver not in ``SOLVER_VECTORS``
DEFAULT_SOLVER_VECTORS = 12
#: solvers that keep a history of correction pairs (two unknown-sized vectors each): ``{solver: (option, default)}``
HISTORY = {"lbfgs": ("memory", 10)}
#: unknown-sized vectors of one joint evaluation besides its terms' temporaries (the joint gradient, a term's own
#: gradient or its input, copied when its variables are not adjacent in packing order)
JOINT_VECTORS = 2
#: chunk sizes tried, in order, when the run does not fit with its own
CHUNK_STEPS = (16 << 20, 4 << 20, 1 << 20)
#: blocks from this size on cost no time (the ptychography default is 4 MB of spectra); smaller ones are tried only
#: once the solver keeps a single correction pair
SMALLEST_FAST_CHUNK = 4 << 20
#: unknown-sized vectors an MPI rank adds for the sums over ranks (the stacked copy of a gradient and the sum)
MPI_VECTORS = 2


def _gib(nbytes) -> str:
    return f"{nbytes / 2**30:.2f}"


def default_working_memory(td, space, dtype, chunk_bytes) -> int:
    """Temporaries of a term whose modality offers no ``working_memory``: 16 x its data (one part's, at most
    ``chunk_bytes`` when the term is split into parts) and two unknown-sized vectors.

    Parameters
    ----------
    td : :class:`~multimodal_ip.io.TermData`
        The term (its arrays may be unread h5py datasets: only their sizes are used).
    space : :class:`~multimodal_ip.VariableSpace`
        The problem's unknowns.
    dtype : :obj:`numpy.dtype`
        The compute precision.
    chunk_bytes : :obj:`int` or ``None``
        The run's chunk size (``None``: default).

    Returns
    -------
    nbytes : :obj:`int`
        Bytes one objective + gradient of the term allocates.
    """
    from .modality import TEMPORARY_FACTOR

    data = sum(int(np.prod(np.shape(a), dtype=np.float64)) for a in td.arrays.values()) * np.dtype(dtype).itemsize
    temporaries = TEMPORARY_FACTOR * data
    if chunk_bytes:
        temporaries = min(temporaries, chunk_bytes)
    return int(temporaries + 2 * space.size * np.dtype(dtype).itemsize)


@dataclass
class RunEstimate:
    """A run's estimated peak memory, by part.

    Parameters
    ----------
    budget : :obj:`int`
        The budget in bytes.
    parts : :obj:`dict`
        ``{what: bytes}``: ``program``, ``data``, ``unknowns and solver`` and ``term '<name>'`` entries.
    pairs : :obj:`int` or ``None``
        Correction pairs the solver keeps (``None``: it keeps none).
    chunk_bytes : :obj:`int` or ``None``
        The chunk size the terms' temporaries were estimated with.
    peak_pairs : :obj:`int` or ``None``
        Correction pairs counted at the solver's peak (``None``: ``pairs``; :func:`peak_pairs`).
    """

    budget: int
    parts: dict = field(default_factory=dict)
    pairs: int | None = None
    chunk_bytes: int | None = None
    peak_pairs: int | None = None

    @property
    def total(self) -> int:
        """Bytes of the estimated peak.

        Returns
        -------
        nbytes : :obj:`int`
            The sum of the parts.
        """
        return int(sum(self.parts.values()))

    @property
    def fits(self) -> bool:
        """Whether the estimated peak is within the budget.

        Returns
        -------
        fits : :obj:`bool`
            ``total <= budget``.
        """
        return self.total <= self.budget

    def shown(self) -> str:
        """The parts in MiB, largest first, e.g. ``data 256, term 'ptychography' 146``.

        Returns
        -------
        text : :obj:`str`
            One line.
        """
        return ", ".join(f"{k} {v / 2**20:.0f}" for k, v in sorted(self.parts.items(), key=lambda kv: -kv[1]))


def _offer(modality_obj, td, space, dtype, chunk_bytes) -> int:
    fn = getattr(modality_obj, "working_memory", None)
    if fn is None:
        return default_working_memory(td, space, dtype, chunk_bytes)
    return int(fn(td, space, dtype=np.dtype(dtype), chunk_bytes=chunk_bytes))


def peak_pairs(pairs, iterations, release_last=False):
    """The correction pairs a solver keeping ``pairs`` holds at its peak: ``pairs``, or with ``release_last`` (L-BFGS
    lets them go once its last direction is made) at most ``iterations - 2``: the step before the last evaluates with
    that many; the last direction is made with one more but no evaluation (docs/performance.md).

    Parameters
    ----------
    pairs, iterations : :obj:`int`
        The pairs kept (``None``: no history) and the run's iterations.
    release_last : :obj:`bool`, optional
        Whether the solver lets its pairs go before its last step's evaluations.

    Returns
    -------
    held : :obj:`int` or ``None``
        The pairs counted at the peak.
    """
    if pairs is None or not release_last:
        return pairs
    return max(0, min(int(pairs), int(iterations) - 2))


def estimate_run(space, terms, data_bytes, *, dtype, solver="lbfgs", pairs=None, chunk_bytes=None, budget,
                 program=0, registry=None, extra=None, vectors=None, held=None) -> RunEstimate:
    """The peak memory of a run, by part (nothing is read or allocated).

    Parameters
    ----------
    space : :class:`~multimodal_ip.VariableSpace`
        The problem's unknowns.
    terms : :obj:`dict`
        ``{name: TermData}`` of the terms to be read (arrays may be unread h5py datasets).
    data_bytes : :obj:`int`
        Bytes the read of the data takes.
    dtype : :obj:`str`
        The compute precision.
    solver : :obj:`str`, optional
        The solver's name.
    pairs : :obj:`int`, optional
        Correction pairs kept by a solver with a history.
    chunk_bytes : :obj:`int`, optional
        The chunk size the terms' blocks are sized by (``None``: their defaults).
    budget : :obj:`int`
        The budget in bytes.
    program : :obj:`int`, optional
        The program's own memory counted against the budget.
    registry : :class:`~multimodal_ip.plugins.Registry`, optional
        Where the modalities are looked up.
    extra : :obj:`dict`, optional
        More parts ``{what: bytes}`` of a command (kept results, validation masks, dense Hessians, ...).
    vectors : :obj:`int`, optional
        Unknown-sized work vectors besides the history and the joint evaluation's (default the solver's,
        ``SOLVER_VECTORS``; a command that runs no solver gives its own).
    held : :obj:`int`, optional
        Correction pairs the solver holds at its peak (default ``pairs``: :func:`peak_pairs`).

    Returns
    -------
    :class:`RunEstimate`
        The parts and the setting they were estimated with.
    """
    from .plugins import get_registry

    registry = registry or get_registry()
    real = np.ones(1, dtype).real.dtype
    vector = space.size * real.itemsize
    own = SOLVER_VECTORS.get(solver, DEFAULT_SOLVER_VECTORS) if vectors is None else int(vectors)
    held = pairs if held is None else held
    parts = {"program": int(program) + PROGRAM_MARGIN, "data": int(data_bytes),
             "unknowns and solver": int((own + JOINT_VECTORS + 2 * (held or 0)) * vector),
             **{k: int(v) for k, v in (extra or {}).items()}}
    for name, td in terms.items():
        parts[f"term {name!r}"] = _offer(registry.get("modality", td.modality), td, space, real, chunk_bytes)
    return RunEstimate(int(budget), parts, pairs, chunk_bytes, held)


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):  # pragma: no cover - not Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def fit_run(space, terms, data_bytes, *, dtype, solver, iterations, pairs=None, chunk_bytes=None, budget=None,
            program=None, registry=None, extra=None, vectors=None, comm=None, setting=None,
            release_last=False) -> RunEstimate:
    """The setting under which a run fits its memory budget: its own, else smaller blocks (the chunk sizes of
    ``CHUNK_STEPS`` below its own, down to ``SMALLEST_FAST_CHUNK``), then fewer correction pairs, then the
    smallest blocks; :class:`~multimodal_ip.errors.ConfigError` when none fits.

    Parameters
    ----------
    space, terms, data_bytes, dtype, solver, registry, extra, vectors
        As for :func:`estimate_run`.
    iterations : :obj:`int`
        The run's iterations (a history never holds more pairs).
    pairs : :obj:`int`, optional
        Correction pairs asked for; default the solver's (``HISTORY``).
    chunk_bytes : :obj:`int`, optional
        The run's chunk size (``None``: default; ``0``: never split).
    budget : :obj:`int`, optional
        Default ``MMIP_MAX_MEMORY`` (per process), else 80 % of the available memory (shared by the MPI ranks of
        one machine under ``comm``).
    program : :obj:`int`, optional
        The program's memory counted; default its present resident memory when ``MMIP_MAX_MEMORY`` is set, else 0
        (the available memory already excludes it).
    comm : :obj:`mpi4py.MPI.Comm`, optional
        The ranks of an MPI run: each fits its own share, then all keep the most cautious setting any rank needs
        (their solvers run in lockstep) or all refuse. Every rank must call this (a collective: never inside
        :func:`~multimodal_ip.distributed.agree`; an MPI build agrees between two of them, with ``setting``).
    setting : :obj:`int`, optional
        The index, in the order tried, of the setting the ranks agreed on beforehand: kept without communication
        (the refusal when it is past the last).
    release_last : :obj:`bool`, optional
        The solver lets its pairs go before its last step's evaluations (:func:`peak_pairs`).

    Returns
    -------
    :class:`RunEstimate`
        The fitting estimate (its ``pairs`` and ``chunk_bytes`` are the run's setting).

    Raises
    ------
    ConfigError
        Nothing fits: one line naming the budget, the parts of the smallest setting and the budget it needs.
    """
    tried, where = _settings(space, terms, data_bytes, dtype=dtype, solver=solver, iterations=iterations, pairs=pairs,
                             chunk_bytes=chunk_bytes, budget=budget, program=program, registry=registry, extra=extra,
                             vectors=vectors, comm=comm, release_last=release_last)
    return _kept(tried, where, _agreed(comm, [t.fits for t in tried]) if setting is None else int(setting))


def _settings(space, terms, data_bytes, *, dtype, solver, iterations, pairs=None, chunk_bytes=None, budget=None,
              program=None, registry=None, extra=None, vectors=None, comm=None, release_last=False) -> tuple:
    """``(tried, where)``: the settings :func:`fit_run` tries, in order, and the budget's name; no communication
    (``comm`` only counts the ranks sharing the machine's memory)."""
    explicit = bool(os.environ.get(ENV_MEMORY, "").strip())
    ranks = _local_ranks(comm) if comm is not None and not explicit else 1
    if budget is None:
        budget = memory_budget_bytes() // ranks
    if program is None:
        program = _resident_bytes() if explicit else 0
    has_history = solver in HISTORY
    asked = (pairs if pairs is not None else HISTORY[solver][1]) if has_history else None
    first = max(1, min(int(asked), int(iterations))) if asked is not None else None

    def at(p, c):
        return estimate_run(space, terms, data_bytes, dtype=dtype, solver=solver, pairs=p, chunk_bytes=c,
                            budget=budget, program=program, registry=registry, extra=extra, vectors=vectors,
                            held=peak_pairs(p, iterations, release_last))

    chunks = [chunk_bytes] + [c for c in CHUNK_STEPS if not chunk_bytes or c < chunk_bytes]
    # blocks that cost no time (a user's --chunk-memory below them is kept: it is what was asked for)
    coarse = [c for c in chunks if c is None or c == 0 or c >= SMALLEST_FAST_CHUNK] or chunks[:1]
    held = peak_pairs(first, iterations, release_last) or 0  # fewer pairs are tried only below those held
    pair_steps = [first, *range(min(first, held) - 1, 0, -1)] if first is not None else [None]
    tried = ([at(first, c) for c in coarse] + [at(p, coarse[-1]) for p in pair_steps[1:]]
             + [at(pair_steps[-1], c) for c in chunks[len(coarse):]])
    where = f"{ENV_MEMORY}={os.environ[ENV_MEMORY].strip()}" if explicit else "80 % of the available memory" + (
        f" over {ranks} MPI ranks" if ranks > 1 else "")
    return tried, where


def _agreed(comm, fits) -> int:
    """The index of the first setting every rank fits (``len(fits)``: none); a collective under ``comm`` (every rank
    calls it, outside :func:`~multimodal_ip.distributed.agree`), this rank's first fit without."""
    def first_from(start):
        return next((i for i in range(start, len(fits)) if fits[i]), len(fits))

    index, agreed = first_from(0), -1
    while comm is not None and agreed != index:  # all ranks see the same maximum
        agreed = index
        index = max(comm.allgather(first_from(agreed)))
    return index


def _kept(tried, where, index) -> RunEstimate:
    """``tried[index]``, else (``index == len(tried)``) the refusal naming the smallest setting's need."""
    if index < len(tried):
        return tried[index]
    least = tried[-1]
    history = f" with {least.pairs} L-BFGS pair(s)" if least.pairs else ""
    msg = (f"memory budget of the run ({where}: {_gib(least.budget)} GiB) is too small: it needs at least "
           f"{_gib(least.total)} GiB{history} and blocks of {least.chunk_bytes / 2**20:g} MiB ({least.shown()} MiB); "
           f"set {ENV_MEMORY} to at least {int(np.ceil(least.total / 2**20))}M")
    raise ConfigError(msg)


def measured_values(terms) -> int:
    """The number of measured values of ``terms`` (their ``data`` arrays; unread h5py datasets are not read).

    Parameters
    ----------
    terms : :obj:`dict`
        ``{name: TermData}``.

    Returns
    -------
    count : :obj:`int`
        The entries of every term's ``data``.
    """
    return int(sum(np.prod(np.shape(td.arrays["data"]), dtype=np.float64) for td in terms.values()
                   if "data" in td.arrays))


def _local_ranks(comm) -> int:
    """The MPI ranks on this machine (the launcher's count, else every rank): they share its available memory."""
    for var in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE"):
        text = os.environ.get(var, "").strip()
        if text.isdigit() and int(text) > 0:
            return int(text)
    return int(comm.Get_size())


def run_planner(cfg, *, models=None, extra=None, comm=None, vectors=None, release_last=False, resumed=False):
    """The ``plan`` of :func:`~multimodal_ip.io.load_dataset` for a run configuration: it fits the run into the
    memory budget before the data are read and writes the setting it needs into ``cfg`` (``solver_options``
    ``memory``, ``chunk_memory``; with one warning line) when the run's own does not fit. The unknowns are the
    file's and those ``cfg["refine"]`` adds; a validation run adds its held-out masks (a byte per measured value)
    and, stopping on them, its best iterate.

    Parameters
    ----------
    cfg : :obj:`dict`
        The run configuration (``multimodal_ip.config.run_config``); changed in place when the run is fitted.
    models : callable, optional
        ``models(terms)``: the calibration unknowns each model a command tries refines besides the run's
        (``mmip tune``); the largest model's unknowns are counted.
    extra : callable, optional
        ``extra(space, terms, vector)``: a command's own parts ``{what: bytes}`` (``vector``: the bytes of one
        unknown-sized vector), e.g. the results ``mmip compare`` keeps.
    comm : :obj:`mpi4py.MPI.Comm`, optional
        An MPI run: each rank plans its share, adds the sums over ranks, and every rank keeps the same setting. Called
        as is, the plan is a collective; an MPI build runs it in two phases without one (``plan.fits``, then the
        agreed ``plan.agreed(index)``: ``multimodal_ip._run_plan.Planner``).
    vectors : :obj:`int`, optional
        A command that runs no solver: its unknown-sized work vectors (no solver history, no solver options).
    release_last : :obj:`bool`, optional
        The command solves through ``cli.common._solve_with_progress`` (``release_last`` set; not ``mmip tune``):
        the pairs held at the peak are counted (:func:`peak_pairs`) where its solver lets them go.
    resumed : :obj:`bool`, optional
        ``--resume``: the checkpoint it reads, held through the solve (part "resumed checkpoint": 2 pairs + 2).

    Returns
    -------
    plan : callable
        ``plan(space, terms, nbytes)``, returning the :class:`RunEstimate` kept; raises
        :class:`~multimodal_ip.errors.ConfigError` when the run cannot fit.
    """
    from ._run_plan import Planner

    return Planner(cfg, models=models, extra=extra, comm=comm, vectors=vectors, release_last=release_last,
                   resumed=resumed)
