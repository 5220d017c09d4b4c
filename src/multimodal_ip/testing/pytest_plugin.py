"""pytest plugin (entry point ``pytest11``): conformance-tests every installed modality.

``pytest --mmip-conformance`` adds, for each modality registered through the
``multimodal_ip`` entry points, the adjoint (dot) test of its Jacobian and the Taylor
test of its forward model on the cases it offers. Fixtures: ``mmip_registry`` (a fresh
registry) and ``mmip_rng``.
"""

from pathlib import Path

import numpy as np
import pytest


def pytest_addoption(parser):
    group = parser.getgroup("multimodal_ip")
    group.addoption(
        "--mmip-conformance",
        action="store_true",
        default=False,
        help="conformance-test every installed multimodal_ip modality (adjoint and Taylor tests)",
    )
    group.addoption(
        "--mmip-backend",
        default="numpy",
        choices=("numpy", "cupy"),
        help="array module of the conformance kit's example-term checks (cupy on a GPU machine)",
    )


def pytest_configure(config):
    if config.getoption("--mmip-conformance", default=False):
        config.args.append(str(Path(__file__).with_name("conformance_suite.py")))


@pytest.fixture
def mmip_registry():
    """A registry built afresh (entry points included) for this test."""
    from multimodal_ip.plugins import Registry, build_plugin_manager

    return Registry(*build_plugin_manager())


@pytest.fixture
def mmip_rng():
    return np.random.default_rng(20251104)
