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
