__all__ = ["BuildOptions", "build_problem", "apply_balance", "balance_reference", "LIKELIHOODS"]

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError, one_line
from ..losses import Loss
from ..modality import auto_chunk_size, capabilities, split_length, split_term
from ..plugins import get_registry
from ..problem import JointProblem, balanced_weights
from ..variables import Variable, VariableSpace

LIKELIHOODS = ("balanced", "poisson")


@dataclass(frozen=True)
class BuildOptions:
    r"""How :func:`build_problem` assembles a problem from a dataset: one frozen object, built once from a run
    configuration (``mmip``'s settings) and shared by the one-process and the MPI path
    (:func:`~multimodal_ip.distributed.build_distributed_problem`). A variant is a new object:
    ``dataclasses.replace(options, balance=False)``, or keywords to :func:`build_problem`.

    Parameters
    ----------
    balance : :obj:`bool`, optional
        Apply the paper's gradient-norm balancing at the all-ones point: every term but
        ``reference`` gets :math:`c\,\|\nabla f_{ref}\|/\|\nabla f_t\|`.
    balance_c : :obj:`float`, optional
        :math:`c`; default the dataset's root attribute ``balance_c`` (else 0.01).
    reference : :obj:`str`, optional
        Reference term of the balancing; default the dataset's ``reference_term`` attribute, else the one term
        whose modality declares ``balance_role = "reference"`` (``balance_reference``; never the file order).
    term_options : mapping, optional
        ``{term: {option: value}}`` passed to each modality's ``build_term`` (e.g. ``loss``).
    regularizers : sequence of :class:`~multimodal_ip.regularizers.Regularizer`, optional
        Penalties and constraints of the problem (bounds of ``refine_bounds`` are added to them).
    xp : module, optional
        Array module for the data (``numpy`` or ``cupy``).
    dtype : :obj:`str`, optional
        Compute dtype given to every term (overrides a ``dtype`` in ``term_options``).
    refine : sequence of :obj:`str`, optional
        Calibration unknowns to refine with the object: each becomes a variable, started at the value a
        term's modality offers (``calibration(td)``) and read by every term whose modality lists it in
        ``refinable``.
    likelihood : :obj:`str`, optional
        ``"balanced"`` (the paper's losses and gradient-norm weights) or ``"poisson"``: every term uses its
        likelihood in photon counts (``photon_weighted=True``: the statistics fix the weights, no ``beta``).
    coupling : :obj:`str` or sequence, optional
        Given as the option ``coupling`` to every term whose modality lists it in its ``options`` (its meaning
        is the modality's).
    chunk_bytes : :obj:`int`, optional
        Memory for one part's temporaries (for a streamed term: one block's, which sizes its blocks; it is never
        split into parts): a term whose modality declares ``split_axes`` is built as parts
        (contiguous runs of its split indices, e.g. scan positions) small enough that one evaluation of a part
        allocates about this much (:func:`~multimodal_ip.modality.auto_chunk_size`), evaluated one after the
        other. ``None`` (default): a quarter of the memory budget, so a term is split only when it would not
        fit otherwise, into as few parts as possible (each part repeats its term's object-sized work); ``0``:
        never split. A term whose refined unknowns split with its data (``split_unknowns``) is not split.
    validation : :obj:`float`, optional
        Fraction of every term's measured values held out for validation (:mod:`multimodal_ip.validation`);
        ``None`` (default): none. ``validation_seed`` picks which (the same values for any split into parts or
        MPI ranks).
    refine_bounds : mapping, optional
        ``{unknown: d}``: keep each entry of a refined (real) calibration unknown within ``d`` of its start value
        (a :class:`~multimodal_ip.regularizers.Box` per entry; e.g. ``{"positions": 1.5}`` in pixels). A bound is
        a constraint: L-BFGS takes it with ``method='scipy'`` (chosen by ``auto``); Gauss-Newton and ADMM project.
    """

    balance: bool = True
    balance_c: float | None = None
    reference: str | None = None
    term_options: Mapping | None = None
    regularizers: Sequence = ()
    xp: Any = None
    dtype: Any = None
    refine: Sequence = ()
    likelihood: str = "balanced"
    coupling: Any = None
    chunk_bytes: int | None = None
    validation: float | None = None
    validation_seed: int = 0
    refine_bounds: Mapping | None = None


