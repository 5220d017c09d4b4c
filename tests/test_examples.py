"""CI runs every example (reduced sizes where the example takes flags)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_paper_driver_small(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples/paper/reproduce.py"), "--cases", "hessian", "--noise", "0.03",
         "--seeds", "2", "--iterations", "5", "-o", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| hessian | 0.03 | joint |" in proc.stdout
    records = json.loads((tmp_path / "results.json").read_text())
    assert len(records) == 2 * 3 and {r["method"] for r in records} == {"joint", "ptychography alone",
                                                                        "fluorescence alone"}
    assert (tmp_path / "convergence_hessian_0.03.png").stat().st_size > 1000
