"""Start points and held variables (issue 33 item 3, issue 30): ``--start truth|result|product[:VARS]`` and
``--freeze VARS``, from the command line, a run file and the library; bad sources refused in one line."""

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from multimodal_ip.cli import main
from multimodal_ip.errors import ConfigError, DataError
from multimodal_ip.io import build_problem, load_dataset
from multimodal_ip.start import freeze, parse_start, read_start, start_point

DATA = Path(__file__).resolve().parent / "data"
PIXEL = 1e-8


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """The smallest phantom case: 32 x 32 object, 16 px probe, 25 positions, true positions off the raster by up to
    one pixel, noise-free."""
    path = tmp_path_factory.mktemp("sim") / "sim.h5"
    assert main(["simulate", "phantom", "-o", str(path), "--n", "32", "--probe-size", "16", "--step", "4",
                 "--position-jitter", "1", "--seed", "1", "--noise", "0"]) == 0
    return path


def _variables(path) -> dict:
    with h5py.File(path, "r") as f:
        return {k: f["results/variables"][k][()] for k in f["results/variables"]}


def _history(path, column) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["results/history"][column][()]


def _truth(path) -> dict:
    with h5py.File(path, "r") as f:
        return {k: f["truth"][k][()] for k in f["truth"]}


def _refused(capsys, argv, *words, output=None):
    """``mmip argv`` exits 2 with one error line holding ``words``, and writes no ``output``."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    assert output is None or not Path(output).exists()


def test_positions_alone_from_the_true_object(sim, tmp_path, capsys):
    """``--terms ptychography --refine positions --freeze x,w --start truth:x,w``: the object stays the truth, bit
    for bit, and only the positions move, closer to the true ones."""
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(sim), "-o", str(out), "--terms", "ptychography", "--refine", "positions",
                 "--freeze", "x,w", "--start", "truth:x,w", "--iterations", "15", "--dtype", "float64"]) == 0
    got, truth = _variables(out), _truth(sim)
    assert np.array_equal(got["x"], truth["x"]) and np.array_equal(got["w"], truth["w"])
    error = _history(out, "error_positions")
    assert error[-1] < 0.8 * error[0], error
    with h5py.File(out, "r") as f:
        assert not np.array_equal(got["positions"], f["results/start_positions"][()])


def test_frozen_variables_stay_and_the_others_move(sim, tmp_path):
    """``--freeze w`` with positions refined after a first stage: ``w`` is its start value in both stages; ``x``
    moves."""
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(sim), "-o", str(out), "--refine", "positions", "--refine-after", "2",
                 "--freeze", "w", "--start", "truth:w", "--iterations", "5", "--dtype", "float64"]) == 0
    got, truth = _variables(out), _truth(sim)
    assert np.array_equal(got["w"], truth["w"])
    assert not np.array_equal(got["x"], np.ones_like(got["x"]))
    assert _history(out, "iteration")[-1] == 5


def test_start_from_a_result_file(sim, tmp_path):
    """A result file of ``mmip reconstruct`` starts the next run (``r.h5:x``: its ``x`` only; ``w`` from ones)."""
    first, second = tmp_path / "first.h5", tmp_path / "second.h5"
    assert main(["reconstruct", str(sim), "-o", str(first), "--iterations", "3"]) == 0
    assert main(["reconstruct", str(sim), "-o", str(second), "--iterations", "2", "--start", f"{first}:x",
                 "--freeze", "x"]) == 0
    assert np.array_equal(_variables(second)["x"], _variables(first)["x"])
    problem = build_problem(load_dataset(sim))
    values = read_start(f"{first}:x", problem.space)
    assert list(values) == ["x"] and np.array_equal(values["x"], _variables(first)["x"].astype(problem.space.dtype))
    x0 = problem.space.unpack(start_point(problem, values))
    assert np.array_equal(x0["x"], values["x"]) and np.all(x0["w"] == 1)


@pytest.mark.parametrize("suffix", [".h5", ".cxi"])
def test_start_from_a_ptychodus_product(sim, tmp_path, suffix):
    """A ptychography reconstruction as a ptychodus product (``.h5`` or CXI), read by the ptychography plugin:
    ``x = Re z``, ``w = Im z`` (coupling ones), on the data's grid; the run starts there."""
    from mmip_ptychography.product import export_product

    truth, ds = _truth(sim), load_dataset(sim)
    product = tmp_path / f"p{suffix}"
    export_product(product, truth["x"] + 1j * truth["w"].sum(0), ds.terms["ptychography"].arrays["probe"],
                   ds.terms["ptychography"].arrays["positions"], PIXEL)
    values = read_start(str(product), build_problem(ds, dtype="float64").space, dataset=ds)
    np.testing.assert_array_equal(values["x"], truth["x"])
    np.testing.assert_allclose(values["w"], truth["w"], atol=1e-15)
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(sim), "-o", str(out), "--start", f"{product}:x", "--freeze", "x",
                 "--iterations", "1", "--dtype", "float64"]) == 0
    assert np.array_equal(_variables(out)["x"], truth["x"])


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """ptychodus's diffraction file with its product, imported: a data file with its object frame
    (``origin_m``, ``pixel_size_m``)."""
    out = tmp_path_factory.mktemp("imp") / "d.h5"
    assert main(["import", "--ptycho", str(DATA / "ptychodus_diffraction.cxi"), "--product",
                 str(DATA / "ptychodus_product.h5"), "-o", str(out)]) == 0
    return load_dataset(out)


