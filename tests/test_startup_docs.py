"""Issue 28 items 5 and 7: variables inferred from an XRF-at-scan-positions file, startup time, the contract's docs."""

import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pylops
import pytest
from mmip_toy import Toy

from multimodal_ip import DataTerm
from multimodal_ip.errors import ConformanceError, PluginLoadError
from multimodal_ip.io import TermData
from multimodal_ip.modality import capabilities, check_modality_contract
from multimodal_ip.operators import Exp, Linear, compose
from multimodal_ip.operators.nonlinear_operator import NonlinearOperator
from multimodal_ip.plugins import get_registry
from multimodal_ip.testing import check_adjoint
from multimodal_ip.testing.checks import split_diagnosis

ROOT = Path(__file__).resolve().parents[1]


# ---- item 5: w inferred from the scan's extent ----------------------------------------------------------------------
def _write_readme_file(path, n=16, npx=6, step=2, ne=2, xrf_positions=None):
    """The README schema, written with plain h5py: ptychography + XRF at the scan positions, no /variables, no
    object_shape (the XRF term keeps the README's grid_shape of the scan)."""
    rng = np.random.default_rng(0)
    corners = np.arange(0, n - npx + 1, step)
    pos = np.array([(r, c) for r in corners for c in corners], dtype=float)
    probe = rng.standard_normal((npx, npx)) + 1j * rng.standard_normal((npx, npx))
    with h5py.File(path, "w") as f:
        f.attrs["format"], f.attrs["format_version"] = "multimodal_ip", 1
        p = f.create_group("terms/ptychography")
        p.attrs["modality"], p.attrs["photons_per_unit"] = "ptychography", 1.0
        p["data"], p["probe"], p["positions"] = rng.random((len(pos), npx, npx)), probe, pos
        x = f.create_group("terms/fluorescence")
        x.attrs["modality"], x.attrs["photons_per_unit"] = "fluorescence", 1.0
        x.attrs["elements"] = np.array([f"E{e}" for e in range(ne)], dtype="S")
        x.attrs["grid_shape"] = np.array([len(corners)] * 2)
        xpos = pos if xrf_positions is None else xrf_positions
        x["data"], x["kernel"], x["positions"] = rng.random((ne, len(xpos))), np.abs(probe) ** 2, xpos
    return path


def test_xrf_at_scan_positions_without_variables_reconstructs(tmp_path, capsys):
    from multimodal_ip.cli import main

    data = _write_readme_file(tmp_path / "d.h5", n=16, npx=6, ne=2)
    assert main(["reconstruct", str(data), "-o", str(tmp_path / "r.h5"), "--iterations", "3"]) == 0, \
        capsys.readouterr().err
    with h5py.File(tmp_path / "r.h5") as f:
        shapes = {k: f["results/variables"][k].shape for k in f["results/variables"]}
        assert str(f["results"].attrs["status"]) == "maxiter"
    assert shapes == {"x": (16, 16), "w": (2, 16, 16)}  # w by the rule ptychography infers x by


def test_xrf_variables_rule(tmp_path):
    """The scan-extent rule applies only when every window lies inside the object; full grids keep grid_shape."""
    from mmip_fluorescence.fluorescence_map import full_grid_positions

    xrf = capabilities(get_registry().get("modality", "fluorescence"))
    kernel = np.ones((3, 3))

    def shapes(pos, **attrs):
        td = TermData("xrf", "fluorescence", {"data": np.ones((2, len(pos))), "kernel": kernel, "positions": pos},
                      attrs)
        return [v.shape for v in xrf.variables(td)]

    scan = np.array([[0.0, 0.0], [0.0, 4.5], [5.0, 0.0], [5.0, 4.5]])
    assert shapes(scan) == [(2, 8, 8)]  # ceil(max corner) + kernel, as ptychography's x
    full = full_grid_positions((7, 7), kernel.shape)  # windows hang over the edge: the extent does not say
    assert shapes(full) == []
    assert shapes(full, grid_shape=np.array([7, 7])) == [(2, 7, 7)]
    assert shapes(scan, object_shape=np.array([9, 9])) == [(2, 9, 9)]


def test_xrf_on_another_grid_than_the_scan_is_a_clear_conflict(tmp_path, capsys):
    """XRF positions whose extent differs from the scan's: the two terms imply different object shapes, and the
    file is refused with the fix (declare /variables or object_shape), not run on one of them."""
    from multimodal_ip.cli import main

    other = np.array([[r, c] for r in range(0, 14, 3) for c in range(0, 14, 3)], dtype=float)  # extent 12 + 6 = 18
    data = _write_readme_file(tmp_path / "d.h5", xrf_positions=other)
    assert main(["reconstruct", str(data), "-o", str(tmp_path / "r.h5"), "--iterations", "1"]) == 2
    err = capsys.readouterr().err
    assert "got (2, 18, 18)" in err and "declare /variables/x and /variables/w or the attribute object_shape" in err
    assert not (tmp_path / "r.h5").exists()


