"""Fuzzing: malformed datasets and run files end in exit status 0 or 2 with one line, never a traceback."""

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multimodal_ip.cli import main
from multimodal_ip.io import save_dataset

TARGETS = ["terms/ptychography/data", "terms/ptychography/probe", "terms/ptychography/positions",
           "terms/fluorescence/data", "terms/fluorescence/kernel", "terms/fluorescence/positions", "variables/x",
           "variables/w", "truth/x"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from mmip_paper import simulate

    path = tmp_path_factory.mktemp("fuzz") / "base.h5"
    save_dataset(path, simulate("phantom", n=20, probe_size=16, step=4))
    return path  # a path, not bytes: Hypothesis prints arguments of failing examples


arrays = st.one_of(
    st.builds(lambda s, v: np.full(s, v), st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple),
              st.sampled_from([0.0, -1.0, np.nan, np.inf, 1e300, 3.0])),
    st.just(np.array(["text"], dtype="S")),
    st.just(np.zeros((2, 2), dtype=complex)),
)


def _mutated_copy(source, path, target, action, value, data, attr_owner, attr_keys):
    """``source`` copied to ``path`` and broken: truncated, ``target`` deleted or replaced by ``value``, or an
    attribute (drawn from ``attr_keys``) of ``attr_owner`` set to ``value``."""
    raw = source.read_bytes()
    path.write_bytes(raw)
    if action == "truncate":
        path.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1))])
        return
    with h5py.File(path, "a") as f:
        if action == "attr":
            f[attr_owner].attrs[data.draw(st.sampled_from(attr_keys))] = value if value.size else "garbage"
            return
        del f[target]
        if action == "replace":
            f.create_dataset(target, data=value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(TARGETS), action=st.sampled_from(["delete", "replace", "attr", "truncate"]),
       value=arrays, data=st.data())
def test_malformed_datasets_end_cleanly(tmp_path, base, capsys, target, action, value, data):
    path = tmp_path / "d.h5"
    _mutated_copy(base, path, target, action, value, data, target.rsplit("/", 1)[0],
                  ["modality", "shape", "dtype", "photons_per_unit", "format"])
    code = main(["reconstruct", str(path), "-o", str(tmp_path / "r.h5"), "--iterations", "1",
                 "--checkpoint-every", "0"])
    err = capsys.readouterr().err
    assert code in (0, 2)
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


toml_values = st.one_of(st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=5), st.booleans(),
                        st.lists(st.integers(0, 3), max_size=2))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["solver", "terms", "iterations", "backend", "dtype", "balance_c", "checkpoint_every",
                            "refine", "refine_after", "refine_bound", "likelihood", "coupling", "nonsense"]),
       value=toml_values | st.sampled_from([["probe"], ["positions", "probe"], "poisson", "xraylib:8.8", "1,2"]),
       raw=st.text(max_size=30))
def test_malformed_run_files_end_cleanly(tmp_path, base, capsys, key, value, raw):
    path = tmp_path / "d.h5"
    path.write_bytes(base.read_bytes())
    run = tmp_path / "run.toml"
    literal = repr(value).replace("'", '"').replace("True", "true").replace("False", "false")
    run.write_text(f"{key} = {literal}\n{raw}\n")
    code = main(["reconstruct", str(path), "-o", str(tmp_path / "r.h5"), "--config", str(run), "--iterations", "1"])
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        assert len(err.strip().splitlines()) == 1


def _one_line_or_success(code, err, allowed=(0, 2)):
    assert code in allowed, err
    if code:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


@pytest.fixture(scope="module")
def checkpoint(base, tmp_path_factory):
    """A real checkpoint of a run on ``base`` (and the run's output path)."""
    from multimodal_ip.io.results import save_checkpoint
    from multimodal_ip.safety import file_fingerprint

    root = tmp_path_factory.mktemp("ckpt")
    argv = ["reconstruct", str(base), "-o", str(root / "r.h5"), "--iterations", "4", "--checkpoint-every", "2"]
    from multimodal_ip.cli import build_parser
    from multimodal_ip.config import run_config
    from multimodal_ip.io import build_problem, load_dataset
    from multimodal_ip.solvers import solve

    problem = build_problem(load_dataset(base))
    saved = {}
    solve(problem, problem.start(), "lbfgs", maxiter=2, callback=lambda st: saved.update(s=st.solver.state_dict()))
    path = root / "good.ckpt.h5"
    save_checkpoint(path, saved["s"], run_config(build_parser().parse_args(argv)), file_fingerprint(base))
    return path, argv


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(["checkpoint/arrays/x", "checkpoint/arrays/s_list", "checkpoint/history/objective",
                               "checkpoint", "checkpoint/arrays"]),
       action=st.sampled_from(["delete", "replace", "attr", "truncate"]), value=arrays, data=st.data())