def build_problem(dataset, terms=None, options: BuildOptions | None = None, registry=None,
                  **overrides) -> JointProblem:
    r"""Assemble a :class:`~multimodal_ip.JointProblem` from a :class:`Dataset` through the modality plugins.

    Parameters
    ----------
    dataset : :class:`Dataset`
        The measurements, variables and truth.
    terms : sequence of :obj:`str`, optional
        Keep only these data terms (one term for a separate inversion).
    options : :class:`BuildOptions`, optional
        How to build it (default ``BuildOptions()``: the paper's balanced weights, no refinement).
    registry : :class:`~multimodal_ip.plugins.Registry`, optional
        Where the modalities are looked up (default the installed plugins).
    **overrides
        Fields of :class:`BuildOptions` that replace those of ``options`` (e.g. ``dtype="float64"``,
        ``refine=("probe",)``).

    Returns
    -------
    :class:`~multimodal_ip.JointProblem`
        The data terms of ``terms``, their variables and regularizers, weighted.
    """
    o = replace(options or BuildOptions(), **overrides)
    registry = registry or get_registry()
    names = _term_names(dataset, terms)
    if o.likelihood not in LIKELIHOODS:
        msg = f"likelihood must be one of {LIKELIHOODS}; got {o.likelihood!r}"
        raise ConfigError(msg)
    modalities = {n: capabilities(registry.get("modality", dataset.terms[n].modality)) for n in names}
    calibration, offers = _calibration(dataset, modalities, tuple(o.refine or ()))
    space = _compute_space(dataset.space, o.dtype, calibration)
    term_options = _checked_term_options(dataset, o.term_options or {})
    built = []
    for n in names:
        opts, mine = _term_build_options(dataset.terms[n], n, modalities[n], o, calibration, offers, term_options)
        built.extend(_build_parts(dataset.terms[n], modalities[n], space, o, mine, opts))
    space = space.grouped(t.inputs for t in built)  # each term's inputs adjacent: a view, not a copy of them
    truth = _checked_truth(dataset, space, calibration, o.xp)
    if o.coupling is not None and not any("coupling" in m.options for m in modalities.values()):
        msg = f"coupling {o.coupling!r}: no term of {dataset.source} takes the option 'coupling'"
        raise ConfigError(msg)
    regularizers = (*o.regularizers, *_refine_bounds(o.refine_bounds or {}, calibration, space))
    problem = JointProblem(space, built, regularizers, truth or None, calibration)
    return apply_balance(problem, dataset, o.balance_c, o.reference, o.xp, registry) \
        if o.balance and o.likelihood == "balanced" else problem


def _term_names(dataset, terms) -> list:
    """The terms to build (all of the dataset's by default); an unknown one is a :class:`ConfigError`."""
    names = list(dataset.terms) if terms is None else list(terms)
    unknown = [n for n in names if n not in dataset.terms]
    if unknown:
        msg = f"unknown term(s) {unknown}; {dataset.source} has: {', '.join(dataset.terms)}"
        raise ConfigError(msg)
    return names


def _compute_space(space, dtype, calibration) -> VariableSpace:
    """The dataset's variables in the compute precision, followed by the refined calibration unknowns."""
    if dtype is not None:  # the unknowns in the compute precision too: a float32 run is float32 end to end
        real = np.dtype(dtype)
        space = VariableSpace([replace(v, dtype=np.result_type(real, np.complex64) if v.dtype.kind == "c" else real)
                               for v in space.variables])
    if calibration:
        cdtype = np.result_type(space.dtype, np.complex64)
        space = VariableSpace([*space.variables, *(
            Variable(k, a.shape, cdtype if np.iscomplexobj(a) else space.dtype) for k, a in calibration.items())])
    return space


def _checked_term_options(dataset, term_options) -> Mapping:
    """``term_options``, refused when it names a term the dataset does not have."""
    every = dataset.all_terms or tuple(dataset.terms)
    stray = sorted(set(term_options) - set(every))
    if stray:
        msg = f"term_options for {stray}: {dataset.source} has no such term (it has: {', '.join(every)})"
        raise ConfigError(msg)
    return term_options


def _term_build_options(td, name, info, o, calibration, offers, term_options) -> tuple[dict, tuple]:
    """The keywords given to the ``build_term`` of term ``name`` (modality capabilities ``info``), and the
    calibration unknowns it refines."""
    opts = dict(term_options.get(name, {}), **({"dtype": o.dtype} if o.dtype is not None else {}))
    mine = tuple(r for r in calibration if r in info.refinable)
    if mine:
        opts["refine"] = mine
    if "calibration" in info.options:  # what the other terms offer (start values, names)
        opts["calibration"] = offers
    if o.likelihood == "poisson":
        if not info.photon_likelihood:
            msg = (f"likelihood 'poisson': modality {td.modality!r} (term {name!r}) has no "
                   "photon-count likelihood (its options do not list photon_weighted)")
            raise ConfigError(msg)
        opts["photon_weighted"] = True
    if o.coupling is not None and "coupling" in info.options:
        opts["coupling"] = o.coupling
    return opts, mine


