"""The second problem family (mmip-tomography) through the generic machinery, and its physics checked by brute force."""

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from multimodal_ip.cli import main
from multimodal_ip.io import build_problem, load_dataset, load_result, save_dataset

tomo = pytest.importorskip("mmip_tomography", reason="install plugins/tomography (make test does)")
from mmip_tomography import Geometry, TransmissionModel, XRFTomographyModel  # noqa: E402
from mmip_tomography.simulate import simulate  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _bilinear(img, r, c):
    """Bilinear value of ``img`` at (r, c), zero outside: four neighbours, written out."""
    r0, c0 = int(np.floor(r)), int(np.floor(c))
    total = 0.0
    for dr in (0, 1):
        for dc in (0, 1):
            rr, cc = r0 + dr, c0 + dc
            if 0 <= rr < img.shape[0] and 0 <= cc < img.shape[1]:
                total += (1 - abs(r - rr)) * (1 - abs(c - cc)) * img[rr, cc]
    return total


def _brute_force(w, mu, matrix, angles, bins, step):
    """Loops over rays and steps: the line integral of mu and the self-absorbed fluorescence (trapezoid rule)."""
    ne, n0, n1 = w.shape
    samples = int(np.ceil(np.hypot(n0, n1) / step)) + 1
    mu_map = np.tensordot(mu, w, 1) + matrix
    trans = np.zeros((len(angles), bins))
    xrf = np.zeros((ne, len(angles), bins))
    for k, th in enumerate(angles):
        beam, across = np.array([np.sin(th), np.cos(th)]), np.array([np.cos(th), -np.sin(th)])
        for s in range(bins):
            line = 0.0
            for t in range(samples):
                p = np.array([(n0 - 1) / 2, (n1 - 1) / 2]) + (s - (bins - 1) / 2) * across \
                    + (t - (samples - 1) / 2) * step * beam
                here = _bilinear(mu_map, *p)  # trapezoid rule: half of the own step is in front of the sample
                for e in range(ne):
                    xrf[e, k, s] += step * _bilinear(w[e], *p) * np.exp(-step * (line + 0.5 * here))
                line += here
            trans[k, s] = np.exp(-step * line)
    return trans, xrf


@pytest.mark.parametrize(("shape", "k", "ne", "bins", "step"), [((9, 9), 4, 1, 9, 1.0), ((8, 11), 5, 2, 7, 0.7)])
def test_sinograms_equal_brute_force(shape, k, ne, bins, step):
    rng = np.random.default_rng(k)
    w, mu, matrix = rng.random((ne, *shape)), rng.uniform(0.05, 0.2, ne), 0.03 * rng.random(shape)
    angles = rng.uniform(0, 2 * np.pi, k)
    geom = Geometry.make(shape, angles, bins=bins, step=step)
    trans, xrf = _brute_force(w, mu, matrix, angles, bins, step)
    np.testing.assert_allclose(TransmissionModel(geom, mu, matrix=matrix).forward(w), trans, rtol=1e-10)
    np.testing.assert_allclose(XRFTomographyModel(geom, mu, matrix=matrix).forward(w), xrf, rtol=1e-10, atol=1e-13)


def test_no_attenuation_is_the_radon_transform_and_the_oracle_map_is_self_absorption():
    rng = np.random.default_rng(0)
    geom = Geometry.make((10, 10), np.linspace(0, np.pi, 6))
    w, mu = rng.random((2, 10, 10)), np.array([0.1, 0.3])
    none = XRFTomographyModel(geom, mu, attenuation="none").forward(w)
    radon = [-np.log(TransmissionModel(geom, [1.0]).forward(w[e][None])) for e in range(2)]
    np.testing.assert_allclose(none, np.stack(radon), rtol=1e-12)
    oracle = XRFTomographyModel(geom, mu, attenuation="map", attenuation_map=np.tensordot(mu, w, 1)).forward(w)
    np.testing.assert_allclose(oracle, XRFTomographyModel(geom, mu).forward(w), rtol=1e-12)
    assert np.all(oracle < none)  # self-absorption only removes signal


def test_joint_gradient_taylor_slope_two():
    ds = simulate("tomo-absorbing", n=16, n_angles=10, noise=0.03)
    problem = build_problem(ds)
    assert problem.term_names == ("xrf", "transmission")
    rng = np.random.default_rng(1)
    v = 0.5 * rng.random(problem.space.size)
    d = rng.standard_normal(v.size)
    f0, g = problem.value_and_gradient(v)
    res = [abs(problem.value(v + h * d) - f0 - h * float(g @ d)) for h in (1e-2, 1e-3)]
    assert 1.9 < np.log10(res[0] / res[1]) < 2.1


