"""Which data term is to blame when a solve stalls: a Taylor test of each term's gradient at a point."""

__all__ = ["check_term_gradients"]

from .errors import ConformanceError
from .testing.checks import check_gradient


def check_term_gradients(problem, v, seed=0) -> dict:
    r"""Taylor-test every data term's gradient at ``v``.

    A correct gradient gives a remainder :math:`|\Phi(v+hd)-\Phi(v)-h\langle g,d\rangle| = O(h^2)`; a gradient
    that dropped a chain-rule factor or has the wrong sign gives :math:`O(h)`. About 25 objective evaluations per
    term.

    Returns
    -------
    dict
        ``{term: None}`` for a term that passes, ``{term: "reason"}`` for one that fails.
    """
    import numpy as np

    out: dict = {}
    for name in problem.term_names:
        try:
            check_gradient(problem.alone(name).with_regularizers(()), v, rng=np.random.default_rng(seed))
            out[name] = None
        except ConformanceError as exc:
            out[name] = str(exc).replace(repr(problem.alone(name).with_regularizers(())), f"term {name!r}")
    return out
