r"""The modality contract: what the core calls on a modality plugin, with what, and the defaults.

A modality is any object registered through ``mmip_register_modalities``. Two methods are **required**:

``build_term(td, space, *, xp=None, **options) -> DataTerm``
    The data term of one ``/terms/<name>`` group (:class:`~multimodal_ip.io.TermData`) over the problem's
    :class:`~multimodal_ip.VariableSpace`. ``xp`` is the array module (numpy or cupy); ``options`` are only
    those the modality lists in ``options`` (plus ``dtype``).
``conformance_cases(rng) -> iterable of (case_name, operator, x)``
    Small operators and points for the adjoint and Taylor tests of the conformance kit.

Everything else is **optional**; the core reads it only through :func:`capabilities`, which fills in the
defaults below and checks the types (a plugin that gets them wrong is listed by ``mmip plugins`` with the
reason and not used):

=========================  ===========================  ==========================================================
attribute / method         default                      meaning
=========================  ===========================  ==========================================================
``options``                ``()``                       keyword options ``build_term`` accepts (run files, flags)
``split_axes``             ``{}``                       ``{dataset: axis}`` along which the term's data split into
                                                        independent parts (MPI ranks, chunks); all listed datasets
                                                        have the same length on their axis. Empty: the term is
                                                        not split (evaluated once, on rank 0)
``balance_role``           ``"none"``                   ``"reference"``: the term the paper's gradient-norm
                                                        balancing keeps at weight 1; ``"weighted"``: a term that
                                                        is weighted against it; ``"none"``: no opinion
``inputs``                 ``()``                       variables the term reads (named when no term infers them)
``datasets``               ``None``                     names of the datasets of its group the term reads; when
                                                        given, the loader reads only those (others are never
                                                        read, whatever their size). ``None``: all of them
``measurements``           ``()``                       datasets of measured values (intensities, counts) read
                                                        compactly: integer counts of up to 32 bits stay integers,
                                                        wider integers and floats are converted to the run's
                                                        precision by HDF5 as they are read (no wider copy is
                                                        held). The term must accept integer arrays for them
``refinable``              ``()``                       names of calibration unknowns the term can read
``split_unknowns``         ``()``                       calibration unknowns with one entry per split index
                                                        (they cannot be refined across MPI ranks)
``models``                 ``()``                       model alternatives ``mmip tune`` tries by default after
                                                        its grid, at the chosen setting (``--models`` entries:
                                                        refinable unknowns joined by ``+``, ``@KEY=VALUE``)
``variables(td)``          ``[]``                       the :class:`~multimodal_ip.Variable` s the term's data
                                                        determine (so ``/variables`` may be omitted from a file)
``calibration(td)``        ``{}``                       start values this term offers for refinable unknowns
``temporaries(td)``        16 x split data bytes        bytes of temporaries one evaluation allocates per split
                                                        index (sizes the parts of chunked evaluation); 0: the
                                                        term's temporaries do not grow with its data (it is
                                                        never chunked: e.g. a streamed operator). A method
                                                        that takes ``**options`` gets the build options
                                                        (``refine``, ``loss``, ...)
``working_memory(...)``    16 x data (<= chunk) +       ``working_memory(td, space, dtype=, chunk_bytes=)``: bytes
                           2 unknown-sized vectors      one objective + gradient allocates besides the data and
                                                        the problem's vectors, its blocks sized by
                                                        ``chunk_bytes``: the run's memory budget
                                                        (:mod:`multimodal_ip.run_budget`)
``example_term(rng)``      ``None``                     ``(TermData, [Variable, ...])``: a small term the kit
                                                        builds through ``build_term`` and splits (required by the
                                                        conformance kit, not by the core)
``validation_mask(...)``   each value held out with     ``validation_mask(td, fraction, seed)``: bool array shaped
                           probability ``fraction``,    like the group's ``data``, the values held out for
                           keyed by the global split    validation (``--stop validation``, ``mmip tune``);
                           index                        override it when neighbouring values must stay together
=========================  ===========================  ==========================================================

``photon_weighted`` in ``options`` declares a photon-count likelihood (``--likelihood poisson``).
Built terms may carry offers the solvers use: ``DataTerm(curvature=...)`` and ``DataTerm(estimator=...)`` (a
:class:`~multimodal_ip.problem.CalibrationEstimator`, called by the staged solver): see docs/plugins.md.
A term that is split over parts (MPI ranks, chunks, the conformance kit) gets two attributes: ``split_total``, the
length of the whole split axis, so it can normalise by the whole, not by its part; and ``split_offset``, the global
index of the part's first entry, so that whatever depends on the global index (per-index weights or masks,
per-index calibration) is the same in every split. A term that ignores ``split_offset`` is correct only when its
objective is a sum over split indices that do not depend on where they are.
"""

