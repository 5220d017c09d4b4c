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


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(TARGETS), action=st.sampled_from(["delete", "replace", "attr", "truncate"]),
       value=arrays, data=st.data())
def test_malformed_datasets_end_cleanly(tmp_path, base, capsys, target, action, value, data):
    path = tmp_path / "d.h5"
    raw = base.read_bytes()
    path.write_bytes(raw)
    if action == "truncate":
        path.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1))])
    else:
        with h5py.File(path, "a") as f:
            if action in ("delete", "replace"):
                del f[target]
                if action == "replace":
                    f.create_dataset(target, data=value)
            else:
                obj = f[target.rsplit("/", 1)[0]]
                key = data.draw(st.sampled_from(["modality", "shape", "dtype", "photons_per_unit", "format"]))
                obj.attrs[key] = value if value.size else "garbage"
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
                            "refine", "refine_after", "likelihood", "coupling", "nonsense"]),
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
