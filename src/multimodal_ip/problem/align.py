__all__ = ["align", "ALIGN_GROWTH"]

import numpy as np

#: how far the solvers' trust region along an invariance may grow over its ``max_step`` (doubling after each move
#: that reached it): a phase 0.77 rad off is turned in 4 iterations from 0.1 rad (docs/validation.md)
ALIGN_GROWTH = 8.0


def align(problem, v, steps=None) -> tuple:
    r"""``(v', {term: t})``: ``v`` moved along every term's :class:`Invariance` to the minimum of the *other*
    terms and the regularizers over ``|t| <= step`` (``steps[term]``, default its ``max_step``; bounded Brent
    search to 1 % of the step, about ten evaluations of the other terms, none of the invariant term). The term
    itself does not change along its group, so the objective never rises. A group that touches a frozen
    variable, or that nothing else pins (the term alone, no regularizer), is left alone.

    ``problem`` is a :class:`JointProblem` or a composition around one with the same construction helpers
    (``with_terms``, ``value``, ``invariances``, ``term_names``, ``space``, ``regularizers``, ``frozen``), such
    as the MPI :class:`~multimodal_ip.distributed.DistributedProblem`, whose values are summed over ranks.

    Parameters
    ----------
    problem : :class:`JointProblem`
        The problem (or a composition around one, as above).
    v : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Packed iterate.
    steps : :obj:`dict`, optional
        ``{term: largest move}``; default each invariance's ``max_step``.

    Returns
    -------
    v : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        The moved iterate (``v`` itself when nothing moved).
    moves : :obj:`dict`
        ``{term: t}``: the move along each term's group (``0.0`` when it did not lower the objective); terms
        left alone are absent.
    """
    from scipy.optimize import minimize_scalar

    moves: dict = {}
    for name, inv in problem.invariances().items():
        others = [n for n in problem.term_names if n != name]
        arrays = problem.space.unpack(v)
        if not others and not problem.regularizers or set(inv.apply(arrays, 0.0)) & set(problem.frozen):
            continue
        pinned = problem.with_terms(others)

        def moved(t, arrays=arrays, inv=inv):
            return problem.space.pack({**arrays, **inv.apply(arrays, t)})

        m = float((steps or {}).get(name, inv.max_step))
        res = minimize_scalar(lambda t, pinned=pinned, moved=moved: pinned.value(moved(t)), bounds=(-m, m),
                              method="bounded", options={"xatol": 1e-2 * m})
        moves[name] = 0.0
        if np.isfinite(res.fun) and res.fun < pinned.value(v):
            v, moves[name] = moved(float(res.x)), float(res.x)
    return v, moves
