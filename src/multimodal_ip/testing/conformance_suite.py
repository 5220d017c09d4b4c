"""Tests added by ``pytest --mmip-conformance``: one adjoint and one Taylor test per modality case."""

import numpy as np
import pytest

from multimodal_ip.plugins import Registry, build_plugin_manager
from multimodal_ip.testing import check_adjoint, check_jacobian


def _cases():
    registry = Registry(*build_plugin_manager())
    out = []
    for name in registry.names("modality"):
        modality = registry.get("modality", name)
        for case, op, x in modality.conformance_cases(np.random.default_rng(0)):
            out.append(pytest.param(name, op, x, id=f"{name}-{case}"))
    return out


CASES = _cases()


@pytest.mark.parametrize(("modality", "op", "x"), CASES)
def test_modality_adjoint(modality, op, x):
    check_adjoint(op.jacobian(x), dtype=x.dtype, rng=np.random.default_rng(1), name=f"J({modality}: {op.name})")


@pytest.mark.parametrize(("modality", "op", "x"), CASES)
def test_modality_taylor(modality, op, x):
    check_jacobian(op, x.astype(np.result_type(x.dtype, np.float64)), rng=np.random.default_rng(2),
                   name=f"{modality}: {op.name}")


def test_some_modality_installed():
    assert CASES, "no multimodal_ip modality is installed: nothing to conformance-test"
