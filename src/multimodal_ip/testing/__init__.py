"""Conformance kit: checks, Hypothesis strategies, and a pytest plugin (``pytest --mmip-conformance``)."""

__all__ = ["check_adjoint", "check_jacobian", "check_gradient", "adjoint_tolerance", "check_modality"]

from .checks import adjoint_tolerance, check_adjoint, check_gradient, check_jacobian


def check_modality(modality, rng, label="modality"):
    """Run the adjoint and Taylor checks on every conformance case a modality offers.

    Returns a list of ``(case, adjoint_error, taylor_slope)``.
    """
    out = []
    for case, op, x in modality.conformance_cases(rng):
        name = f"{label}[{case}]"
        err = check_adjoint(op.jacobian(x), dtype=x.dtype, rng=rng, name=f"J({name})")
        slope = check_jacobian(op, x, rng=rng, name=name)
        out.append((case, err, slope))
    return out
