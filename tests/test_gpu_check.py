"""The prepared GPU check runs its whole logic on the CPU (``--cpu``: numpy, tiny size) in CI."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_on_the_cpu(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_check.sh"), "--cpu"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = (tmp_path / "gpu.md").read_text()
    sections = ("## 0-localise (exit 0", "## 1-tests", "## 1-kit (exit 0", "## 2-compare (exit 0",
                "## 3-bench-float32 (exit 0", "## 3-bench-float64 (exit 0", "## 4-lbfgs (exit 0", "## 5-mpi")
    for section in sections:
        assert section in report, report
    assert "| float64 | numpy | 5 |" in report and "L-BFGS tiny: 10 iterations" in report
    assert "0 bytes in 0 copies" in report
    assert "| term ptychography gradient (float64) | 0 |" in report and "| NO |" not in report