def _build_parts(td, info, space, o, refined, opts) -> list:
    """The built terms of one data term: one per part (:func:`_chunks`), blocks sized and values held out."""
    built = []
    for i, part in enumerate(_chunks(td, info, o.chunk_bytes, refined, opts)):
        term = replace(info.obj.build_term(part, space, xp=o.xp, **opts), part=i)
        if o.chunk_bytes and hasattr(term.operator, "block_for_bytes"):  # a memory target per chunk sizes the
            # blocks of a streamed term, or of one evaluated a block at a time inside (XRF at scan positions)
            term.operator.block = term.operator.block_for_bytes(o.chunk_bytes)
        if o.validation is not None:
            term = replace(term, holdout=_holdout(part, info, term, o.validation, o.validation_seed, o.xp))
        built.append(term)
    return built


def _checked_truth(dataset, space, calibration, xp) -> dict:
    """The dataset's truth of the problem's variables (on ``xp``); a refined unknown's of the wrong shape is a
    :class:`DataError`."""
    truth = {k: v for k, v in dataset.truth.items() if k in space}
    for k in calibration:
        if k in truth and np.shape(truth[k]) != np.shape(calibration[k]):
            msg = f"{dataset.source}:/truth/{k}: expected shape {np.shape(calibration[k])}, got {np.shape(truth[k])}"
            raise DataError(msg)
    if xp is not None and truth:
        truth = {k: xp.asarray(v) for k, v in truth.items()}
    return truth


def is_distance(d) -> bool:
    """A refine bound's distance: a finite number > 0 (not a boolean)."""
    return not isinstance(d, bool) and isinstance(d, int | float) and bool(np.isfinite(d)) and d > 0


def _refine_bounds(bounds, calibration, space) -> list:
    """A :class:`Box` keeping each bounded calibration unknown within its distance of the start value."""
    from ..regularizers import Box

    out = []
    for name, d in bounds.items():
        if name not in calibration:
            msg = f"refine bound for {name!r}: it is not refined (refined: {sorted(calibration) or 'none'})"
            raise ConfigError(msg)
        if space[name].is_complex:
            msg = f"refine bound for {name!r}: only real unknowns can be bounded ({name} is complex)"
            raise ConfigError(msg)
        if not is_distance(d):
            msg = f"refine bound for {name!r} must be a finite distance > 0; got {d!r}"
            raise ConfigError(msg)
        start = np.asarray(calibration[name], dtype=float)
        out.append(Box((name,), start - d, start + d, name=f"bound_{name}"))
    return out


def _holdout(td, info, term, fraction, seed, xp):
    """The held-out mask of one built term (part), shaped like the term's data."""
    from ..validation import check_fraction, term_holdout

    mask = term_holdout(td, info, check_fraction(fraction), int(seed))
    if mask.size != int(np.prod(term.data.shape)):
        msg = (f"{td.where()}: modality {td.modality!r} builds data of shape {tuple(term.data.shape)} from a "
               f"'data' of shape {mask.shape}: it must declare validation_mask(td, fraction, seed) to hold values out")
        raise DataError(msg)
    if type(term.loss).elementwise is Loss.elementwise:
        msg = (f"term {term.name!r}: loss {type(term.loss).__name__} is not a sum over measured values (no "
               "elementwise()): it cannot hold values out for validation")
        raise ConfigError(msg)
    return (xp or np).asarray(mask.reshape(term.data.shape))


