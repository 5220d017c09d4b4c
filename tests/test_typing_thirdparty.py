"""Issue 28 item 6: a plugin outside this repository type-checks against the modality contract with plain mypy.

The fixture plugin (tests/fixtures/typed_plugin.py) is copied to a temporary folder (no project configuration
there) and checked with ``python -m mypy``: the installed distributions must ship ``py.typed`` (else mypy skips them
as untyped and checks nothing), and ``Modality`` must name the real classes (else any signature passes).
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests/fixtures/typed_plugin.py"
GOOD = "def build_term(self, td: TermData, space: VariableSpace, *, xp=None, **options) -> DataTerm:"
#: wrong signatures of build_term, each a plugin bug the contract's types must catch
BAD = {
    "no_arguments": "def build_term(self) -> DataTerm:",
    "no_options": "def build_term(self, td: TermData, space: VariableSpace) -> DataTerm:",
    "wrong_type": "def build_term(self, td: str, space: VariableSpace, *, xp=None, **options) -> DataTerm:",
    "wrong_return": "def build_term(self, td: TermData, space: VariableSpace, *, xp=None, **options) -> float:",
}
DISTRIBUTIONS = {".": "multimodal_ip", "plugins/fluorescence": "mmip_fluorescence", "plugins/paper": "mmip_paper",
                 "plugins/ptychography": "mmip_ptychography", "plugins/scanprobe": "mmip_scanprobe",
                 "plugins/tomography": "mmip_tomography", "examples/custom_modality": "mmip_toy"}


@pytest.fixture(scope="module")
def mypy_outside(tmp_path_factory):
    """mypy's output per file over the fixture and one copy per wrong signature, run in a folder outside the tree."""
    pytest.importorskip("mypy", reason="mypy is in the test extras (make test installs it)")
    where = tmp_path_factory.mktemp("thirdparty")
    text = FIXTURE.read_text()
    assert GOOD in text
    files = {"good": text, **{k: text.replace(GOOD, sig) for k, sig in BAD.items()}}
    for name, body in files.items():
        (where / f"plugin_{name}.py").write_text(body)
    proc = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary",
                           *sorted(f"plugin_{n}.py" for n in files)], cwd=where, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # 2: mypy itself failed
    errors: dict = {name: [] for name in files}
    for line in proc.stdout.splitlines():
        m = re.match(r"plugin_(\w+)\.py:(\d+): error: (.*)", line)
        if m:
            errors[m.group(1)].append((int(m.group(2)), m.group(3)))
    return text, errors


def test_fixture_plugin_passes_plain_mypy(mypy_outside):
    _, errors = mypy_outside
    assert errors["good"] == [], errors["good"]


@pytest.mark.parametrize("bug", sorted(BAD))
def test_wrong_build_term_signature_fails_plain_mypy(mypy_outside, bug):
    text, errors = mypy_outside
    check_line = next(i for i, line in enumerate(text.splitlines(), 1) if line.endswith("# CHECK"))
    assert errors[bug], f"mypy accepted build_term {BAD[bug]!r}"
    assert [msg for line, msg in errors[bug] if line == check_line and '"Modality"' in msg], errors[bug]


@pytest.mark.parametrize("folder", sorted(DISTRIBUTIONS))
def test_every_distribution_ships_py_typed(folder):
    package = DISTRIBUTIONS[folder]
    assert (ROOT / folder / "src" / package / "py.typed").is_file()
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    data = tomllib.loads((ROOT / folder / "pyproject.toml").read_text())
    assert "py.typed" in data["tool"]["setuptools"]["package-data"][package]  # so that a wheel carries it


def test_py_typed_is_found_through_the_editable_install():
    """The venv installs every distribution editable (Makefile): mypy must reach the sources and their py.typed."""
    import multimodal_ip

    assert (Path(multimodal_ip.__file__).parent / "py.typed").is_file()