def test_malformed_checkpoints_end_cleanly(tmp_path, base, checkpoint, capsys, target, action, value, data):
    good, argv = checkpoint
    argv = [a if a != argv[3] else str(tmp_path / "r.h5") for a in argv]
    _mutated_copy(good, tmp_path / "r.h5.ckpt.h5", target, action, value, data, "checkpoint",
                  ["solver", "iteration", "scalars", "config", "fingerprint", "elapsed"])
    before = base.read_bytes()
    code = main([*argv, "--resume"])
    _one_line_or_success(code, capsys.readouterr().err)
    assert base.read_bytes() == before


@pytest.fixture(scope="module")
def facility_files(tmp_path_factory):
    from mmip_fluorescence.maps import export_maps
    from mmip_paper import simulate
    from mmip_ptychography.cxi import Frame, export_cxi

    root = tmp_path_factory.mktemp("facility")
    ds = simulate("phantom", n=20, probe_size=16, step=4)
    export_cxi(root / "scan.cxi", ds.terms["ptychography"], pixel_size_m=1e-8)
    export_maps(root / "maps.h5", ds.terms["fluorescence"], Frame(1e-8, (0.0, 0.0), (20, 20)))
    return root


def _datasets(path):
    names = []
    with h5py.File(path) as f:
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return names


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(["scan.cxi", "maps.h5"]), action=st.sampled_from(["delete", "replace"]), value=arrays,
       data=st.data())
def test_malformed_facility_files_end_cleanly(tmp_path, facility_files, capsys, which, action, value, data):
    for name in ("scan.cxi", "maps.h5"):
        (tmp_path / name).write_bytes((facility_files / name).read_bytes())
    target = data.draw(st.sampled_from(_datasets(tmp_path / which)))
    with h5py.File(tmp_path / which, "a") as f:
        del f[target]
        if action == "replace":
            f.create_dataset(target, data=value)
    before = {n: (tmp_path / n).read_bytes() for n in ("scan.cxi", "maps.h5")}
    code = main(["import", "--ptycho", str(tmp_path / "scan.cxi"), "--xrf", str(tmp_path / "maps.h5"), "-o",
                 str(tmp_path / "d.h5")])
    _one_line_or_success(code, capsys.readouterr().err)
    assert {n: (tmp_path / n).read_bytes() for n in before} == before


def _subcommands(deferred=False) -> dict:
    """``{command: its parser}`` for every command, the plugins' included (discovered, not listed); ``deferred``:
    with the flags the plugins declare (``mmip simulate --n``, the importers' flags) added."""
    from multimodal_ip.cli import build_parser

    parser = build_parser(with_plugins=True)
    subs = {name: sub for action in parser._subparsers._group_actions for name, sub in action.choices.items()}
    for sub in subs.values() if deferred else ():
        sub._add_plugin_flags()
    return subs


def _flags():
    """``(subcommand, flag)`` for every option of every subcommand of the parser."""
    out = []
    for name, sub in _subcommands().items():
        for a in sub._actions:
            if a.option_strings and a.option_strings[-1] not in ("--help", "--output", "--mpi"):
                out.append((name, a.option_strings[-1], a.nargs == 0))
    return out


#: values that keep a command short, given to every command that takes the flag (unless it is the one fuzzed)
QUICK = {"--iterations": "1", "--c": "0.1", "--n": "20", "--probe-size": "16", "--step": "4"}
#: the value of a positional argument, by its name (any other: the data file)
POSITIONAL = {"case": "phantom"}


FLAG_VALUES = st.one_of(st.sampled_from(["0", "-1", "nan", "inf", "1e308", "", "abc", "x=1", "1,2", ":",
                                         "tv:1:x", "probe", "poisson", "/dev/zero", "\n"]),
                        st.text(max_size=8))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(_flags()), value=FLAG_VALUES)
def test_every_flag_of_every_subcommand_ends_cleanly(tmp_path, base, capsys, flag, value):
    """Any value of any flag: success, bad input (2) or a documented solver status, one line, input untouched."""
    command, option, is_switch = flag
    data = tmp_path / "d.h5"
    data.write_bytes(base.read_bytes())
    sub = _subcommands(deferred=True)[command]
    flags = {a.option_strings[-1] for a in sub._actions if a.option_strings}
    positional = [POSITIONAL.get(a.dest, str(data)) for a in sub._actions if not a.option_strings]
    quick = [x for k, v in QUICK.items() if k in flags and k != option for x in (k, v)]
    out = ["-o", str(tmp_path / "out")] if "--output" in flags else []
    argv = [command, *positional, *out, *quick, option, *([] if is_switch else [value])]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: a value of the wrong type
        code = exc.code
    _one_line_or_success(code, capsys.readouterr().err, allowed=(0, 2, 3, 4))
    assert data.read_bytes() == base.read_bytes()
