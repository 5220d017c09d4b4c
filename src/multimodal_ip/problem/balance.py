__all__ = ["balanced_weights"]

from ..backend import get_array_module
from ..errors import UnknownVariableError
from .joint_problem import JointProblem


def balanced_weights(problem: JointProblem, v0, reference: str, c: float) -> dict:
    r"""The paper's gradient-norm balancing, fixed at the initial point :math:`v_0`.

    Every term but ``reference`` gets weight
    :math:`c\,\|\nabla f_{\text{ref}}(v_0)\| / \|\nabla f_t(v_0)\|` (the reference keeps weight 1).

    Parameters
    ----------
    problem : :class:`JointProblem`
        The problem whose terms are weighted.
    v0 : :obj:`numpy.ndarray`
        The initial point, packed.
    reference : :obj:`str`
        The term kept at weight 1 (the modality with ``balance_role = "reference"``).
    c : :obj:`float`
        The balance factor :math:`c`.

    Returns
    -------
    :obj:`dict`
        ``{term name: weight}``, for :meth:`JointProblem.with_weights`.
    """
    if reference not in problem.term_names:
        msg = f"reference term {reference!r} not in problem; terms: {', '.join(problem.term_names)}"
        raise UnknownVariableError(msg)
    unit = problem.with_weights(dict.fromkeys(problem.term_names, 1.0)).with_regularizers(())
    ncp = get_array_module(v0)
    # one term's gradient at a time (each is as large as the unknowns): only its norm is kept
    norms = {name: float(ncp.linalg.norm(unit.with_terms([name]).gradient(v0))) for name in unit.term_names}
    gref = norms[reference]
    return {name: 1.0 if name == reference else (c * gref / gn if gn > 0 else 1.0) for name, gn in norms.items()}
