"""Forward-only operators in JAX (multimodal_ip.operators.autodiff), the built-in models' JAX forms, the kit's
opt-in autodiff check and the forward-only example plugin (examples/forward_only)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from multimodal_ip import Variable
from multimodal_ip.errors import ConfigError, ConformanceError
from multimodal_ip.testing import check_adjoint, check_jacobian, check_same_jacobian

jax = pytest.importorskip("jax", reason="the autodiff path needs JAX (the test extra installs jax[cpu])")
jnp = jax.numpy
ROOT = Path(__file__).resolve().parents[1]
TRACES = {"n": 0}


def coupled(inputs, params):
    """Real x, complex z, packed together: a nonlinear, only R-linear map to complex values."""
    TRACES["n"] += 1  # runs only while JAX traces
    u = inputs["x"] * jnp.exp(1j * inputs["x"]) + params["a"] * jnp.conj(inputs["z"]) ** 2
    return jnp.fft.fft(u * params["probe"], norm="ortho")


def modulus(inputs, params):
    return jnp.abs(params["m"] @ inputs["z"]) ** 2


def test_jacobian_and_adjoint_of_packed_and_complex_inputs(rng):
    from multimodal_ip.operators.autodiff import Autodiff

    op = Autodiff(coupled, [Variable("x", (6,)), Variable("z", (6,), "complex128")],
                  {"a": 0.3, "probe": rng.standard_normal(6) + 1j})
    assert op.dims == (18,) and op.dimsd == (6,) and op.dtyped == np.complex128
    v = rng.standard_normal(18)
    assert check_adjoint(op, x=v, rng=rng) < 1e-12
    assert check_jacobian(op, v, rng=rng) > 1.8
    single = Autodiff(modulus, [Variable("z", (5,), "complex128")], {"m": rng.standard_normal((7, 5)) + 1j})
    z = rng.standard_normal(5) + 1j * rng.standard_normal(5)
    assert single.dtype == np.complex128 and single.dtyped == np.float64
    assert check_adjoint(single, x=z, rng=rng) < 1e-12
    assert check_jacobian(single, z, rng=rng) > 1.8
    # the packed gradient equals the per-variable Wirtinger-convention gradient by hand: x enters as pairs (re, im)
    y, jac = op.linearize(v)
    r = rng.standard_normal(6) + 1j * rng.standard_normal(6)
    h = 1e-6
    e = np.zeros(18)
    e[7] = h  # Re z[0]
    fd = np.real(np.vdot(op.forward(v + e) - op.forward(v - e), r)) / (2 * h)
    assert abs(jac.rmatvec(r)[7] - fd) < 1e-6 * max(1.0, abs(fd))


def test_float32_stays_float32_and_outputs_are_views(rng):
    from multimodal_ip.operators.autodiff import Autodiff

    op = Autodiff(coupled, [Variable("x", (6,), "float32"), Variable("z", (6,), "complex64")],
                  {"a": 0.3, "probe": np.ones(6, complex)})
    y, jac = op.linearize(rng.standard_normal(18).astype("float32"))
    assert y.dtype == np.complex64 and jac.rmatvec(y.ravel()).dtype == np.float32
    assert not y.flags.writeable  # numpy's view of JAX's buffer (no copy out)


def test_compiled_once_per_shape(rng):
    from multimodal_ip.operators.autodiff import Autodiff

    def build():
        return Autodiff(coupled, [Variable("x", (4,)), Variable("z", (4,), "complex128")],
                        {"a": rng.random(), "probe": rng.standard_normal(4) + 0j})

    v = rng.standard_normal(12)
    y, jac = build().linearize(v)
    jac.rmatvec(y.ravel())
    jac.matvec(v)
    before = TRACES["n"]
    y, jac = build().linearize(v + 1)  # a second operator (new parameter values, same shapes): nothing retraced
    jac.rmatvec(y.ravel())
    jac.matvec(v)
    build().forward(v)
    assert TRACES["n"] == before


def test_missing_jax_is_one_config_error(monkeypatch):
    from multimodal_ip.operators import autodiff

    monkeypatch.setitem(sys.modules, "jax", None)
    with pytest.raises(ConfigError, match=r"not installed: pip install 'jax\[cpu\]'"):
        autodiff._jax()


def test_same_jacobian_check_names_the_differing_product(rng):
    from multimodal_ip.operators.autodiff import Autodiff

    m = rng.standard_normal((7, 5)) + 1j * rng.standard_normal((7, 5))
    a = Autodiff(modulus, [Variable("z", (5,), "complex128")], {"m": m})
    z = rng.standard_normal(5) + 1j * rng.standard_normal(5)
    assert check_same_jacobian(a, Autodiff(modulus, [Variable("z", (5,), "complex128")], {"m": m.copy()}), z) < 1e-14
    with pytest.raises(ConformanceError, match="differ in the value"):
        check_same_jacobian(a, Autodiff(modulus, [Variable("z", (5,), "complex128")], {"m": 1.001 * m}), z)


@pytest.mark.parametrize(("dtype", "tol"), [("float64", 1e-12), ("float32", 1e-6)])
def test_builtin_jax_forms_equal_hand_written(tiny_dataset, dtype, tol):
    """``implementation = "jax"`` for both built-in terms of the phantom: the joint objective and gradient equal the
    hand-written ones (relative). Fixed weights: at the all-ones start point, where balancing weighs the terms, the
    spectra of the constant object have exact zeros (the probe's), which JAX's FFT returns as 0 and numpy's as 1e-18,
    and the amplitude loss's gradient is discontinuous there."""
    from multimodal_ip.io import BuildOptions, build_problem

    def problem(impl):
        opts = {t: {"implementation": impl} for t in tiny_dataset.terms}
        built = build_problem(tiny_dataset, options=BuildOptions(term_options=opts, dtype=dtype, balance=False))
        return built.with_weights({"ptychography": 1.0, "fluorescence": 1e-6})

    hand, auto = problem("hand-written"), problem("jax")
    assert {type(t.operator).__name__ for t in auto.terms} == {"Autodiff"}
    v = (auto.space.full(1.0) + 0.1 * np.random.default_rng(0).standard_normal(auto.space.size)).astype(dtype)
    fa, ga = hand.value_and_gradient(v)
    fb, gb = auto.value_and_gradient(v)
    assert abs(fa - fb) <= tol * abs(fa)
    assert np.linalg.norm(ga - gb) <= tol * np.linalg.norm(ga)


def test_jax_form_refuses_what_it_does_not_model(tiny_dataset):
    from dataclasses import replace

    from multimodal_ip.io import BuildOptions, build_problem

    name = next(n for n, t in tiny_dataset.terms.items() if t.modality == "ptychography")
    td = tiny_dataset.terms[name]
    shifted = replace(td, arrays={**td.arrays, "positions": np.asarray(td.arrays["positions"]) + 0.25})
    ds = replace(tiny_dataset, terms={**tiny_dataset.terms, name: shifted})
    with pytest.raises(ConfigError, match=r"positions: ptychography implementation 'jax' takes whole-pixel"):
        build_problem(ds, options=BuildOptions(term_options={name: {"implementation": "jax"}}))


def _forward_only_env(tmp_path):
    """The example installed for a subprocess without touching the venv: its source and a dist-info holding its
    entry point on PYTHONPATH (what ``pip install -e examples/forward_only`` records), unless already installed."""
    from importlib import metadata

    env = dict(os.environ)
    if any(ep.name == "bright-field" for ep in metadata.entry_points(group="multimodal_ip")):
        return env  # installed for real (pip install -e examples/forward_only): use that
    info = tmp_path / "site" / "mmip_forward_only-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mmip-forward-only\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[multimodal_ip]\nbright-field = mmip_forward_only\n")
    paths = [str(tmp_path / "site"), str(ROOT / "examples/forward_only/src"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def test_forward_only_plugin_passes_the_kit_and_reconstructs_jointly(tmp_path):
    import h5py
    from mmip_paper import simulate

    from multimodal_ip.io import save_dataset

    env = _forward_only_env(tmp_path)
    kit = subprocess.run([sys.executable, "-m", "pytest", "--mmip-conformance", "-p", "no:cacheprovider", "-v",
                          "-k", "bright-field", "--rootdir", str(tmp_path)],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert kit.returncode == 0, kit.stdout[-2000:]
    for test in ("adjoint[bright-field-Ne2-n9-K4]", "taylor[bright-field-Ne1-n6-K3]",
                 "example_term_builds_and_splits[bright-field]", "example_term_on_backend[bright-field]"):
        assert f"test_modality_{test} PASSED" in kit.stdout, kit.stdout[-2000:]
    ds = simulate("phantom", seed=2, noise=0.0, n=20, probe_size=16, step=4)
    path = tmp_path / "joint.h5"
    save_dataset(path, ds)
    pty = next(t for t in ds.terms.values() if t.modality == "ptychography")
    kernel = np.abs(np.asarray(pty.arrays["probe"])) ** 2
    corners = np.asarray(pty.arrays["positions"])
    w = np.asarray(ds.truth["w"])
    transmission = np.exp(-0.5 * w[0])
    data = [np.sum(kernel * transmission[r:r + 16, c:c + 16]) for r, c in corners.astype(int)]
    with h5py.File(path, "a") as f:
        g = f.create_group("terms/bright")
        g.attrs["modality"] = "bright-field"
        g["data"], g["kernel"], g["positions"], g["mu"] = np.array(data), kernel, corners, np.array([0.5])
    out = tmp_path / "r.h5"
    run = subprocess.run([sys.executable, "-m", "multimodal_ip", "reconstruct", str(path), "-o", str(out),
                          "--iterations", "3", "--accept-stall"], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "objective_bright" in run.stdout
    with h5py.File(out) as f:
        assert np.all(np.isfinite(f["results/variables/w"][()]))


def test_docs_thirty_line_modality_runs(rng):
    """The modality of docs/autodiff.md: at most 30 lines of code, its conformance cases pass the kit's checks, and
    its term builds and evaluates from a TermData."""
    import re

    from multimodal_ip import JointProblem, VariableSpace
    from multimodal_ip.io import TermData
    from multimodal_ip.testing import check_modality

    text = (ROOT / "docs/autodiff.md").read_text().split("## A third-party modality in 30 lines")[1]
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 30
    scope: dict = {}
    exec(compile(code, "docs/autodiff.md", "exec"), scope)
    modality = scope["BrightField"]()
    [(case, err, slope)] = check_modality(modality, rng)
    assert err < 1e-12 and slope > 1.8
    corners = np.array([[0.0, 0.0], [1.0, 2.0], [3.0, 3.0]])
    td = TermData("bf", "bright-field", {"kernel": rng.random((3, 3)), "mu": np.array([0.5]), "positions": corners,
                                         "data": rng.random(3)})
    space = VariableSpace([Variable("w", (1, 6, 6))])
    f, g = JointProblem(space, [modality.build_term(td, space)]).value_and_gradient(space.full(1.0))
    assert np.isfinite(f) and g.shape == (36,) and np.any(g != 0)


def test_streamed_autodiff_equals_whole(rng):
    """The JAX ptychography evaluated 3 positions a block (StreamedAutodiff): the data term's objective and gradient
    (block by block), the whole Jacobian's adjoint and Gauss-Newton products equal the one-evaluation form."""
    from mmip_ptychography import raster_positions
    from mmip_ptychography.jax_model import ptychography_autodiff

    from multimodal_ip import DataTerm, JointProblem, VariableSpace
    from multimodal_ip.losses import Amplitude
    from multimodal_ip.operators import StreamedAutodiff

    probe = rng.standard_normal((4, 4)) + 1j * rng.standard_normal((4, 4))
    pos = raster_positions(10, 4, step_px=3)
    whole = ptychography_autodiff(probe, pos, (10, 10), 1)
    streamed = ptychography_autodiff(probe, pos, (10, 10), 1, block=3)
    assert isinstance(streamed, StreamedAutodiff) and len(streamed.blocks()) == 3
    space = VariableSpace([Variable("x", (10, 10)), Variable("w", (1, 10, 10))])
    v = 1 + 0.1 * rng.standard_normal(space.size)
    data = np.abs(whole.forward(1 + 0.1 * rng.standard_normal(space.size))) ** 2
    problems = [JointProblem(space, [DataTerm(op, data, Amplitude(), 1.0, ("x", "w"))]) for op in (whole, streamed)]
    (fa, ga), (fb, gb) = (p.value_and_gradient(v) for p in problems)
    assert abs(fa - fb) <= 1e-12 * fa and np.linalg.norm(ga - gb) <= 1e-12 * np.linalg.norm(ga)
    dv = rng.standard_normal(space.size)
    ha, hb = (p.linearize(v).gauss_newton().matvec(dv) for p in problems)
    assert np.linalg.norm(ha - hb) <= 1e-12 * np.linalg.norm(ha)
    assert check_adjoint(streamed, x=v, rng=rng) < 1e-12


def test_forward_only_example_in_process(monkeypatch):
    """examples/forward_only's modality imported from its source: its cases pass the kit's adjoint and Taylor checks,
    its example term builds, splits into 2 and 3 parts that sum to the whole, and refuses windows outside ``w``."""
    from dataclasses import replace

    from multimodal_ip import JointProblem, VariableSpace
    from multimodal_ip.errors import DataError
    from multimodal_ip.modality import split_term
    from multimodal_ip.testing import check_example_term, check_modality

    monkeypatch.syspath_prepend(str(ROOT / "examples/forward_only/src"))
    from mmip_forward_only import BrightField

    modality = BrightField()
    assert len(check_modality(modality, np.random.default_rng(0))) == 2
    check_example_term(modality)
    td, variables = modality.example_term(np.random.default_rng(3))
    space = VariableSpace(variables)
    v = space.full(1.0) + 0.1 * np.random.default_rng(4).standard_normal(space.size)
    f, g = JointProblem(space, [modality.build_term(td, space)]).value_and_gradient(v)
    for parts in (2, 3):
        pieces = [JointProblem(space, [modality.build_term(split_term(td, modality.split_axes, k, parts), space)])
                  for k in range(parts)]
        fs, gs = zip(*(p.value_and_gradient(v) for p in pieces))
        assert abs(sum(fs) - f) <= 1e-12 * f and np.linalg.norm(sum(gs) - g) <= 1e-12 * np.linalg.norm(g)
    outside = replace(td, arrays={**td.arrays, "positions": td.arrays["positions"] + 3})
    with pytest.raises(DataError, match=r"positions: expected whole-pixel corners in \[0, \[5, 5\]\]"):
        modality.build_term(outside, space)
