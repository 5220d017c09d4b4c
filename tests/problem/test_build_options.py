"""The builder takes one frozen BuildOptions, built once from the run configuration and shared by the MPI path."""

import dataclasses

import pytest

from multimodal_ip.io import BuildOptions, build_problem, save_dataset


def test_build_options_are_frozen_and_equal_the_keywords(tiny_dataset):
    options = BuildOptions(dtype="float64", balance_c=0.02)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.balance = False  # type: ignore[misc]
    by_object = build_problem(tiny_dataset, options=options)
    by_keywords = build_problem(tiny_dataset, dtype="float64", balance_c=0.02)
    assert by_object.weights == by_keywords.weights and by_object.weights["fluorescence"] != 1.0
    x = by_object.start()
    assert by_object.value(x) == by_keywords.value(x)
    # keywords override the object's fields, and leave the object as it was
    unbalanced = build_problem(tiny_dataset, options=options, balance=False)
    assert set(unbalanced.weights.values()) == {1.0} and options.balance is True
    with pytest.raises(TypeError):
        build_problem(tiny_dataset, options=options, no_such_option=1)


def test_the_cli_builds_one_options_object_for_both_paths(tmp_path, tiny_dataset, monkeypatch):
    import multimodal_ip.distributed
    import multimodal_ip.io
    from multimodal_ip.cli import build_parser
    from multimodal_ip.cli.common import build
    from multimodal_ip.config import run_config

    save_dataset(tmp_path / "d.h5", tiny_dataset)
    argv = ["reconstruct", str(tmp_path / "d.h5"), "-o", str(tmp_path / "r.h5"), "--dtype", "float64",
            "--balance-c", "0.02", "--refine", "probe"]
    cfg = run_config(build_parser().parse_args(argv))
    seen = {}

    def one_process(ds, options=None, **kw):
        seen["one"] = (options, kw)
        return None

    def distributed(path, comm, terms=None, options=None, allow_external=False, **kw):
        seen["mpi"] = (options, kw)
        return None, None

    monkeypatch.setattr(multimodal_ip.io, "build_problem", one_process)
    monkeypatch.setattr(multimodal_ip.distributed, "build_distributed_problem", distributed)
    build(str(tmp_path / "d.h5"), cfg)
    one_rank = type("OneRank", (), {"allgather": lambda self, x: [x], "Get_rank": lambda self: 0,
                                    "Get_size": lambda self: 1})()  # a communicator of one rank (its agreements)
    build(str(tmp_path / "d.h5"), cfg, comm=one_rank)
    (one, kw1), (mpi, kw2) = seen["one"], seen["mpi"]
    assert isinstance(one, BuildOptions) and kw1 == {} and set(kw2) == {"plan"}  # each rank plans its own share
    assert one == mpi and (one.dtype, one.balance_c, tuple(one.refine)) == ("float64", 0.02, ("probe",))
