__all__ = ["build_problem", "apply_balance"]

import numpy as np

from ..errors import ConfigError
from ..plugins import get_registry
from ..problem import JointProblem, balanced_weights


def build_problem(dataset, terms=None, balance=True, balance_c=None, reference=None, registry=None,
                  term_options=None, regularizers=(), xp=None, dtype=None):
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
    """
    registry = registry or get_registry()
    names = list(dataset.terms) if terms is None else list(terms)
    unknown = [n for n in names if n not in dataset.terms]
    if unknown:
        msg = f"unknown term(s) {unknown}; {dataset.source} has: {', '.join(dataset.terms)}"
        raise ConfigError(msg)
    space = dataset.space
    term_options = term_options or {}
    built = []
    for n in names:
        td = dataset.terms[n]
        modality = registry.get("modality", td.modality)
        options = dict(term_options.get(n, {}), **({"dtype": dtype} if dtype is not None else {}))
        built.append(modality.build_term(td, space, xp=xp, **options))
    truth = dataset.truth
    if xp is not None and truth:
        truth = {k: xp.asarray(v) for k, v in truth.items()}
    problem = JointProblem(space, built, regularizers, truth or None)
    return apply_balance(problem, dataset, balance_c, reference, xp) if balance else problem


def apply_balance(problem, dataset, balance_c=None, reference=None, xp=None):
    """The paper's weights at the all-ones point (see :func:`~multimodal_ip.balanced_weights`), with ``c`` and
    the reference term from the arguments, else from the dataset's attributes; one term is left as it is."""
    names = list(problem.term_names)
    if len(names) < 2:
        return problem
    ref = reference or str(dataset.attrs.get("reference_term", names[0]))
    if ref not in names:
        ref = names[0]
    c = float(balance_c if balance_c is not None else dataset.attrs.get("balance_c", 0.01))
    x0 = problem.space.full(1.0, xp=xp or np)
    return problem.with_weights(balanced_weights(problem, x0, ref, c))