def _chunks(td, info, chunk_bytes, refined, options=None) -> list:
    """The parts a term is built as (itself when it is not split)."""
    if chunk_bytes is not None and (isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int)
                                    or chunk_bytes < 0):
        msg = f"chunk memory must be a number of bytes >= 0 (0: never split), got {chunk_bytes!r}"
        raise ConfigError(msg)
    if chunk_bytes == 0 or not info.split_axes or set(refined) & set(info.split_unknowns):
        return [td]
    try:
        total = split_length(td.where(), {k: np.shape(a) for k, a in td.arrays.items()}, info.split_axes)
        size = auto_chunk_size(td, info.split_axes, target=chunk_bytes, per_index=info.temporaries(td, options))
    except (DataError, KeyError, ValueError, TypeError, IndexError):
        return [td]  # malformed data: build_term says precisely what is wrong
    if not total or not size or size >= total:
        return [td]
    parts = -(-total // size)
    return [split_term(td, info.split_axes, k, parts) for k in range(parts)]


def _calibration(dataset, modalities, refine):
    """Start values of the refined calibration unknowns, and every value the modalities offer."""
    offers = {}
    for n, modality in modalities.items():
        for k, a in modality.calibration(dataset.terms[n]).items():
            offers.setdefault(k, np.asarray(a))
    clash = [r for r in refine if r in dataset.space]
    if clash:
        msg = f"cannot refine {clash}: {dataset.source} already has variables of that name"
        raise ConfigError(msg)
    missing = [r for r in refine if r not in offers or offers[r].dtype.kind not in "fc"]
    if missing:
        have = sorted(k for k, a in offers.items() if a.dtype.kind in "fc") or "nothing"
        msg = f"cannot refine {missing}: no term of {dataset.source} offers a start value (offered: {have})"
        raise ConfigError(msg)
    return {r: offers[r] for r in dict.fromkeys(refine)}, offers


def balance_reference(names, dataset, reference=None, registry=None) -> str:
    """The reference term of the balancing: ``reference``, else the dataset's ``reference_term`` attribute, else
    the one term whose modality declares ``balance_role = "reference"``. Never the order of the terms in the
    file; when nothing decides, a :class:`ConfigError` names the terms and the ways to choose.

    Parameters
    ----------
    names : sequence of :obj:`str`
        Terms being solved.
    dataset : :class:`Dataset`
        The data (its ``reference_term`` attribute and each term's modality).
    reference : :obj:`str`, optional
        Explicit choice (``--balance-reference``).
    registry : :class:`~multimodal_ip.plugins.Registry`, optional
        Where the modalities are looked up (default the installed plugins).

    Returns
    -------
    reference : :obj:`str`
        Name of the reference term.

    Raises
    ------
    ConfigError
        The chosen term is not being solved, or no single term declares the reference role.
    """
    names = list(names)
    where = "--balance-reference" if reference is not None else f"{dataset.source}: attribute reference_term"
    chosen = reference if reference is not None else dataset.attrs.get("reference_term")
    if chosen is not None:
        chosen = str(chosen)
        if chosen not in names:
            msg = f"{where} = {chosen!r} is not one of the terms being solved ({', '.join(names)})"
            raise ConfigError(msg)
        return chosen
    registry = registry or get_registry()
    refs = [n for n in names if capabilities(registry.get("modality", dataset.terms[n].modality)).balance_role
            == "reference"]
    if len(refs) == 1:
        return refs[0]
    roles = ", ".join(f"{n} ({dataset.terms[n].modality})" for n in names)
    why = "several declare" if refs else "none declares"
    msg = (f"cannot choose the balancing reference among terms {roles}: {why} balance_role 'reference'; "
           "name one with --balance-reference TERM or the root attribute reference_term")
    raise ConfigError(msg)


def apply_balance(problem, dataset, balance_c=None, reference=None, xp=None, registry=None):
    """The paper's weights at the start point (all ones, calibration at its start values; see
    :func:`~multimodal_ip.balanced_weights`), with ``c`` from the argument, else the dataset's ``balance_c``
    attribute (default 0.01), and the reference term from :func:`balance_reference`.

    Parameters
    ----------
    problem : :class:`~multimodal_ip.JointProblem`
        The problem to weight.
    dataset : :class:`Dataset`
        The data (attributes ``balance_c`` and ``reference_term``).
    balance_c : :obj:`float`, optional
        The constant :math:`c`.
    reference : :obj:`str`, optional
        The reference term (:func:`balance_reference`).
    xp : module, optional
        Array module of the start point (default numpy).
    registry : :class:`~multimodal_ip.plugins.Registry`, optional
        Where the modalities are looked up.

    Returns
    -------
    problem : :class:`~multimodal_ip.JointProblem`
        ``problem`` with the balanced weights (``problem`` itself when it has fewer than two terms).

    Raises
    ------
    ConfigError
        ``c`` is not a finite positive number, the reference cannot be chosen, or a weight is not finite.
    """
    names = list(problem.term_names)
    if len(names) < 2:
        return problem
    ref = balance_reference(names, dataset, reference, registry)
    c = balance_c if balance_c is not None else dataset.attrs.get("balance_c", 0.01)
    if isinstance(c, np.ndarray) and c.shape == ():
        c = c.item()
    if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, float, np.integer, np.floating)) \
            or not (np.isfinite(c) and c > 0):
        where = "" if balance_c is not None else f"{dataset.source}: root attribute "
        msg = f"{where}balance_c must be a finite number > 0; got {one_line(repr(c))[:80]}"
        raise ConfigError(msg)
    c = float(c)
    # the object's gradients only: refined calibration unknowns leave the weights as they are without refinement
    frozen = problem.with_frozen(tuple(problem.calibration)) if problem.calibration else problem
    with np.errstate(all="ignore"):  # a non-finite weight is reported below, in one line, not as numpy warnings
        weights = balanced_weights(frozen, problem.start(xp=xp or np), ref, c)
    bad = {k: w for k, w in weights.items() if not (np.isfinite(w) and w >= 0)}
    if bad:
        msg = (f"balancing against {ref!r} gives weights {bad} (a term's gradient at the start point is zero or not "
               "finite); choose another reference or check the data")
        raise ConfigError(msg)
    return problem.with_weights(weights)