@pytest.mark.parametrize("product", ["ptychodus_product.h5", "ptychodus_product.cxi"])
def test_ptychodus_written_products_start_the_imported_data(imported, product):
    """Products written by ptychodus itself (a flat object, its probe): x = 1, w = 0 on the imported grid, and the
    probe when it is refined."""
    problem = build_problem(imported, refine=("probe",))
    values = read_start(str(DATA / product), problem.space, dataset=imported)
    assert sorted(values) == ["probe", "w", "x"]
    assert np.all(values["x"] == 1) and np.all(values["w"] == 0)
    np.testing.assert_array_equal(values["probe"], imported.terms["ptychography"].arrays["probe"].astype(
        problem.space["probe"].dtype))


def test_a_larger_product_object_is_cut_to_the_data_grid(imported, tmp_path):
    """An object reconstructed on a larger grid (3 px more above and 5 px more left) is placed by the frames."""
    rng = np.random.default_rng(0)
    n = imported.space["x"].shape
    big = rng.random((n[0] + 7, n[1] + 9)) + 1j * rng.random((n[0] + 7, n[1] + 9))
    origin = np.asarray(imported.attrs["origin_m"]) - np.array([3, 5]) * imported.attrs["pixel_size_m"]
    term = imported.terms["ptychography"]
    export_args = (big, term.arrays["probe"], term.arrays["positions"], float(imported.attrs["pixel_size_m"]))
    from mmip_ptychography.product import export_product

    export_product(tmp_path / "big.h5", *export_args, origin_m=origin)
    values = read_start(str(tmp_path / "big.h5"), build_problem(imported, dtype="float64").space, dataset=imported)
    np.testing.assert_array_equal(values["x"], big.real[3:3 + n[0], 5:5 + n[1]])
    export_product(tmp_path / "coarse.h5", *export_args[:3], 2 * export_args[3], origin_m=origin)
    with pytest.raises(DataError, match="object pixel .* the data file's is"):
        read_start(str(tmp_path / "coarse.h5"), build_problem(imported).space, dataset=imported)


def test_bad_start_sources_are_refused_in_one_line(sim, tmp_path, capsys):
    out = tmp_path / "r.h5"
    base = ["reconstruct", str(sim), "-o", str(out), "--iterations", "1"]
    _refused(capsys, [*base, "--start", "truth:x,q"], "unknown variable(s) q", "the problem has: w, x", output=out)
    _refused(capsys, [*base, "--freeze", "x,w"], "holds every variable", output=out)
    _refused(capsys, [*base, "--freeze", "positions"], "--freeze: unknown variable(s) positions", output=out)
    no_truth = tmp_path / "no_truth.h5"
    shutil.copy(sim, no_truth)
    with h5py.File(no_truth, "a") as f:
        del f["truth"]
    _refused(capsys, ["reconstruct", str(no_truth), "-o", str(out), "--start", "truth"], f"{no_truth}:/truth: missing",
             output=out)
    from multimodal_ip.io import save_result
    from multimodal_ip.solvers import History

    wrong = tmp_path / "wrong.h5"
    save_result(wrong, {"x": np.zeros((5, 5)), "w": np.zeros((1, 32, 32))}, History([{"iteration": 0.0}]), {})
    _refused(capsys, [*base, "--start", str(wrong)], f"{wrong}:/results/variables/x", "expected shape (32, 32)",
             "got shape (5, 5) float64", output=out)
    before = wrong.read_bytes()
    _refused(capsys, ["reconstruct", str(sim), "-o", str(wrong), "--start", f"{wrong}:w"], "refusing to write",
             "is the input")
    assert wrong.read_bytes() == before
    _refused(capsys, [*base, "--start", str(sim)], "neither a result file", "importers with read_start: cxi",
             output=out)
    external = tmp_path / "external.h5"
    shutil.copy(wrong, external)
    (tmp_path / "raw.bin").write_bytes(np.zeros(32 * 32).tobytes())
    with h5py.File(external, "a") as f:
        del f["results/variables/x"]
        f["results/variables"].create_dataset("x", shape=(32, 32), dtype="f8", external=[("raw.bin", 0, 8 * 32 * 32)])
    _refused(capsys, [*base, "--start", f"{external}:x"], "/results/variables/x", "external", output=out)


