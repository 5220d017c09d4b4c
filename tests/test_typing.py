"""mypy over the core and the bundled plugins (STYLE asks for type-checked code)."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_passes():
    api = pytest.importorskip("mypy.api", reason="mypy is in the test extras (make test installs it)")
    paths = [str(ROOT / "src/multimodal_ip"), str(ROOT / "examples/custom_modality/src")] + [
        str(p) for p in sorted((ROOT / "plugins").glob("*/src"))]
    out, err, code = api.run(["--config-file", str(ROOT / "pyproject.toml"), *paths])
    assert code == 0, out + err