__all__ = ["Modality", "ModalityInfo", "capabilities", "check_modality_contract", "BALANCE_ROLES",
           "split_term", "split_length", "auto_chunk_size", "TEMPORARY_FACTOR", "BUDGET_FRACTION"]

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from .errors import DataError, PluginLoadError

if TYPE_CHECKING:  # the contract's types, for type checkers only (no import cycle, no pylops at run time)
    from types import ModuleType

    from .io.dataset import TermData
    from .operators.nonlinear_operator import NonlinearOperator
    from .problem import DataTerm
    from .variables import VariableSpace

BALANCE_ROLES = ("reference", "weighted", "none")


@runtime_checkable
class Modality(Protocol):
    """The two required methods (see the module docstring for the optional capabilities).

    A plugin checks itself with ``_: Modality = MyModality()``: mypy then reports a ``build_term`` or
    ``conformance_cases`` whose parameters or return type do not fit (the distributions ship ``py.typed``).
    """

    def build_term(self, td: "TermData", space: "VariableSpace", *, xp: "ModuleType | None" = None,
                   **options: Any) -> "DataTerm":
        """The data term of one ``/terms/<name>`` group.

        Parameters
        ----------
        td : :class:`~multimodal_ip.io.TermData`
            The group's arrays and attributes (a part of them when the term is split).
        space : :class:`~multimodal_ip.VariableSpace`
            The problem's variables; the term reads some of them (its ``inputs``).
        xp : module, optional
            The array module (numpy or cupy) the term computes with; ``None``: numpy.
        **options
            ``dtype`` and only the options the modality lists in ``options`` (run files, flags).

        Returns
        -------
        :class:`~multimodal_ip.DataTerm`
        """

    def conformance_cases(self, rng: np.random.Generator) -> "Iterable[tuple[str, NonlinearOperator, np.ndarray]]":
        """Small operators and points for the adjoint and Taylor tests of the conformance kit.

        Parameters
        ----------
        rng : :obj:`numpy.random.Generator`
            Draws the points.

        Returns
        -------
        iterable of :obj:`tuple`
            ``(case_name, operator, x)``: a :class:`~multimodal_ip.operators.NonlinearOperator` and a point in its
            domain.
        """


@dataclass(frozen=True)
class ModalityInfo:
    """A modality's capabilities, defaults filled in and types checked.

    Made by :func:`capabilities`; each field is the modality attribute of the same name (the table in the module
    docstring), or its default.

    Parameters
    ----------
    obj : :obj:`object`
        The registered modality.
    options : :obj:`tuple` of :obj:`str`, optional
        Keyword options ``build_term`` accepts.
    split_axes : :obj:`dict`, optional
        ``{dataset: axis}`` along which the term's data split into independent parts.
    balance_role : :obj:`str`, optional
        ``"reference"`` or ``"none"``.
    refinable : :obj:`tuple` of :obj:`str`, optional
        Calibration unknowns the term can read.
    split_unknowns : :obj:`tuple` of :obj:`str`, optional
        Calibration unknowns with one entry per split index.
    inputs : :obj:`tuple` of :obj:`str`, optional
        Variables the term reads.
    datasets : :obj:`tuple` of :obj:`str` or :obj:`None`, optional
        Datasets of its group the term reads (``None``: all).
    measurements : :obj:`tuple` of :obj:`str`, optional
        Datasets of measured values.
    models : :obj:`tuple` of :obj:`str`, optional
        Model alternatives ``mmip tune`` tries by default (``--models`` entries).
    """

    obj: Any
    options: tuple = ()
    split_axes: dict = field(default_factory=dict)
    balance_role: str = "none"
    refinable: tuple = ()
    split_unknowns: tuple = ()
    inputs: tuple = ()
    datasets: tuple | None = None
    measurements: tuple = ()
    models: tuple = ()

    def variables(self, td) -> list:
        fn = getattr(self.obj, "variables", None)
        return list(fn(td)) if fn is not None else []

    def calibration(self, td) -> dict:
        fn = getattr(self.obj, "calibration", None)
        return dict(fn(td)) if fn is not None else {}

    def temporaries(self, td, options=None) -> float | None:
        """Bytes of temporaries per split index (the modality's ``temporaries(td)``, given the build ``options``
        as keywords when it accepts ``**options``), or ``None`` for the default."""
        fn = getattr(self.obj, "temporaries", None)
        if fn is None:
            return None
        import inspect

        takes = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
        return float(fn(td, **(options or {})) if takes else fn(td))

    def example_term(self, rng):
        fn = getattr(self.obj, "example_term", None)
        return fn(rng) if fn is not None else None

    def validation_mask(self, td, fraction: float, seed: int):
        """The modality's own held-out mask (``validation_mask(td, fraction, seed)``, checked by the caller), or
        ``None``: the default mask (:func:`multimodal_ip.validation.holdout_mask`) applies."""
        fn = getattr(self.obj, "validation_mask", None)
        return fn(td, fraction, seed) if fn is not None else None

    @property
    def has_example(self) -> bool:
        return callable(getattr(self.obj, "example_term", None))

    @property
    def photon_likelihood(self) -> bool:
        return "photon_weighted" in self.options


