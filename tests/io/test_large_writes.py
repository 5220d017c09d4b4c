"""Files above the in-memory size are written by HDF5 to a marked temporary after a free-space check."""

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from multimodal_ip.atomic import TEMPORARY_MARKER
from multimodal_ip.errors import DataError
from multimodal_ip.io import dataset as D


def test_large_file_goes_to_disk_marked_and_renamed(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "IN_MEMORY_MAX_BYTES", 1000)
    target = tmp_path / "big.h5"
    seen = {}
    with D.atomic_h5(target, size_hint=8000) as f:
        f.create_dataset("a", data=np.arange(1000.0))
        temporaries = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        seen["marked"] = [p.read_bytes()[: len(TEMPORARY_MARKER)] for p in temporaries]
        seen["in_memory"] = f.driver == "core"
    assert seen == {"marked": [TEMPORARY_MARKER], "in_memory": False}
    assert [p.name for p in tmp_path.iterdir()] == ["big.h5"]
    assert Path(target).read_bytes()[:512] == bytes(512)  # the marker cleared once complete
    with h5py.File(target) as f:
        np.testing.assert_array_equal(f["a"][()], np.arange(1000.0))


def test_small_file_is_built_in_memory(tmp_path):
    with D.atomic_h5(tmp_path / "s.h5", size_hint=10) as f:
        assert f.driver == "core"


def test_no_room_is_one_line_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "IN_MEMORY_MAX_BYTES", 1000)
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    with pytest.raises(DataError, match=r"needs about .* GB free") as err, \
            D.atomic_h5(tmp_path / "big.h5", size_hint=free + (1 << 30)):
        pytest.fail("the block must not run")
    assert "\n" not in str(err.value) and list(tmp_path.iterdir()) == []


def test_a_failing_block_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "IN_MEMORY_MAX_BYTES", 1000)
    (tmp_path / "big.h5").write_bytes(b"old")
    with pytest.raises(RuntimeError), D.atomic_h5(tmp_path / "big.h5", size_hint=8000) as f:
        f.create_dataset("a", data=np.zeros(1000))
        raise RuntimeError
    assert [p.name for p in tmp_path.iterdir()] == ["big.h5"] and (tmp_path / "big.h5").read_bytes() == b"old"
