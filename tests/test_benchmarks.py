"""The benchmark scripts run (at a tiny size): their rows have the fields the docs' tables are built from."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_scaling_benchmark_row_and_plot(tmp_path):
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(ROOT / "benchmarks/bench_scaling.py"), "--j", "16", "--np", "16", "--step", "4",
           "--repeat", "1", "--lbfgs", "2", "--json", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    assert res.returncode == 0, res.stderr
    row = json.loads(out.read_text().splitlines()[-1])
    assert row["J"] == 16 and row["n"] == 28 and row["lbfgs_iterations"] == 2
    assert row["joint_s"] > 0 and row["floor_s"] > 0 and row["peak_GB"] > 0
    assert row["bound_GB"] == 1.5 * row["data_GB"] + 1.0
    png = tmp_path / "s.png"
    plot = [sys.executable, str(ROOT / "benchmarks/bench_scaling.py"), "--json", str(out), "--plot", str(png)]
    assert subprocess.run(plot, capture_output=True, check=False, timeout=120).returncode == 0
    assert png.stat().st_size > 1000


def test_ptychi_benchmark_without_its_environment_says_so(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks/bench_ptychi.py"), "--venv", str(tmp_path / "none")]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    assert res.returncode == 2 and "--install" in res.stderr and "Traceback" not in res.stderr


def test_ptychi_accuracy_rows_traces_and_figure_of_our_side(tmp_path):
    """``--accuracy`` with our side only (no pty-chi environment needed): one row per run with its error-vs-time
    trace, best/final read from it; ``--replot`` redraws the table and figure from the JSON."""
    out, png = tmp_path / "rows.json", tmp_path / "t.png"
    cmd = [sys.executable, str(ROOT / "benchmarks/bench_ptychi.py"), "--venv", str(tmp_path / "none"), "--accuracy",
           "--codes", "ours", "--cases", "hessian", "--noise", "0.03", "--seeds", "1", "--first-seed", "2",
           "--epochs", "4", "--threads", "1", "--ours-option", "memory=3", "--json", str(out),
           "--ours-flags", "--stop iterations --iterations 4",  # ours: mmip reconstruct with these flags
           "--save-objects", str(tmp_path / "objects")]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    assert res.returncode == 0, res.stderr
    (row,) = json.loads(out.read_text())
    assert (tmp_path / "objects/ours.hessian.0.03.2.npy").exists()  # the final object, its errors below
    assert row["final_aligned"] <= row["final"] + 1e-6 and 0 < row["lit_fraction"] <= 1 and row["final_lit"] > 0
    assert (row["code"], row["case"], row["seed"], row["threads"], row["options"]) == ("ours", "hessian", 2, 1,
                                                                                      {"memory": 3})
    t, e = zip(*row["trace"], strict=True)
    assert len(t) == 5 and all(b >= a for a, b in zip(t, t[1:], strict=False)) and e[-1] < e[0]
    assert row["best"] == min(e) and row["final"] == e[-1] and row["wall_s"] == t[-1]
    assert row["ptychi_final"] is None and row["t_to_ptychi_final_s"] is None
    plot = [sys.executable, str(ROOT / "benchmarks/bench_ptychi.py"), "--replot", str(out), "--figure", str(png)]
    res = subprocess.run(plot, capture_output=True, text=True, check=False, timeout=120)
    label = "multimodal_ip, mmip reconstruct --stop iterations --iterations 4, memory=3"
    assert res.returncode == 0 and f"| hessian | 3 % | {label} |" in res.stdout
    assert png.stat().st_size > 1000


def test_ptychi_accuracy_refuses_an_unknown_solver_option(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks/bench_ptychi.py"), "--venv", str(tmp_path / "none"), "--accuracy",
           "--codes", "ours", "--ours-option", "no_such_option=1"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    assert res.returncode == 2 and "no_such_option" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_time_to_accuracy_is_the_first_time_at_or_below_the_target():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _ptychi_accuracy import time_to

    trace = [[0.0, 0.3], [1.0, 0.2], [2.0, 0.1], [3.0, 0.15], [4.0, 0.09]]
    assert time_to(trace, 0.15) == 2.0 and time_to(trace, 0.09) == 4.0 and time_to(trace, 0.05) is None
