"""Tests added by ``pytest --mmip-conformance``.

For every installed plugin: it loaded, was not shadowed, and registered something valid. For every modality: the
adjoint and Taylor tests of each conformance case; its example term built through ``build_term`` (finite objective
and gradient); and splitting that term along its ``split_axes`` into 2 and 3 parts (as MPI ranks and chunks do)
gives the same objective and gradient as the whole. Opt-in: a modality offering ``autodiff_cases(rng)`` (pairs of a
hand-written operator and its automatic-differentiation twin) has the two compared (value, Jacobian, adjoint).
"""

import numpy as np
import pytest

from multimodal_ip.plugins import Registry, build_plugin_manager
from multimodal_ip.testing import check_adjoint, check_jacobian
from multimodal_ip.testing.checks import split_diagnosis

REGISTRY = Registry(*build_plugin_manager())


def _cases():
    out = []
    for name in REGISTRY.names("modality"):
        modality = REGISTRY.get("modality", name)
        try:
            cases = list(modality.conformance_cases(np.random.default_rng(0)))
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - this modality's failure (a sys.exit too); others run
            out.append(pytest.param(name, None, repr(exc), id=f"{name}-conformance_cases-raised"))
            continue
        if not cases:
            out.append(pytest.param(name, None, "conformance_cases() yielded no case", id=f"{name}-no-cases"))
        for case, op, x in cases:
            out.append(pytest.param(name, op, x, id=f"{name}-{case}"))
    return out


CASES = _cases()


def _dist(name) -> str:
    return next((r.dist for r in REGISTRY.rows() if r.kind == "modality" and r.name == name), "?")


def test_every_installed_plugin_loaded():
    bad = [f"{r.dist} ({r.kind} {r.name}): {r.error}" for r in REGISTRY.errors]
    assert not bad, "plugins that failed to load or were refused:\n" + "\n".join(bad)


@pytest.mark.parametrize(("modality", "op", "x"), CASES)
def test_modality_adjoint(modality, op, x):
    assert op is not None, f"modality {modality!r} ({_dist(modality)}): {x}"
    check_adjoint(op.jacobian(x), dtype=x.dtype, rng=np.random.default_rng(1), name=f"J({modality}: {op.name})")


@pytest.mark.parametrize(("modality", "op", "x"), CASES)
def test_modality_taylor(modality, op, x):
    assert op is not None, f"modality {modality!r} ({_dist(modality)}): {x}"
    check_jacobian(op, x.astype(np.result_type(x.dtype, np.float64)), rng=np.random.default_rng(2),
                   name=f"{modality}: {op.name}")


def _problem(modality, td, variables):
    from multimodal_ip import JointProblem, VariableSpace

    space = VariableSpace(variables)
    term = modality.build_term(td, space)
    return JointProblem(space, [term])


@pytest.mark.parametrize("modality", REGISTRY.names("modality"))
def test_modality_example_term_builds_and_splits(modality):
    from multimodal_ip.modality import capabilities, split_term

    info = capabilities(REGISTRY.get("modality", modality))
    assert info.has_example, (f"modality {modality!r} ({_dist(modality)}) has no example_term(rng): the kit cannot "
                              "check build_term and its split (see the modality contract)")
    td, variables = info.example_term(np.random.default_rng(3))
    whole = _problem(info.obj, td, variables)
    v = whole.space.full(1.0) + 0.1 * np.random.default_rng(4).standard_normal(whole.space.size)
    f, g = whole.value_and_gradient(v)
    assert np.isfinite(f) and np.all(np.isfinite(g)), f"{modality}: example term gives a non-finite objective"
    if not info.split_axes:
        return  # not split: evaluated once, never by parts
    for parts in (2, 3):
        fs, gs = 0.0, np.zeros_like(g)
        for k in range(parts):
            fk, gk = _problem(info.obj, split_term(td, info.split_axes, k, parts), variables).value_and_gradient(v)
            fs, gs = fs + fk, gs + gk
        scale = max(abs(f), 1e-300)
        if not abs(fs - f) <= 1e-9 * scale:
            why = split_diagnosis(lambda t: _problem(info.obj, t, variables).value(v), td, info.split_axes, parts)
            pytest.fail(f"{modality} ({_dist(modality)}): split into {parts} parts along {info.split_axes}, the "
                        f"objectives sum to {fs!r}, not {f!r}: {why}", pytrace=False)
        gerr = float(np.linalg.norm(gs - g)) / max(float(np.linalg.norm(g)), 1e-300)
        assert gerr <= 1e-9, f"{modality}: split into {parts} parts, the gradients differ by {gerr:.3g} (relative)"


@pytest.mark.parametrize("modality", REGISTRY.names("modality"))
def test_modality_example_term_on_backend(modality, request):
    """The example term built on the array module of ``--mmip-backend`` (numpy by default, cupy on a GPU):
    adjoint test of its Jacobian and Taylor test of its gradient on that module's arrays."""
    from multimodal_ip.modality import capabilities
    from multimodal_ip.testing import check_example_term

    backend = request.config.getoption("--mmip-backend", default="numpy")
    xp = pytest.importorskip(backend) if backend != "numpy" else np
    if not capabilities(REGISTRY.get("modality", modality)).has_example:
        pytest.fail(f"modality {modality!r} ({_dist(modality)}) has no example_term(rng)")
    check_example_term(REGISTRY.get("modality", modality), xp=xp)


AUTODIFF = [n for n in REGISTRY.names("modality") if callable(getattr(REGISTRY.get("modality", n), "autodiff_cases",
                                                                        None))]


@pytest.mark.parametrize("modality", AUTODIFF)
def test_modality_autodiff_matches_hand_written(modality):
    """Opt-in (the modality offers ``autodiff_cases(rng)``): each hand-written operator agrees with its automatic-
    differentiation twin in value, Jacobian product and adjoint product (skipped without JAX)."""
    from multimodal_ip.testing import check_same_jacobian

    pytest.importorskip("jax", reason="the autodiff check needs JAX (pip install 'jax[cpu]')")
    rng = np.random.default_rng(5)
    cases = list(REGISTRY.get("modality", modality).autodiff_cases(rng))
    assert cases, f"modality {modality!r} ({_dist(modality)}): autodiff_cases() yielded no case"
    for case, hand, auto, x in cases:
        check_same_jacobian(hand, auto, x, rng=rng, name=f"{modality}[{case}]: {hand.name} vs {auto.name}")


def test_some_modality_installed():
    assert CASES, "no multimodal_ip modality is installed: nothing to conformance-test"