def test_xraylib_coefficients_when_the_file_has_no_mu():
    xraylib = pytest.importorskip("xraylib")
    ds = simulate("tomo-phantom", n=12, n_angles=4)
    td = ds.terms["xrf"]
    td.arrays.pop("mu")
    td.attrs["mu_scale"] = 1e-3
    op = build_problem(ds, terms=["xrf"]).terms[0].operator
    expected = [xraylib.CS_Total(xraylib.SymbolToAtomicNumber(e), 12.0) * 1e-3 for e in ("Fe", "Zn")]
    np.testing.assert_allclose(op.mu, expected)


def test_chunked_terms_equal_whole():
    ds = simulate("tomo-absorbing", n=14, n_angles=9, noise=0.03)
    whole = build_problem(ds, chunk_bytes=0)
    v = 0.4 + 0.1 * np.random.default_rng(2).random(whole.space.size)
    for chunk in (1, 20_000, 200_000):
        parts = build_problem(ds, chunk_bytes=chunk)
        assert max(parts.parts.values()) > 1 or chunk == 200_000
        assert parts.weights == pytest.approx(whole.weights, rel=1e-12)
        f1, g1 = parts.value_and_gradient(v)
        f0, g0 = whole.value_and_gradient(v)
        assert f1 == pytest.approx(f0, rel=1e-12)
        np.testing.assert_allclose(g1, g0, rtol=1e-10, atol=1e-14 * np.abs(g0).max())


@pytest.fixture
def tomo_file(tmp_path):
    path = tmp_path / "tomo.h5"
    assert main(["simulate", "tomo-absorbing", "-o", str(path), "--n", "16", "--angles", "12", "--noise", "0.03"]) == 0
    return path


