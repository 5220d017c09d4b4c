__all__ = ["build_problem", "apply_balance", "LIKELIHOODS"]

import numpy as np

from ..errors import ConfigError, DataError
from ..plugins import get_registry
from ..problem import JointProblem, balanced_weights
from ..variables import Variable, VariableSpace

LIKELIHOODS = ("balanced", "poisson")


def build_problem(dataset, terms=None, balance=True, balance_c=None, reference=None, registry=None,
                  term_options=None, regularizers=(), xp=None, dtype=None, refine=(), likelihood="balanced",
                  coupling=None):
    r"""Assemble a :class:`~multimodal_ip.JointProblem` from a :class:`Dataset` through the modality plugins.

    Parameters
    ----------
    terms : sequence of :obj:`str`, optional
        Keep only these data terms (e.g. ``["ptychography"]`` for a separate inversion).
    balance : :obj:`bool`, optional
        Apply the paper's gradient-norm balancing at the all-ones point: every term but
        ``reference`` gets :math:`c\,\|\nabla f_{ref}\|/\|\nabla f_t\|`.
    balance_c : :obj:`float`, optional
        :math:`c`; default the dataset's root attribute ``balance_c`` (else 0.01).
    reference : :obj:`str`, optional
        Reference term; default the dataset's ``reference_term`` attribute, else the first term.
    term_options : mapping, optional
        ``{term: {option: value}}`` passed to each modality's ``build_term`` (e.g. ``loss``).
    xp : module, optional
        Array module for the data (``numpy`` or ``cupy``).
    dtype : :obj:`str`, optional
        Compute dtype given to every term (overrides a ``dtype`` in ``term_options``).
    refine : sequence of :obj:`str`, optional
        Calibration unknowns to refine with the object, e.g. ``("probe", "positions")``: each becomes a
        variable, started at the value a term's modality offers (``calibration(td)``, the ptychography
        probe and scan positions) and read by every term whose modality lists it in ``refinable``.
    likelihood : :obj:`str`, optional
        ``"balanced"`` (the paper's losses and gradient-norm weights) or ``"poisson"``: every term uses its
        likelihood in photon counts (``photon_weighted=True``: the statistics fix the weights, no ``beta``).
    coupling : :obj:`str` or sequence, optional
        Coupling of ``w`` into the object, given to every term whose modality lists ``"coupling"`` in its
        ``options``: ``"ones"`` (the paper), coefficients, or ``"xraylib:<keV>"`` (element names from a term's
        ``elements`` attribute unless the spec lists them, ``"xraylib:8.8:Fe,Zn"``).
    """
    registry = registry or get_registry()
    names = list(dataset.terms) if terms is None else list(terms)
    unknown = [n for n in names if n not in dataset.terms]
    if unknown:
        msg = f"unknown term(s) {unknown}; {dataset.source} has: {', '.join(dataset.terms)}"
        raise ConfigError(msg)
    if likelihood not in LIKELIHOODS:
        msg = f"likelihood must be one of {LIKELIHOODS}; got {likelihood!r}"
        raise ConfigError(msg)
    modalities = {n: registry.get("modality", dataset.terms[n].modality) for n in names}
    calibration, offers = _calibration(dataset, modalities, tuple(refine or ()))
    space = dataset.space
    if calibration:
        cdtype = np.result_type(space.dtype, np.complex64)
        space = VariableSpace([*space.variables, *(
            Variable(k, a.shape, cdtype if np.iscomplexobj(a) else space.dtype) for k, a in calibration.items())])
    term_options = term_options or {}
    built = []
    for n in names:
        options = dict(term_options.get(n, {}), **({"dtype": dtype} if dtype is not None else {}))
        mine = tuple(r for r in calibration if r in getattr(modalities[n], "refinable", ()))
        if mine:
            options.update(refine=mine, calibration=offers)
        if likelihood == "poisson":
            if "photon_weighted" not in getattr(modalities[n], "options", ()):
                msg = (f"likelihood 'poisson': modality {dataset.terms[n].modality!r} (term {n!r}) has no "
                       "photon-count likelihood (its options do not list photon_weighted)")
                raise ConfigError(msg)
            options["photon_weighted"] = True
        if coupling is not None and "coupling" in getattr(modalities[n], "options", ()):
            options["coupling"] = _with_element_names(coupling, dataset)
        built.append(modalities[n].build_term(dataset.terms[n], space, xp=xp, **options))
    truth = {k: v for k, v in dataset.truth.items() if k in space}
    for k in calibration:
        if k in truth and np.shape(truth[k]) != np.shape(calibration[k]):
            msg = f"{dataset.source}:/truth/{k}: expected shape {np.shape(calibration[k])}, got {np.shape(truth[k])}"
            raise DataError(msg)
    if xp is not None and truth:
        truth = {k: xp.asarray(v) for k, v in truth.items()}
    if coupling is not None and not any("coupling" in getattr(m, "options", ()) for m in modalities.values()):
        msg = f"coupling {coupling!r}: no term of {dataset.source} couples element maps into an object"
        raise ConfigError(msg)
    problem = JointProblem(space, built, regularizers, truth or None, calibration)
    return apply_balance(problem, dataset, balance_c, reference, xp) if balance and likelihood == "balanced" \
        else problem


def _calibration(dataset, modalities, refine):
    """Start values of the refined calibration unknowns, and every value the modalities offer."""
    offers = {}
    for n, modality in modalities.items():
        if hasattr(modality, "calibration"):
            for k, a in modality.calibration(dataset.terms[n]).items():
                offers.setdefault(k, np.asarray(a))
    clash = [r for r in refine if r in dataset.space]
    if clash:
        msg = f"cannot refine {clash}: {dataset.source} already has variables of that name"
        raise ConfigError(msg)
    missing = [r for r in refine if r not in offers]
    if missing:
        have = sorted(offers) or "nothing"
        msg = f"cannot refine {missing}: no term of {dataset.source} offers a start value (offered: {have})"
        raise ConfigError(msg)
    return {r: offers[r] for r in dict.fromkeys(refine)}, offers


def apply_balance(problem, dataset, balance_c=None, reference=None, xp=None):
    """The paper's weights at the start point (all ones, calibration at its start values; see
    :func:`~multimodal_ip.balanced_weights`), with ``c`` and
    the reference term from the arguments, else from the dataset's attributes; one term is left as it is."""
    names = list(problem.term_names)
    if len(names) < 2:
        return problem
    ref = reference or str(dataset.attrs.get("reference_term", names[0]))
    if ref not in names:
        ref = names[0]
    c = float(balance_c if balance_c is not None else dataset.attrs.get("balance_c", 0.01))
    # the object's gradients only: refined calibration unknowns leave the weights as they are without refinement
    frozen = problem.with_frozen(tuple(problem.calibration)) if problem.calibration else problem
    return problem.with_weights(balanced_weights(frozen, problem.start(xp=xp or np), ref, c))


def _with_element_names(spec, dataset):
    """``"xraylib:<keV>"`` gets the element names of the dataset's ``elements`` attribute appended."""
    if isinstance(spec, str) and spec.lower().startswith("xraylib:") and spec.count(":") == 1:
        for td in dataset.terms.values():
            if "elements" in td.attrs:
                return spec + ":" + ",".join(str(e) for e in np.atleast_1d(td.attrs["elements"]))
    return spec
