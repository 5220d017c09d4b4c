import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from multimodal_ip.cli import main
from multimodal_ip.io import load_result

SMALL = ["--n", "48", "--probe-size", "16", "--step", "8"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "d.h5"
    assert main(["simulate", "phantom", "-o", str(path), "--noise", "0.03", "--seed", "2", *SMALL]) == 0
    return path


def decodable_png(path):
    import matplotlib.image

    img = matplotlib.image.imread(path)
    return img.ndim == 3 and img.shape[0] > 50


def test_plugins_table_and_json(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "ptychography" in out and "mmip-fluorescence" in out and out.splitlines()[0].split()[:2] == ["kind", "name"]
    assert main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"kind", "name", "dist", "version", "status"} <= set(rows[0])


def test_reconstruct_writes_result(tmp_path, data, capsys):
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(data), "-o", str(out), "--iterations", "5", "--solver", "gauss-newton",
                 "--solver-option", "inner_iterations=5"]) == 0
    res = load_result(out)
    assert res["variables"]["x"].shape == (48, 48) and res["variables"]["w"].shape == (1, 48, 48)
    assert len(res["history"]["objective"]) == 6 and "error_total" in res["history"]
    assert res["config"]["solver"] == "gauss-newton" and res["config"]["solver_options"] == {"inner_iterations": 5}
    assert "numpy" in res["versions"]
    assert not (tmp_path / "r.h5.ckpt.h5").exists()
    assert main(["report", str(out), "-o", str(tmp_path / "rep")]) == 0
    assert decodable_png(tmp_path / "rep" / "convergence.png")
    assert "status" in (tmp_path / "rep" / "report.md").read_text()


def test_toml_run_file_mirrors_flags(tmp_path, data):
    cfg = tmp_path / "run.toml"
    cfg.write_text('solver = "lbfgs"\niterations = 3\nterms = ["ptychography"]\n[solver_options]\nmemory = 4\n')
    assert main(["reconstruct", str(data), "-o", str(tmp_path / "r.h5"), "--config", str(cfg)]) == 0
    res = load_result(tmp_path / "r.h5")
    assert res["config"]["terms"] == ["ptychography"] and res["config"]["solver_options"] == {"memory": 4}
    assert "objective_fluorescence" not in res["history"] and len(res["history"]["objective"]) == 4


def test_compare_writes_table_figures_report(tmp_path, data, capsys):
    outdir = tmp_path / "cmp"
    assert main(["compare", str(data), "-o", str(outdir), "--iterations", "10"]) == 0
    out = capsys.readouterr().out
    assert "| joint |" in out and "| ptychography alone |" in out and "| fluorescence alone |" in out
    errors = json.loads((outdir / "errors.json").read_text())
    assert set(errors) == {"joint", "ptychography alone", "fluorescence alone"}
    assert all(0 < e["error_total"] < 1 for e in errors.values())
    assert decodable_png(outdir / "convergence.png") and decodable_png(outdir / "reconstructions.png")
    assert "![convergence](convergence.png)" in (outdir / "report.md").read_text()


def test_hessian_study(tmp_path, capsys):
    path = tmp_path / "h.h5"
    assert main(["simulate", "hessian", "-o", str(path), "--n", "20", "--probe-size", "16", "--step", "4"]) == 0
    assert main(["hessian", str(path), "-o", str(tmp_path / "hs"), "--grid", "5"]) == 0
    summary = json.loads((tmp_path / "hs" / "hessian.json").read_text())
    assert summary["joint"]["n_eigenvalues"] == 800
    # the fluorescence term adds curvature: no eigenvalue of the joint Hessian falls below the ptychography one's
    assert summary["joint"]["smallest"] >= summary["ptychography alone"]["smallest"] - 1e-12
    assert decodable_png(tmp_path / "hs" / "eigenvalues.png") and decodable_png(tmp_path / "hs" / "landscapes.png")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["reconstruct", "{missing}", "-o", "{out}"], "no such data file"),
        (["reconstruct", "{data}", "-o", "{out}", "--solver", "lbgfs"], "no solver 'lbgfs'; installed:"),
        (["reconstruct", "{data}", "-o", "{out}", "--terms", "sonar"],
         "no term(s) ['sonar']; the file has: fluorescence, ptychography"),
        (["reconstruct", "{data}", "-o", "{out}", "--iterations", "-3"], "iterations must be >= 0"),
        (["reconstruct", "{data}", "-o", "{out}", "--config", "{badtoml}"], "unknown setting 'solverr'"),
        (["reconstruct", "{data}", "-o", "{out}", "--solver-option", "bogus=1"], "has no option 'bogus'"),
        (["reconstruct", "{data}", "-o", "{data}"], "it is the input"),
        (["reconstruct", "{notmmip}", "-o", "{out}"], "not a multimodal_ip file"),
        (["reconstruct", "{data}", "-o", "{out}", "--resume"], "no checkpoint"),
        (["simulate", "nope", "-o", "{out}"], "no simulation 'nope'"),
        (["report", "{data}", "-o", "{outdir}"], "not a multimodal_ip result file"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, data, capsys, args, message):
    (tmp_path / "bad.toml").write_text('solverr = "lbfgs"\n')
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    fmt = {"missing": tmp_path / "missing.h5", "out": tmp_path / "o.h5", "data": data, "badtoml": tmp_path / "bad.toml",
           "notmmip": tmp_path / "other.h5", "outdir": tmp_path / "od"}
    before = data.read_bytes()
    assert main([a.format(**fmt) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert data.read_bytes() == before


def test_cupy_backend_without_gpu_is_a_clear_error(tmp_path, data, capsys):
    import importlib.util

    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("cupy is installed here: tests/test_gpu.py covers the backend")
    assert main(["reconstruct", str(data), "-o", str(tmp_path / "r.h5"), "--backend", "cupy"]) == 2
    assert "backend 'cupy' is not available here" in capsys.readouterr().err


def test_kill_after_checkpoint_then_resume_matches_uninterrupted(tmp_path, data, killed_after_checkpoint):
    mmip = [sys.executable, "-m", "multimodal_ip.cli"]
    common = ["reconstruct", str(data), "--iterations", "40", "--checkpoint-every", "2"]
    subprocess.run([*mmip, *common, "-o", str(tmp_path / "full.h5")], check=True, capture_output=True)
    out = tmp_path / "killed.h5"
    killed_after_checkpoint([*mmip, *common], out)
    subprocess.run([*mmip, *common, "-o", str(out), "--resume"], check=True, capture_output=True)
    full, resumed = load_result(tmp_path / "full.h5"), load_result(out)
    for k in ("x", "w"):
        np.testing.assert_array_equal(resumed["variables"][k], full["variables"][k])
    np.testing.assert_array_equal(resumed["history"]["objective"], full["history"]["objective"])




def test_hessian_lanczos_path_matches_dense_extremes(tmp_path):
    from mmip_paper import simulate
    from mmip_paper.hessian import hessian_spectrum

    from multimodal_ip.io import build_problem

    ds = simulate("hessian", n=20, probe_size=16, step=4)
    problem = build_problem(ds)
    v = problem.space.pack(ds.truth)
    dense, _ = hessian_spectrum(problem, v, dense_max=10_000)
    lanczos, vecs = hessian_spectrum(problem, v, dense_max=10, k=4)
    assert lanczos.size == 8 and vecs.shape == (800, 8)
    np.testing.assert_allclose(lanczos[-4:], dense[-4:], rtol=1e-6)