def test_cli_generic_commands_work_unchanged(tomo_file, tmp_path, capsys):
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(tomo_file), "-o", str(out), "--iterations", "20",
                 "--regularizer", "nonnegative::w"]) == 0
    res = load_result(out)
    assert res["variables"]["w"].shape == (2, 16, 16) and res["variables"]["w"].min() >= 0
    for term in ("xrf", "transmission"):
        assert main(["reconstruct", str(tomo_file), "-o", str(tmp_path / f"{term}.h5"), "--terms", term,
                     "--iterations", "5"]) == 0
    assert main(["reconstruct", str(tomo_file), "-o", str(tmp_path / "gn.h5"), "--solver", "gauss-newton",
                 "--iterations", "3"]) == 0
    assert main(["reconstruct", str(tomo_file), "-o", str(tmp_path / "admm.h5"), "--solver", "admm",
                 "--iterations", "3", "--regularizer", "nonnegative::w", "--regularizer", "tv:1e-3:w"]) == 0
    assert load_result(tmp_path / "admm.h5")["variables"]["w"].min() >= -1e-12
    capsys.readouterr()
    assert main(["compare", str(tomo_file), "-o", str(tmp_path / "cmp"), "--iterations", "15"]) == 0
    table = capsys.readouterr().out
    for method in ("joint", "xrf alone", "transmission alone"):
        assert f"| {method} |" in table
    assert (tmp_path / "cmp" / "reconstructions.png").stat().st_size > 1000
    assert (tmp_path / "cmp" / "sinograms.png").stat().st_size > 1000  # the report plugin sees the problems
    assert "sinograms.png" in (tmp_path / "cmp" / "report.md").read_text()
    assert main(["report", str(out), "-o", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep").is_dir()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_kill_then_resume_matches_uninterrupted(tmp_path, killed_and_resumed, dtype):
    """Also in float32: the line search's float64 step length used to promote the iterate to float64 (NEP 50), so a
    float32 run computed in float64 after its first step and a resumed one (from the float32 start) did not."""
    data = tmp_path / "d.h5"
    assert main(["simulate", "tomo-absorbing", "-o", str(data), "--n", "32", "--angles", "24", "--noise", "0.03"]) == 0
    full, resumed = killed_and_resumed([sys.executable, "-m", "multimodal_ip.cli", "reconstruct", str(data),
                                        "--iterations", "150", "--checkpoint-every", "2", "--dtype", dtype])
    assert full["variables"]["w"].dtype == np.dtype(dtype)
    np.testing.assert_array_equal(resumed["variables"]["w"], full["variables"]["w"])
    np.testing.assert_array_equal(resumed["history"]["objective"], full["history"]["objective"])


def test_hessian_on_a_small_slice(tmp_path):
    path = tmp_path / "h.h5"
    assert main(["simulate", "tomo-phantom", "-o", str(path), "--n", "6", "--angles", "6"]) == 0
    assert main(["hessian", str(path), "-o", str(tmp_path / "hs"), "--grid", "5", "--iterations", "5"]) == 0
    assert any((tmp_path / "hs").glob("*.png"))


def test_mpi_ranks_reproduce_one_process(tomo_file, tmp_path, mpiexec):
    flags = ["--iterations", "6", "--dtype", "float64"]  # equality to 1e-9: float64
    assert main(["reconstruct", str(tomo_file), "-o", str(tmp_path / "r1.h5"), *flags]) == 0
    proc = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "multimodal_ip.cli", "reconstruct",
                           str(tomo_file), "-o", str(tmp_path / "r2.h5"), *flags], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = load_result(tmp_path / "r2.h5")
    assert res["config"]["mpi_ranks"] == 2
    np.testing.assert_allclose(res["variables"]["w"], load_result(tmp_path / "r1.h5")["variables"]["w"], rtol=1e-9,
                               atol=1e-12)


def test_plain_h5py_file_in_any_order(tmp_path):
    """A file written without our writer (terms in the other order, no /variables) reconstructs the same."""
    ds = simulate("tomo-absorbing", n=12, n_angles=8, noise=0.03)
    save_dataset(tmp_path / "ours.h5", ds)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f.attrs["format"], f.attrs["format_version"] = "multimodal_ip", 1
        f.attrs["balance_c"] = ds.attrs["balance_c"]  # no reference_term: the xrf modality's role names it
        for name in ("transmission", "xrf"):
            td = ds.terms[name]
            g = f.create_group(f"terms/{name}")
            g.attrs["modality"] = td.modality
            for k, a in td.arrays.items():
                g[k] = a
            g.attrs["object_shape"] = td.attrs["object_shape"]
    runs = []
    for path in (tmp_path / "ours.h5", plain):
        out = tmp_path / f"r_{path.stem}.h5"
        assert main(["reconstruct", str(path), "-o", str(out), "--iterations", "8"]) == 0
        runs.append(load_result(out)["variables"]["w"])
    np.testing.assert_allclose(runs[1], runs[0], rtol=1e-10)
    assert load_dataset(plain).space["w"].shape == (2, 12, 12)


def _replace(f, path, value):
    del f[path]
    f[path] = value


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda f: f["terms/xrf"].attrs.__delitem__("object_shape"), "object_shape"),
    (lambda f: _replace(f, "terms/xrf/mu", [0.1, 0.2, 0.3]), "mu"),
    (lambda f: f["terms/transmission/data"].__setitem__((0, 0), -1.0), "non-negative"),
    (lambda f: f["terms/xrf/angles"].__setitem__(0, np.nan), "angles"),
])
def test_bad_tomography_files_exit_2_in_one_line(tomo_file, tmp_path, capsys, mutate, message):
    with h5py.File(tomo_file, "r+") as f:
        mutate(f)
    before = tomo_file.read_bytes()
    capsys.readouterr()
    code = main(["reconstruct", str(tomo_file), "-o", str(tmp_path / "r.h5"), "--iterations", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and message in err and str(tomo_file) in err, err
    assert tomo_file.read_bytes() == before and not (tmp_path / "r.h5").exists()


def test_attenuation_map_mode_needs_its_dataset(tomo_file, tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text('[term_options.xrf]\nattenuation = "map"\n')
    code = main(["reconstruct", str(tomo_file), "-o", str(tmp_path / "r.h5"), "--config", str(cfg), "--terms", "xrf"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "attenuation_map" in err and len(err.splitlines()) == 1


def test_study_example_small(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "examples/tomography/study.py"), "--n", "12", "--angles", "8",
                           "--seeds", "2", "--noise", "0.03", "--absorption", "1", "--iterations", "5", "-o",
                           str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for method in ("joint", "xrf, oracle attenuation", "xrf, attenuation ignored", "transmission alone"):
        assert method in proc.stdout
    assert (tmp_path / "table.md").exists() and (tmp_path / "maps_tomo-absorbing.png").stat().st_size > 1000
