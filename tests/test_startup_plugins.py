"""Issue 28 item 7: ``mmip plugins`` loads every plugin's entry module, calls its registration hooks and the
contract checks without the numerics (pylops, scipy.signal, scipy.stats, JAX: about 1.3 s of start-up), and the
public import paths still give the objects once something asks for them (PEP 562 lazy exports)."""

import os
import subprocess
import sys

import pytest

#: what a plugin's entry module must not import at top level (docs/architecture.md, "Start-up time")
HEAVY = ("pylops", "scipy.signal", "scipy.stats", "jax", "pyproximal")


def _env():
    """The test's environment without the variables that would change what loads (JAX_PYLOPS: the package's own
    default is what is tested; MMIP_DISABLE_PLUGINS: every installed plugin loads)."""
    return {k: v for k, v in os.environ.items() if k not in ("JAX_PYLOPS", "MMIP_DISABLE_PLUGINS")}


def _run(*argv):
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=_env(), timeout=120)


def test_mmip_plugins_imports_no_numerics():
    """The command itself (``mmip plugins``, run in a fresh process): every row, and none of the heavy modules in
    ``sys.modules`` once the table is printed."""
    code = ("import sys\n"
            "from multimodal_ip.cli import main\n"
            "code = main(['plugins'])\n"
            f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
            "sys.exit(code)\n")
    out = _run("-c", code)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {tuple(line.split()[:2]) for line in out.stdout.splitlines()}
    assert {("modality", "ptychography"), ("modality", "fluorescence"), ("solver", "lbfgs"), ("solver", "admm"),
            ("regularizer", "tv"), ("report", "tomography")} <= rows, out.stdout
    assert out.stdout.strip().splitlines()[-1] == "HEAVY []", out.stdout.strip().splitlines()[-1]


def test_importtime_report_of_mmip_plugins_names_no_numerics():
    """The same property as ``python -X importtime`` sees it (the tool the start-up numbers are measured with)."""
    out = _run("-X", "importtime", "-m", "multimodal_ip", "plugins")
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = {line.rsplit("|", 1)[1].strip() for line in out.stderr.splitlines()
              if line.startswith("import time:") and line.count("|") == 2}
    assert "multimodal_ip.plugins" in loaded and "mmip_ptychography.coupling" in loaded  # the report is complete
    assert not [m for m in HEAVY if m in loaded], f"mmip plugins imported {[m for m in HEAVY if m in loaded]}"


def test_registry_and_contract_checks_import_no_numerics():
    """In a fresh process: the registry (every hook called, every modality checked against the contract) leaves the
    heavy modules out of ``sys.modules``; the first object asked for brings them in."""
    code = ("import sys\n"
            "from multimodal_ip.plugins import get_registry\n"
            "reg = get_registry()\n"
            "assert not reg.errors, reg.errors\n"
            f"heavy = {HEAVY!r}\n"
            "print(sorted(m for m in heavy if m in sys.modules), reg.names('modality'))\n"
            "from mmip_ptychography import PtychographyModel\n"
            "print(PtychographyModel.__module__, 'pylops' in sys.modules, 'jax' in sys.modules)\n")
    out = _run("-c", code)
    assert out.returncode == 0, out.stderr[-2000:]
    first, second = out.stdout.strip().splitlines()
    assert first.startswith("[] ") and "'ptychography'" in first and "'fluorescence'" in first, first
    # the lazy export resolves to the class (pylops now loaded); JAX stays out (JAX_PYLOPS defaults to 0)
    assert second == "mmip_ptychography.ptychography_model True False", second


@pytest.mark.parametrize("module, names", [
    ("multimodal_ip.problem", ["JointProblem", "DataTerm", "Linearization", "align"]),
    ("multimodal_ip.operators", ["Linear", "compose", "Autodiff", "StreamedAutodiff"]),
    ("multimodal_ip.io", ["TermData", "build_problem", "load_result"]),
    ("mmip_scanprobe", ["REFINABLE", "CubicPatches", "ComplexCoupling", "scatter_patches_"]),
    ("mmip_ptychography", ["PtychographyModel", "PhaseCoupling", "ptychography_operator"]),
    ("mmip_fluorescence", ["FluorescenceMap", "FluorescenceModel"]),
    ("mmip_tomography", ["Geometry", "XRFTomographyModel"]),
])
def test_lazy_exports_keep_the_public_import_paths(module, names):
    """Each lazily exported name is the object of its defining module, listed by ``dir()`` and ``__all__``; an
    unknown name is an ``AttributeError``."""
    import importlib

    mod = importlib.import_module(module)
    for name in names:
        obj = getattr(mod, name)
        assert name in mod.__all__ and name in dir(mod)
        assert getattr(importlib.import_module(getattr(obj, "__module__", module)), name) is obj
    if module == "multimodal_ip.problem":
        assert callable(mod.align)  # the function, not the submodule of the same name
    with pytest.raises(AttributeError, match="has no attribute"):
        _ = mod.no_such_name
