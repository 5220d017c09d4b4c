"""Which data term is to blame when a solve stalls: a Taylor test of each term's gradient at a point."""

__all__ = ["check_term_gradients"]

from .errors import ConformanceError, one_line
from .testing.checks import check_gradient


def check_term_gradients(problem, v, seed=0) -> dict:
    r"""Taylor-test every data term's gradient at ``v``, in the precision the problem evaluates in.

    A correct gradient gives a remainder :math:`|\Phi(v+hd)-\Phi(v)-h\langle g,d\rangle| = O(h^2)`; a gradient
    that dropped a chain-rule factor or has the wrong sign gives :math:`O(h)`. Each term is tested along a random
    direction and along its own negative gradient, where :math:`|\langle g,d\rangle|` is largest and a wrong
    gradient stands out of the round-off floor (:math:`\epsilon` of the problem's dtype times
    :math:`|\Phi|+|\langle g,d\rangle|`) even in float32. About 50 objective evaluations per term.

    The test runs on the problem as the solver saw it (a float32 run is tested in float32; ``v`` is narrowed to
    the problem's precision first): a term rebuilt in float64 could take other code paths (complex128 FFTs,
    another dtype of its data) and would need the data read again, so it might pass where the run's gradient fails.

    Parameters
    ----------
    problem : :class:`~multimodal_ip.JointProblem`
        The problem the solver ran on (its terms are tested alone, without regularizers).
    v : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        Packed point, typically where the run stalled.
    seed : :obj:`int`, optional
        Seed of the random directions.

    Returns
    -------
    dict
        ``{term: None}`` for a term that passes, ``{term: "reason"}`` for one that fails, including a term whose
        own code raised while being evaluated (the diagnosis of a stall never becomes an internal error).
    """
    import numpy as np

    from .backend import get_array_module

    narrow = getattr(problem, "at_precision", None)
    v = narrow(v) if narrow is not None else v
    xp = get_array_module(v)
    out: dict = {}
    for name in problem.term_names:
        alone = problem.alone(name).with_regularizers(())
        try:
            directions = [None]
            g = alone.gradient(v)
            if float(xp.linalg.norm(g)) > 0:
                directions.append(-g)
            for d in directions:
                check_gradient(alone, v, rng=np.random.default_rng(seed), direction=d)
            out[name] = None
        except ConformanceError as exc:
            out[name] = str(exc).replace(repr(alone), f"term {name!r}")
        except Exception as exc:  # a plugin's own code failed: name the term and how, never an internal error
            out[name] = f"term {name!r} could not be evaluated: {type(exc).__name__}: {one_line(exc)}"
    return out