def _strings(value, what) -> tuple:
    if isinstance(value, str) or not isinstance(value, (tuple, list)) or not all(isinstance(v, str) for v in value):
        msg = f"{what} must be a tuple of strings, got {value!r}"
        raise PluginLoadError(msg)
    return tuple(value)


def check_modality_contract(obj) -> ModalityInfo:
    """The :class:`ModalityInfo` of ``obj``, or :class:`~multimodal_ip.errors.PluginLoadError` saying what is wrong.

    Parameters
    ----------
    obj : :class:`Modality`
        What a plugin registered as a modality.

    Returns
    -------
    :class:`ModalityInfo`
        Its capabilities, defaults filled in and types checked.
    """
    for method in ("build_term", "conformance_cases"):
        if not callable(getattr(obj, method, None)):
            msg = f"{type(obj).__name__} has no method {method}() (required by the modality contract)"
            raise PluginLoadError(msg)
    for method in ("variables", "calibration", "example_term", "temporaries", "validation_mask"):
        if hasattr(obj, method) and not callable(getattr(obj, method)):
            msg = f"{type(obj).__name__}.{method} must be a method"
            raise PluginLoadError(msg)
    axes = getattr(obj, "split_axes", None)
    if axes is None:
        axes = getattr(obj, "position_axes", {})  # the name before the contract was written down
    if not isinstance(axes, dict) or not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                                             and v >= 0 for k, v in axes.items()):
        msg = f"{type(obj).__name__}.split_axes must map dataset names to axes (int >= 0), got {axes!r}"
        raise PluginLoadError(msg)
    role = getattr(obj, "balance_role", "none")
    if role not in BALANCE_ROLES:
        msg = f"{type(obj).__name__}.balance_role must be one of {BALANCE_ROLES}, got {role!r}"
        raise PluginLoadError(msg)
    name = type(obj).__name__
    return ModalityInfo(obj, _strings(getattr(obj, "options", ()), f"{name}.options"), dict(axes), role,
                        _strings(getattr(obj, "refinable", ()), f"{name}.refinable"),
                        _strings(getattr(obj, "split_unknowns", ()), f"{name}.split_unknowns"),
                        _strings(getattr(obj, "inputs", ()), f"{name}.inputs"),
                        None if getattr(obj, "datasets", None) is None
                        else _strings(obj.datasets, f"{name}.datasets"),
                        _strings(getattr(obj, "measurements", ()), f"{name}.measurements"),
                        _strings(getattr(obj, "models", ()), f"{name}.models"))


def capabilities(obj) -> ModalityInfo:
    """The capabilities of a registered modality (see the table in the module docstring).

    Parameters
    ----------
    obj : :class:`Modality` or :class:`ModalityInfo`
        A registered modality (checked by :func:`check_modality_contract`), or its capabilities already.

    Returns
    -------
    :class:`ModalityInfo`
    """
    return obj if isinstance(obj, ModalityInfo) else check_modality_contract(obj)


