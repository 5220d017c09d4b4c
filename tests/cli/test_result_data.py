"""``multimodal_ip.cli.result_data.named_data_file``: the one lookup of the data file behind a result, for ``mmip
export`` and ``mmip report`` (each had its own). Its edges: each command now also looks where the other did (export:
the named relative path under the result's folder; report: the file name beside the result), and a configuration
whose ``data`` is no usable name gives none for export too (it raised there)."""

import pytest

from multimodal_ip.cli.result_data import named_data_file


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """``work/`` (the working folder) and ``runs/r.h5`` (the result)."""
    (tmp_path / "work").mkdir()
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path, tmp_path / "runs" / "r.h5"


def test_as_given_first_then_beside_then_under_the_results_folder(tree):
    root, result = tree
    (root / "runs" / "sub").mkdir()
    (root / "runs" / "sub" / "d.h5").write_bytes(b"")  # the named path, under the result's folder
    assert named_data_file(result, {"data": "sub/d.h5"}) == ("sub/d.h5", root / "runs" / "sub" / "d.h5")
    (root / "runs" / "d.h5").write_bytes(b"")  # the file name beside the result comes first
    assert named_data_file(result, {"data": "sub/d.h5"}) == ("sub/d.h5", root / "runs" / "d.h5")
    (root / "work" / "sub").mkdir()
    (root / "work" / "sub" / "d.h5").write_bytes(b"")  # as given (the working folder) before both
    assert named_data_file(result, {"data": "sub/d.h5"})[1].resolve() == root / "work" / "sub" / "d.h5"


def test_missing_and_unusable_names(tree):
    root, result = tree
    assert named_data_file(result, {"data": "gone.h5"}) == ("gone.h5", None)
    (root / "runs" / "dir.h5").mkdir()  # not a regular file
    assert named_data_file(result, {"data": "dir.h5"}) == ("dir.h5", None)
    for config in ({}, {"data": ""}, {"data": 3}, {"data": ["d.h5"]}, {"data": "d\0.h5"}, None, "d.h5"):
        assert named_data_file(result, config) == (None, None)
