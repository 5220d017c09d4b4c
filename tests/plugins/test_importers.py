import h5py
import numpy as np
import pytest
from mmip_fluorescence.maps import export_maps
from mmip_paper import simulate
from mmip_ptychography.cxi import Frame, export_cxi

from multimodal_ip import solve
from multimodal_ip.cli import main
from multimodal_ip.io import build_problem, load_dataset

PIXEL = 10e-9


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("imp")
    ds = simulate("phantom", seed=4, noise=0.03, n=48, probe_size=16, step=8)
    export_cxi(tmp / "scan.cxi", ds.terms["ptychography"], PIXEL)
    export_maps(tmp / "xrf.h5", ds.terms["fluorescence"], Frame(PIXEL, (0.0, 0.0), (48, 48)))
    return tmp, ds


def test_round_trip_reconstructs_to_the_same_error(exported):
    tmp, ds = exported
    args = ["import", "--ptycho", str(tmp / "scan.cxi"), "--xrf", str(tmp / "xrf.h5"), "-o", str(tmp / "d.h5")]
    assert main(args) == 0
    back = load_dataset(tmp / "d.h5")
    np.testing.assert_allclose(back.terms["ptychography"].arrays["positions"],
                               ds.terms["ptychography"].arrays["positions"])
    np.testing.assert_allclose(back.terms["fluorescence"].arrays["positions"],
                               ds.terms["fluorescence"].arrays["positions"])
    errors = []
    for dataset in (ds, back):
        problem = build_problem(dataset)
        res = solve(problem, problem.space.full(1.0), "lbfgs", maxiter=15)
        truth = problem.space.pack(ds.truth)
        errors.append(np.linalg.norm(res.x - truth) / np.linalg.norm(truth))
    assert errors[1] == pytest.approx(errors[0], rel=1e-6)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.__delitem__("entry_1/sample_1/geometry_1/translation"), "translation: missing"),
        (lambda f: f["entry_1/instrument_1/source_1/energy"].__setitem__((), -1.0), "energy: must be positive"),
        (lambda f: (f.__delitem__("entry_1/sample_1/geometry_1/translation"),
                    f.create_dataset("entry_1/sample_1/geometry_1/translation", data=np.zeros((3, 3)))),
         "expected shape (25, 3) (one per pattern), got (3, 3)"),
    ],
)
def test_bad_cxi_exits_2(exported, tmp_path, capsys, mutate, message):
    tmp, _ = exported
    bad = tmp_path / "bad.cxi"
    bad.write_bytes((tmp / "scan.cxi").read_bytes())
    with h5py.File(bad, "a") as f:
        mutate(f)
    assert main(["import", "--ptycho", str(bad), "-o", str(tmp_path / "o.h5")]) == 2
    assert message in capsys.readouterr().err


def test_xrf_units_and_extent_are_checked(exported, tmp_path, capsys):
    tmp, _ = exported
    code = main(["import", "--ptycho", str(tmp / "scan.cxi"), "--xrf", str(tmp / "xrf.h5"), "--xrf-axis-unit", "1e-3",
                 "-o", str(tmp_path / "o.h5")])
    assert code == 2 and "outside the 48x48 object" in capsys.readouterr().err
    assert main(["import", "--xrf", str(tmp / "xrf.h5"), "-o", str(tmp_path / "o.h5")]) == 2
    assert "needs the ptychography scan first" in capsys.readouterr().err
    assert not (tmp_path / "o.h5").exists()


def test_subpixel_cxi_positions_are_kept(tmp_path):
    """Sub-pixel translations import as fractional positions; the term then uses Fourier-shifted probes."""
    from dataclasses import replace

    from mmip_ptychography import PtychographyModel
    from mmip_ptychography.cxi import import_cxi

    ds = simulate("phantom", seed=0, n=48, probe_size=16, step=8, position_jitter_px=1.0)
    td = replace(ds.terms["ptychography"], arrays={**ds.terms["ptychography"].arrays,
                                                   "positions": ds.truth["positions"]})
    export_cxi(tmp_path / "s.cxi", td, PIXEL)
    term, _ = import_cxi(tmp_path / "s.cxi")
    pos = term.arrays["positions"]
    assert np.any(pos != np.rint(pos))
    # same positions up to the importer's margin/origin shift
    shift = pos - ds.truth["positions"]
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape), atol=1e-6)
    problem = build_problem(load_dataset_from_term(ds, term))
    assert isinstance(problem.terms[0].operator, PtychographyModel)


def load_dataset_from_term(ds, term):
    from dataclasses import replace

    return replace(ds, terms={"ptychography": term})