def split_length(where: str, shapes: dict, axes: dict) -> int | None:
    """The common length of the split axis over the datasets ``axes`` names.

    Parameters
    ----------
    where : :obj:`str`
        The term, as error messages name it (``file:/terms/<name>``).
    shapes : :obj:`dict`
        ``{dataset: shape}`` of the term's datasets.
    axes : :obj:`dict`
        ``{dataset: axis}``: the modality's ``split_axes``.

    Returns
    -------
    :obj:`int` or ``None``
        The length; ``None`` when the term declares no split. A disagreement is a
        :class:`~multimodal_ip.errors.DataError` naming the datasets.
    """
    lengths = {k: shapes[k][a] for k, a in axes.items() if k in shapes and a < len(shapes[k])}
    bad = [k for k, a in axes.items() if k in shapes and a >= len(shapes[k])]
    if bad:
        msg = f"{where}: dataset(s) {bad} have no axis {[axes[k] for k in bad]} to split along"
        raise DataError(msg)
    if not lengths:
        return None
    if len(set(lengths.values())) != 1:
        msg = f"{where}: datasets split together have different lengths {lengths}"
        raise DataError(msg)
    return next(iter(lengths.values()))


def split_term(td, axes: dict, part: int, parts: int):
    """Part ``part`` of ``parts`` of an in-memory term: contiguous slices along each declared axis, the attribute
    ``split_total`` set to the whole length (the same slicing a file read for an MPI rank does).

    Parameters
    ----------
    td : :class:`~multimodal_ip.io.TermData`
        The term (or already a part of one: its ``split_total`` and ``split_offset`` carry over).
    axes : :obj:`dict`
        ``{dataset: axis}``: the modality's ``split_axes``.
    part, parts : :obj:`int`
        Which part, of how many (``0 <= part < parts``).

    Returns
    -------
    :class:`~multimodal_ip.io.TermData`
        The part, with ``split_total`` and ``split_offset`` set; ``td`` itself when it declares no split.
    """
    from dataclasses import replace

    shapes = {k: np.shape(a) for k, a in td.arrays.items()}
    total = split_length(td.where(), shapes, axes)
    if total is None:
        return td
    sl = slice(part * total // parts, (part + 1) * total // parts)
    arrays = {}
    for k, a in td.arrays.items():
        if k in axes:
            index = [slice(None)] * np.ndim(a)
            index[axes[k]] = sl
            a = np.asarray(a)[tuple(index)]
        arrays[k] = a
    # a term that is already a part (an MPI rank's share) keeps the whole length it normalises by, and the place of
    # its first index in the whole (split_offset: what held-out validation masks are keyed by)
    return replace(td, arrays=arrays, attrs=dict(td.attrs, split_total=td.attrs.get("split_total", total),
                                                 split_offset=int(td.attrs.get("split_offset", 0)) + sl.start))


#: bytes of temporaries per byte of split data one evaluation of a part allocates (complex predictions, their FFTs,
#: residuals and adjoint batches: about 8 batch-sized complex arrays per real float64 data array, measured on the
#: ptychography term); used only to choose a chunk size
TEMPORARY_FACTOR = 16
#: by default a term is split only when its temporaries exceed this fraction of the memory budget, into as few
#: parts as that allows: each part repeats the object-sized work of its term (coupling, scatter), so parts cost
#: time (measured: 9 parts +22 %, 35 parts +100 % per iteration at n=1306, Np=128, J=1024)
BUDGET_FRACTION = 0.25


def auto_chunk_size(td, axes: dict, budget: int | None = None, target: int | None = None,
                    per_index: float | None = None) -> int | None:
    """Split indices per chunk so that one chunk's temporaries stay under ``target`` bytes.

    Parameters
    ----------
    td : :class:`~multimodal_ip.io.TermData`
        The term.
    axes : :obj:`dict`
        ``{dataset: axis}``: the modality's ``split_axes``.
    budget : :obj:`int`, optional
        The memory budget in bytes; default from ``MMIP_MAX_MEMORY`` or the available memory.
    target : :obj:`int`, optional
        Bytes one chunk's temporaries may take; default :data:`BUDGET_FRACTION` of ``budget``.
    per_index : :obj:`float`, optional
        The modality's bytes of temporaries per split index (its ``temporaries(td)``); default
        :data:`TEMPORARY_FACTOR` x its split data. 0: never chunked.

    Returns
    -------
    :obj:`int` or ``None``
        Split indices per chunk, at least 1; ``None`` when the term is not split.
    """
    total = split_length(td.where(), {k: np.shape(a) for k, a in td.arrays.items()}, axes)
    if not total or per_index == 0:
        return None
    if per_index is None:
        per_index = TEMPORARY_FACTOR * sum(np.asarray(td.arrays[k]).nbytes for k in axes if k in td.arrays) / total
    if target is None:
        if budget is None:
            from .safety import memory_budget_bytes

            budget = memory_budget_bytes()
        target = int(BUDGET_FRACTION * budget)
    return max(1, int(target // max(per_index, 1)))
