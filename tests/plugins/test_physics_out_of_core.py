"""Physics lives in the plugins (issue 29): the scan-probe scatter kernel in mmip-scanprobe, the best-phase error in
mmip-ptychography, xraylib as the plugins' extra; the core imports no plugin and keeps a pointer or a deprecated copy
where an old import path may be used outside the repository."""

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _toml(path):
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib.loads(path.read_text())


def test_the_core_imports_no_plugin():
    plugins = {p.name for p in ROOT.glob("plugins/*/src/*") if (p / "__init__.py").exists()}
    assert {"mmip_scanprobe", "mmip_ptychography", "mmip_paper"} <= plugins
    found = []
    for f in sorted((ROOT / "src" / "multimodal_ip").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            found += [f"{f.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in plugins]
    assert not found


def test_scatter_kernel_moved_to_scanprobe():
    import mmip_scanprobe
    from mmip_scanprobe.scatter import scatter_patches_

    from multimodal_ip import kernels

    assert mmip_scanprobe.scatter_patches_ is scatter_patches_
    assert "scatter_patches_" not in kernels.__all__ and not hasattr(kernels, "_scatter_nb")
    with pytest.raises(ImportError, match=r"from mmip_scanprobe\.scatter import scatter_patches_"):
        from multimodal_ip.kernels import scatter_patches_ as _  # noqa: F401
    with pytest.raises(AttributeError):
        _ = kernels.no_such_kernel
    acc = np.zeros((5, 6))
    scatter_patches_(acc, np.ones((2, 2, 3)), None, np.array([0, 1]), np.array([2, 3]))
    expected = np.zeros((5, 6))
    expected[0:2, 2:5] += 1
    expected[1:3, 3:6] += 1
    np.testing.assert_array_equal(acc, expected)


def test_best_phase_error_moved_to_ptychography_with_a_deprecated_core_copy():
    from mmip_paper.report import phase_corrected_error
    from mmip_ptychography import best_phase_error

    from multimodal_ip import report

    rng = np.random.default_rng(0)
    truth = rng.standard_normal((4, 5)) + 1j * rng.standard_normal((4, 5))
    noise = 0.1 * (rng.standard_normal((4, 5)) + 1j * rng.standard_normal((4, 5)))
    assert best_phase_error(np.exp(0.7j) * truth, truth) == pytest.approx(0, abs=1e-14)
    assert best_phase_error(np.exp(0.7j) * (truth + noise), truth) == pytest.approx(
        np.linalg.norm(noise) / np.linalg.norm(truth), rel=0.2)
    assert best_phase_error(np.zeros_like(truth), truth) == pytest.approx(1.0)
    assert "best_phase_error" not in report.__all__
    with pytest.warns(DeprecationWarning, match="mmip_ptychography.best_phase_error"):
        old = report.best_phase_error(truth + noise, truth)
    assert old == best_phase_error(truth + noise, truth)
    x, w = truth.real, np.stack([truth.imag, 0 * truth.imag])
    assert phase_corrected_error(x, w, x, w) == pytest.approx(0, abs=1e-14)


def test_xraylib_is_an_extra_of_the_plugins_that_use_it():
    core = _toml(ROOT / "pyproject.toml")["project"]["optional-dependencies"]
    assert "physics" not in core
    assert not [(k, d) for k, deps in core.items() for d in deps if d.startswith("xraylib")]
    for plugin in ("ptychography", "tomography"):
        extras = _toml(ROOT / "plugins" / plugin / "pyproject.toml")["project"]["optional-dependencies"]
        assert any(d.startswith("xraylib") for d in extras["xraylib"])
    makefile = (ROOT / "Makefile").read_text()
    assert '"plugins/ptychography[xraylib]"' in makefile and '"plugins/tomography[xraylib]"' in makefile