# ---- item 7: startup ------------------------------------------------------------------------------------------------
def _fresh_python(code):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_cli_import_and_help_load_neither_pylops_nor_plugins():
    out = _fresh_python(
        "import contextlib, sys\n"
        "import multimodal_ip.cli as cli\n"
        "after_import = sorted(m for m in ('pylops', 'scipy', 'multimodal_ip.problem') if m in sys.modules)\n"
        "with contextlib.redirect_stdout(None), contextlib.suppress(SystemExit):\n"
        "    cli.main(['--help'])\n"
        "after_help = sorted(m for m in ('pylops', 'scipy', 'mmip_paper') if m in sys.modules)\n"
        "print(after_import, after_help)")
    assert out == "[] []"


def test_lazy_package_names_still_import():
    import multimodal_ip

    for name in multimodal_ip.__all__:
        assert getattr(multimodal_ip, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = multimodal_ip.nope


def test_simulate_help_lists_every_case_on_one_line(capsys):
    from multimodal_ip.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    cases = get_registry().names("simulation")
    assert cases
    listing = out[out.index("cases:"):].splitlines()[1:]
    assert [line.split()[0] for line in listing] == cases
    assert all(len(line.split()) > 2 for line in listing)  # a description, not only the name
    assert "--n-elements" in out  # the cases' flags are still there


# ---- item 7: check_adjoint on any operator of the project -----------------------------------------------------------
def test_check_adjoint_takes_nonlinear_operators():
    m = np.random.default_rng(0).standard_normal((5, 3))
    assert check_adjoint(Linear(pylops.MatrixMult(m))) < 1e-12
    assert check_adjoint(compose(Exp(5), Linear(pylops.MatrixMult(m))), x=np.ones(3)) < 1e-12
    wrong = pylops.FunctionOperator(lambda v: m @ v, lambda v: 2 * m.T @ v, 5, 3)
    with pytest.raises(ConformanceError, match="adjoint check failed"):
        check_adjoint(Linear(wrong, dtype="float64"))
    with pytest.raises(TypeError, match="got ndarray"):
        check_adjoint(m)


# ---- item 7: the Hypothesis example of docs/plugins.md --------------------------------------------------------------
class _WrongSignToy(NonlinearOperator):
    """``exp(-M x)`` with the sign of its Jacobian flipped."""

    def __init__(self, matrix, shape):
        self.m = np.asarray(matrix, dtype=float)
        super().__init__((shape,), (self.m.shape[0],), name="WrongSignToy")

    def _forward(self, x):
        return np.exp(-self.m @ x)

    def _jacobian(self, x):
        return pylops.Diagonal(np.exp(-self.m @ x)) @ pylops.MatrixMult(self.m)  # should be -M


def _docs_example() -> dict:
    text = (ROOT / "docs/plugins.md").read_text()
    block = re.search(r"```python\n(# tests/test_toy_properties\.py.*?)```", text, re.S)
    assert block, "docs/plugins.md lost its Hypothesis example"
    namespace: dict = {}
    exec(compile(block.group(1), "docs/plugins.md", "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace


def test_docs_hypothesis_example_runs():
    _docs_example()["test_toy_adjoint_and_jacobian"]()


def test_docs_hypothesis_example_catches_a_wrong_jacobian():
    namespace = _docs_example()
    namespace["toy_operator"] = _WrongSignToy
    with pytest.raises(ConformanceError, match="Jacobian check failed for WrongSignToy"):
        namespace["test_toy_adjoint_and_jacobian"]()


# ---- item 7: split_offset and the kit's split message ---------------------------------------------------------------
def _objective(reads_offset, normalise_by_part=False):
    """A term with per-index weights (j + 1) on the split axis of ``data``."""

    def objective(td):
        d = np.asarray(td.arrays["data"])
        j = np.arange(len(d)) + (int(td.attrs.get("split_offset", 0)) if reads_offset else 0)
        total = len(d) if normalise_by_part else int(td.attrs.get("split_total", len(d)))
        return float(np.sum((j + 1) * d**2) / total)

    return objective


def _td():
    return TermData("t", "m", {"data": np.random.default_rng(0).random(12)})


def test_split_message_names_split_offset_when_the_term_ignores_it():
    why = split_diagnosis(_objective(reads_offset=False), _td(), {"data": 0}, 2)
    assert "ignore attribute split_offset" in why and "not a split_axes or split_total fault" in why
    assert "split_axes is wrong" not in why


def test_split_message_clears_split_offset_for_an_order_free_term():
    def mean_of_part(td):
        d = np.asarray(td.arrays["data"])
        return float(np.sum(d**2) / len(d))  # normalised by the part's own length

    why = split_diagnosis(mean_of_part, _td(), {"data": 0}, 3)
    assert "split_offset is not the cause" in why and "ignore attribute split_total" in why


def test_split_diagnosis_agrees_with_the_whole_for_a_correct_term():
    td, obj = _td(), _objective(reads_offset=True)
    from multimodal_ip.modality import split_term

    assert np.isclose(sum(obj(split_term(td, {"data": 0}, k, 3)) for k in range(3)), obj(td), rtol=1e-12)


class _PartMeanToy(Toy):
    """The toy normalised by its own part's length (ignores split_total)."""

    def build_term(self, td, space, *, xp=None, **options):
        t = super().build_term(td, space, xp=xp, **options)
        return DataTerm(t.operator, t.data, t.loss, 1.0 / len(t.data), t.inputs, t.name)


class _IndexWeightedToy(Toy):
    """The toy with data weighted by the row index, local to a part (ignores split_offset)."""

    def build_term(self, td, space, *, xp=None, **options):
        t = super().build_term(td, space, xp=xp, **options)
        return DataTerm(t.operator, t.data * (1.0 + np.arange(len(t.data))), t.loss, 1.0, t.inputs, t.name)


@pytest.mark.parametrize(("modality", "says"), [
    (_PartMeanToy, "split_offset is not the cause: the parts ignore attribute split_total"),
    (_IndexWeightedToy, "ignore attribute split_offset"),
])
def test_kit_split_failure_names_the_attribute_at_fault(monkeypatch, modality, says):
    import multimodal_ip.testing.conformance_suite as kit

    monkeypatch.setattr(kit.REGISTRY, "get", lambda kind, name: modality())
    with pytest.raises(pytest.fail.Exception, match=re.escape(says)) as exc:
        kit.test_modality_example_term_builds_and_splits("toy")
    if modality is _IndexWeightedToy:
        assert "this is not a split_axes or split_total fault" in str(exc.value)


def test_split_offset_documented_on_its_own():
    text = (ROOT / "docs/plugins.md").read_text()
    assert "### Split parts: `split_total` and `split_offset`" in text
    from multimodal_ip import modality

    assert "``split_offset``, the global" in (modality.__doc__ or "")


# ---- item 7: docs agree with the code -------------------------------------------------------------------------------
def test_custom_modality_pyproject_states_the_model():
    text = (ROOT / "examples/custom_modality/pyproject.toml").read_text()
    assert "exp(-M x)" in text and "exp(A x)" not in text
    assert "exp(-M x" in (ROOT / "examples/custom_modality/src/mmip_toy/__init__.py").read_text()


def test_regularizer_hook_signature_agrees_between_docs_and_hookspec():
    from multimodal_ip import hookspecs

    call = "cls(variables, weight=strength, **settings)"
    assert call in " ".join((hookspecs.mmip_register_regularizers.__doc__ or "").split())
    row = next(line for line in (ROOT / "docs/plugins.md").read_text().splitlines()
               if line.startswith("| `mmip_register_regularizers`"))
    assert call in row
    cls = get_registry().get("regularizer", "tv")  # and the core really calls it so (cli._regularizers)
    from multimodal_ip.cli import _regularizers

    (reg,) = _regularizers([{"name": "tv", "variables": ["x"], "strength": 0.5, "eps": 0.01}])
    assert isinstance(reg, cls) and reg.weight == 0.5 and reg.variables == ("x",)


def test_architecture_names_every_core_module_and_distribution():
    text = (ROOT / "docs/architecture.md").read_text()
    core = ROOT / "src/multimodal_ip"
    modules = {p.stem for p in core.glob("*.py") if not p.stem.startswith("_")} | {
        p.name for p in core.iterdir() if (p / "__init__.py").is_file()}
    missing = sorted(m for m in modules if f"`{m}`" not in text)
    assert not missing, f"docs/architecture.md does not name {missing}"
    for pyproject in [*ROOT.glob("plugins/*/pyproject.toml"), ROOT / "examples/custom_modality/pyproject.toml"]:
        dist = re.search(r'^name = "([^"]+)"', pyproject.read_text(), re.M)
        assert dist and f"`{dist.group(1)}`" in text, f"docs/architecture.md does not name {pyproject.parent.name}"
    for word in ("transmission-tomography", "xrf-tomography", "`config`", "`tune`", "`validation`"):
        assert word in text


# ---- item 7: validation_mask through capabilities() -----------------------------------------------------------------
class _OwnMask:
    def build_term(self, td, space, *, xp=None, **options):
        raise NotImplementedError

    def conformance_cases(self, rng):
        return []

    def validation_mask(self, td, fraction, seed):
        mask = np.zeros(np.shape(td.arrays["data"]), dtype=bool)
        mask[::4] = True  # whole rows
        return mask


def test_validation_mask_is_read_through_capabilities():
    from multimodal_ip.validation import term_holdout

    td = TermData("t", "own", {"data": np.ones((40, 3))})
    info = capabilities(_OwnMask())
    mask = term_holdout(td, info, 0.25, 0)
    assert mask.shape == (40, 3) and mask[::4].all() and not mask[1::4].any()
    broken = _OwnMask()
    broken.validation_mask = 3  # type: ignore[assignment,method-assign]
    with pytest.raises(PluginLoadError, match="validation_mask must be a method"):
        check_modality_contract(broken)
    direct = [str(p.relative_to(ROOT)) for p in (ROOT / "src/multimodal_ip").rglob("*.py")
              if p.name != "modality.py" and re.search(r"getattr\([^)]*validation_mask", p.read_text())]
    assert not direct, f"read validation_mask through capabilities(): {direct}"

