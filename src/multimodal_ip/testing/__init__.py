"""Conformance kit: checks, Hypothesis strategies, and a pytest plugin (``pytest --mmip-conformance``)."""

__all__ = ["check_adjoint", "check_jacobian", "check_gradient", "adjoint_tolerance", "check_modality",
           "check_example_term", "check_invariance", "check_same_jacobian"]

from .checks import adjoint_tolerance, check_adjoint, check_gradient, check_jacobian, check_same_jacobian


def check_modality(modality, rng, label="modality"):
    """Run the adjoint and Taylor checks on every conformance case a modality offers.

    Parameters
    ----------
    modality : :class:`~multimodal_ip.modality.Modality`
        The modality (its ``conformance_cases(rng)``).
    rng : :obj:`numpy.random.Generator`
        Draws the cases' points and the test vectors.
    label : :obj:`str`, optional
        Prefix of the case names in error messages.

    Returns
    -------
    :obj:`list` of :obj:`tuple`
        ``(case, adjoint_error, taylor_slope)`` per case; a failed check is a
        :class:`~multimodal_ip.errors.ConformanceError`.
    """
    out = []
    for case, op, x in modality.conformance_cases(rng):
        name = f"{label}[{case}]"
        err = check_adjoint(op.jacobian(x), dtype=x.dtype, rng=rng, name=f"J({name})")
        slope = check_jacobian(op, x, rng=rng, name=name)
        out.append((case, err, slope))
    return out


def check_example_term(modality, xp=None, seed=3, dtype="float64"):
    """Build a modality's ``example_term`` through ``build_term`` on the array module ``xp`` (numpy or cupy) and run
    the adjoint test of the term's Jacobian and the Taylor test of its gradient there, on ``xp`` arrays; when the
    term declares an :class:`~multimodal_ip.Invariance`, also that its objective does not change along it.

    This is the check of the data path on a backend: data moved with ``xp.asarray`` by ``build_term``, operators
    applied to ``xp`` arrays.

    Parameters
    ----------
    modality : :class:`~multimodal_ip.modality.Modality`
        The modality; it must offer ``example_term(rng)``.
    xp : module, optional
        The array module (numpy or cupy); default numpy.
    seed : :obj:`int`, optional
        Seeds the example term and the test vectors.
    dtype : :obj:`str`, optional
        The term's dtype.

    Returns
    -------
    :obj:`tuple`
        ``(adjoint_error, taylor_slope)``.
    """
    import numpy as np

    from .. import JointProblem, VariableSpace
    from ..modality import capabilities

    xp = xp or np
    info = capabilities(modality)
    td, variables = info.example_term(np.random.default_rng(seed))
    space = VariableSpace(variables)
    problem = JointProblem(space, [info.obj.build_term(td, space, xp=xp, dtype=dtype)])
    rng = np.random.default_rng(seed + 1)
    v = xp.asarray((space.full(1.0) + 0.1 * rng.standard_normal(space.size)).astype(dtype))
    jac = problem.linearize(v).jacobian()
    err = check_adjoint(jac, dtype=v.dtype, rng=rng, xp=xp, name=f"J({td.name} on {xp.__name__})")
    slope = check_gradient(problem, v, rng=rng)
    check_invariance(problem, v)
    return err, slope


def check_invariance(problem, v, rtol=1e-8):
    """Every declared :class:`~multimodal_ip.Invariance` of ``problem``'s terms leaves its term's objective unchanged
    at ``v`` (moved by ``+-max_step`` and by 1); ``AssertionError`` naming the term and the change otherwise.

    Parameters
    ----------
    problem : :class:`~multimodal_ip.JointProblem`
        The problem whose terms' invariances are checked.
    v : :obj:`numpy.ndarray`
        The packed point.
    rtol : :obj:`float`, optional
        Relative change of a term's objective still taken as unchanged.
    """
    for name, inv in problem.invariances().items():
        alone = problem.alone(name).with_regularizers(())
        arrays = problem.space.unpack(v)
        at = alone.value(v)
        for t in (inv.max_step, -inv.max_step, 1.0):
            moved = alone.value(problem.space.pack({**arrays, **inv.apply(arrays, t)}))
            assert abs(moved - at) <= rtol * max(abs(at), 1e-300), (
                f"term {name!r}: objective {at!r} became {moved!r} along its invariance {inv.name!r} (t = {t:g})")