def test_the_library_and_the_run_file_take_the_same_settings(sim, tmp_path):
    """``start`` and ``freeze`` in a run file mirror the flags, are checked like them, and a resume compares them."""
    from multimodal_ip.cli.reconstruct import _RESUME_KEYS
    from multimodal_ip.config import run_config, to_toml

    assert parse_start("truth:x,w") == ("truth", ("x", "w"))
    assert parse_start("/a:b/r.h5") == ("/a:b/r.h5", None) and parse_start("r.h5:x") == ("r.h5", ("x",))
    with pytest.raises(ConfigError, match="SOURCE"):
        parse_start("truth:")
    run = tmp_path / "run.toml"
    run.write_text('start = "truth:x"\nfreeze = ["x"]\niterations = 2\ndtype = "float64"\n')
    main_args = ["reconstruct", str(sim), "-o", str(tmp_path / "r.h5"), "--config", str(run)]
    assert main(main_args) == 0
    assert np.array_equal(_variables(tmp_path / "r.h5")["x"], _truth(sim)["x"])
    import argparse

    cfg = run_config(argparse.Namespace(config=str(run)))
    assert cfg["start"] == "truth:x" and cfg["freeze"] == ["x"]
    assert 'start = "truth:x"' in to_toml(cfg) and 'freeze = ["x"]' in to_toml(cfg)
    assert {"start", "freeze"} <= set(_RESUME_KEYS)
    run.write_text('freeze = "x"\n')
    with pytest.raises(ConfigError, match="setting 'freeze' must be list"):
        run_config(argparse.Namespace(config=str(run)))
    problem = build_problem(load_dataset(sim))
    with pytest.raises(ConfigError, match="holds every variable"):
        freeze(problem, ["x", "w"])
    assert freeze(problem, ["w"]).frozen == ("w",)


def test_start_values_are_read_within_the_memory_budget(sim, tmp_path, monkeypatch):
    """The start file's datasets are sized against the memory budget before they are read (result files and the
    plugins' products alike)."""
    from mmip_ptychography.product import export_product

    ds = load_dataset(sim)
    problem = build_problem(ds)
    first = tmp_path / "first.h5"
    assert main(["reconstruct", str(sim), "-o", str(first), "--iterations", "1"]) == 0
    truth = _truth(sim)
    export_product(tmp_path / "p.h5", truth["x"] + 0j, ds.terms["ptychography"].arrays["probe"],
                   ds.terms["ptychography"].arrays["positions"], PIXEL)
    monkeypatch.setenv("MMIP_MAX_MEMORY", "2K")  # less than one 32 x 32 map
    with pytest.raises(DataError, match=r"results/variables/x: declares .* more than the memory budget"):
        read_start(f"{first}:x", problem.space)
    with pytest.raises(DataError, match=r"p.h5:/object: declares .* more than the memory budget"):
        read_start(str(tmp_path / "p.h5"), problem.space, dataset=ds)


def test_compare_and_tune_share_the_run_flags(sim, tmp_path):
    """``mmip compare`` starts every method from ``--start`` with ``--freeze`` held; ``mmip tune`` fits and refits
    so, and its ``chosen.toml`` keeps both settings."""
    import json

    assert main(["compare", str(sim), "-o", str(tmp_path / "cmp"), "--start", "truth:x", "--freeze", "x",
                 "--iterations", "2", "--dtype", "float64"]) == 0
    errors = json.loads((tmp_path / "cmp" / "errors.json").read_text())
    assert all(row["error_x"] == 0 and row["error_w"] > 0 for row in errors.values())
    assert main(["tune", str(sim), "-o", str(tmp_path / "tune"), "--c", "0.01", "--iterations", "2", "--start",
                 "truth:x", "--freeze", "x", "--dtype", "float64", "--refit"]) == 0
    chosen = (tmp_path / "tune" / "chosen.toml").read_text()
    assert 'start = "truth:x"' in chosen and 'freeze = ["x"]' in chosen
    assert np.array_equal(_variables(tmp_path / "tune" / "refit.h5")["x"], _truth(sim)["x"])
