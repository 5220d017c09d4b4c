"""ruff over the whole repository (the lint step of CI runs inside the test command)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_passes():
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff is in the test extras (make test installs it)")
    proc = subprocess.run([exe, "check", "--output-format", "concise", "src", "plugins", "examples", "tests",
                           "benchmarks"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
