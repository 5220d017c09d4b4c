"""Fixtures of the hostile-input suites: the small simulated dataset saved once per module, and a case folder."""

import shutil

import h5py
import numpy as np
import pytest

from multimodal_ip.io import save_dataset


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_dataset):
    path = tmp_path_factory.mktemp("hostile") / "base.h5"
    save_dataset(path, tiny_dataset)
    return path


@pytest.fixture
def case(tmp_path, base):
    """A case folder holding ``d.h5`` (a copy of the base dataset), and ``secret.h5`` outside it."""
    root = tmp_path / "case"
    root.mkdir()
    shutil.copy(base, root / "d.h5")
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as f:
        f["data"] = np.ones((25, 16, 16))
        f["x"] = np.ones(3)
    return root, secret
