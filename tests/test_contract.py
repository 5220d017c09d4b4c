"""The modality contract from outside: plain-h5py files, a wrong Jacobian, misbehaving plugin distributions."""

import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from multimodal_ip import plugins
from multimodal_ip.cli import main
from multimodal_ip.io import load_result, save_dataset


def _write_plain(path, ds, order):
    """The README schema written by plain h5py: terms in ``order`` (creation order kept), no reference_term, no
    /variables, root attributes only format and format_version."""
    with h5py.File(path, "w", track_order=True) as f:
        f.attrs["format"] = "multimodal_ip"
        f.attrs["format_version"] = 1
        g = f.create_group("terms", track_order=True)
        for name in order:
            t = ds.terms[name]
            gt = g.create_group(name, track_order=True)
            gt.attrs["modality"] = t.modality
            for k, v in t.attrs.items():
                gt.attrs[k] = v
            for k in sorted(t.arrays, reverse=True):
                gt.create_dataset(k, data=np.asarray(t.arrays[k]))
        gt = f.create_group("truth")
        for k, v in ds.truth.items():
            gt.create_dataset(k, data=v)


@pytest.mark.parametrize("order", [("ptychography", "fluorescence"), ("fluorescence", "ptychography")])
def test_plain_h5py_file_in_any_order_reconstructs_like_the_simulators(tmp_path, tiny_dataset, order):
    own, plain = tmp_path / "own.h5", tmp_path / "plain.h5"
    save_dataset(own, tiny_dataset)
    _write_plain(plain, tiny_dataset, order)
    with h5py.File(plain) as f:
        assert "variables" not in f and "reference_term" not in f.attrs and list(f["terms"]) == list(order)
    flags = ["--iterations", "15", "--checkpoint-every", "0", "--accept-stall"]
    assert main(["reconstruct", str(own), "-o", str(tmp_path / "a.h5"), *flags]) == 0
    assert main(["reconstruct", str(plain), "-o", str(tmp_path / "b.h5"), *flags]) == 0
    a, b = load_result(tmp_path / "a.h5"), load_result(tmp_path / "b.h5")
    for v in ("x", "w"):
        np.testing.assert_allclose(b["variables"][v], a["variables"][v], rtol=0, atol=1e-10)


def test_balancing_reference_refused_when_roles_do_not_decide(tmp_path, tiny_dataset, capsys, monkeypatch):
    """Two terms of modalities without a reference role: one line naming the terms and the way to choose."""
    from dataclasses import replace

    from mmip_fluorescence.plugin import Fluorescence

    class Neutral(Fluorescence):
        balance_role = "none"

    class Extra:
        @staticmethod
        @plugins.hookspecs.hookimpl
        def mmip_register_modalities(register):
            register("neutral-xrf", Neutral())

    _patch_registry(monkeypatch, Extra)
    xrf = tiny_dataset.terms["fluorescence"]
    ds = replace(tiny_dataset, terms={"a": replace(xrf, name="a", modality="neutral-xrf"),
                                      "b": replace(xrf, name="b", modality="neutral-xrf")}, attrs={})
    path = tmp_path / "two.h5"
    save_dataset(path, ds)
    assert main(["reconstruct", str(path), "-o", str(tmp_path / "r.h5"), "--iterations", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "a (neutral-xrf), b (neutral-xrf)" in err and "--balance-reference" in err
    assert main(["reconstruct", str(path), "-o", str(tmp_path / "r.h5"), "--iterations", "1",
                 "--balance-reference", "b"]) == 0


def _patch_registry(monkeypatch, *extra):
    """The process-wide registry with ``extra`` plugin modules added (undone, and the cache reset, after the test)."""
    real = plugins.build_plugin_manager
    monkeypatch.setattr(plugins, "build_plugin_manager",
                        lambda extra_plugins=(), load_entry_points=True: real((*extra_plugins, *extra)))
    plugins.reset()
    return plugins.get_registry()


@pytest.fixture(autouse=True)
def _fresh_registry():
    yield
    plugins.reset()


BAD_JACOBIAN = '''
import numpy as np, pylops
from multimodal_ip import DataTerm, Variable, hookimpl
from multimodal_ip.losses import LeastSquares
from multimodal_ip.operators import Exp, Linear, compose
from multimodal_ip.operators.nonlinear_operator import NonlinearOperator


class ExpNoChain(Exp):
    """exp whose Jacobian has the wrong sign (a slip in a hand-written derivative)."""
    def _linearize(self, x):
        y = np.exp(x)
        return y, pylops.Diagonal(-y.ravel())


class BadJac:
    split_axes = {"data": 0, "matrix": 0}

    def variables(self, td):
        return [Variable("x", (np.shape(td.arrays["matrix"])[1],))]

    def build_term(self, td, space, *, xp=None, **options):
        m = pylops.MatrixMult(-td.array("matrix"), dtype="float64")
        return DataTerm(compose(ExpNoChain(m.shape[0]), Linear(m)), td.array("data"), LeastSquares(), 1.0,
                        ("x",), td.name)

    def conformance_cases(self, rng):
        m = pylops.MatrixMult(rng.standard_normal((4, 3)), dtype="float64")
        yield "4x3", compose(ExpNoChain(4), Linear(m)), rng.standard_normal(3)
'''


def test_wrong_jacobian_ends_stalled_naming_the_term(tmp_path, capsys, monkeypatch):
    mod = tmp_path / "badjac_mod.py"
    mod.write_text(BAD_JACOBIAN + "\n@hookimpl\ndef mmip_register_modalities(register):\n"
                   "    register('badjac', BadJac())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import badjac_mod

    _patch_registry(monkeypatch, badjac_mod)
    rng = np.random.default_rng(0)
    matrix = 0.5 * rng.standard_normal((30, 6))
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"], f.attrs["format_version"] = "multimodal_ip", 1
        g = f.create_group("terms/faulty")
        g.attrs["modality"] = "badjac"
        g["matrix"], g["data"] = matrix, np.exp(-matrix @ rng.standard_normal(6))
    for solver in ("lbfgs", "gauss-newton"):
        code = main(["reconstruct", str(path), "-o", str(tmp_path / f"r-{solver}.h5"), "--solver", solver,
                     "--iterations", "200", "--checkpoint-every", "0"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 3, err
        assert "stalled" in err[-1] and "term 'faulty' fails the gradient Taylor test" in err[-1]
        assert load_result(tmp_path / f"r-{solver}.h5")["status"] == "stalled"


def test_stall_is_exit_0_only_when_accepted(tmp_path, monkeypatch, capsys):
    """A stall whose every term passes the Taylor test says so, and --accept-stall makes it exit 0."""
    from multimodal_ip.cli import reconstruct
    from multimodal_ip.solvers import Result

    real = reconstruct._solve_with_progress

    def stalling(problem, cfg, desc, *a, **k):
        res = real(problem, cfg, desc, *a, **k)
        return Result(res.x, res.history, "stalled", "line search found no acceptable step", res.arrays)

    monkeypatch.setattr(reconstruct, "_solve_with_progress", stalling)
    data = tmp_path / "d.h5"
    assert main(["simulate", "phantom", "-o", str(data), "--n", "32", "--probe-size", "16", "--step", "4"]) == 0
    base = ["reconstruct", str(data), "-o", str(tmp_path / "r.h5"), "--iterations", "3"]
    assert main(base) == 3
    assert "every term's gradient passes the Taylor test" in capsys.readouterr().err
    assert main([*base, "--accept-stall"]) == 0


# ---- plugin distributions installed beside the real ones (dist-info folders on PYTHONPATH) -------------------
FIXTURES = {
    "importerror": ("import numpy\nimport not_a_module_anywhere  # line 2\n", "importerror"),
    "typo": ("from multimodal_ip import hookimpl\n@hookimpl\ndef mmip_register_modality(register):\n"
             "    register('typo', object())\n", "typo"),
    "dupe": ("from mmip_toy import Toy\nfrom multimodal_ip import hookimpl\n@hookimpl\n"
             "def mmip_register_modalities(register):\n    register('toy', Toy())\n", "dupe"),
    "nocases": ("from multimodal_ip import hookimpl\nclass NoCases:\n"
                "    def build_term(self, td, space, **options): ...\n@hookimpl\n"
                "def mmip_register_modalities(register):\n    register('nocases', NoCases())\n", "nocases"),
    "badsplit": (textwrap.dedent('''
        import numpy as np
        from mmip_toy import Toy
        from multimodal_ip import DataTerm, hookimpl
        from multimodal_ip.losses import LeastSquares

        class BadSplit(Toy):
            """Normalises by its own number of rows, not by split_total: ranks would not add up."""
            def build_term(self, td, space, *, xp=None, **options):
                t = super().build_term(td, space, xp=xp, **options)
                return DataTerm(t.operator, t.data, LeastSquares(), 1.0 / len(t.data), t.inputs, t.name)

        @hookimpl
        def mmip_register_modalities(register):
            register('badsplit', BadSplit())
        '''), "badsplit"),
}


def _install_fixtures(root, names):
    for name in names:
        code, ep = FIXTURES[name]
        (root / f"mmipfix_{name}.py").write_text(code)
        info = root / f"mmip_fixture_{name}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: mmip-fixture-{name}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[multimodal_ip]\n{ep} = mmipfix_{name}\n")
    return {**os.environ, "PYTHONPATH": str(root)}


def test_misbehaving_plugins_are_named_and_isolated(tmp_path, tiny_dataset):
    pytest.importorskip("mmip_toy", reason="install examples/custom_modality (make test does)")
    env = _install_fixtures(tmp_path, FIXTURES)
    proc = subprocess.run([sys.executable, "-m", "multimodal_ip.cli", "plugins"], capture_output=True, text=True,
                          env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    row = {n: next((ln for ln in lines if f"mmip-fixture-{n}" in ln), "") for n in FIXTURES}
    assert "mmipfix_importerror.py:2: ModuleNotFoundError" in row["importerror"]
    assert "unknown hook 'mmip_register_modality'" in row["typo"] and "mmip_register_modalities" in row["typo"]
    assert "claimed by" in row["dupe"] and "mmip-toy" in row["dupe"] and "mmip-fixture-dupe" in row["dupe"]
    assert "no method conformance_cases()" in row["nocases"]
    assert " ok" in row["badsplit"]  # loads; only the kit can see its split is wrong
    # blocking the claimant of the duplicate name (and the broken ones) gives the toy back, exit 0
    blocked = subprocess.run([sys.executable, "-m", "multimodal_ip.cli", "plugins"], capture_output=True, text=True,
                             env={**env, "MMIP_DISABLE_PLUGINS": "dupe,importerror,typo,nocases"}, cwd=tmp_path)
    assert blocked.returncode == 0, blocked.stdout
    assert any(ln.split()[:4] == ["modality", "toy", "mmip-toy", "0.1.0"] and ln.endswith("ok")
               for ln in blocked.stdout.splitlines())
    # every other plugin still works: a run that does not use them
    data = tmp_path / "d.h5"
    save_dataset(data, tiny_dataset)
    proc = subprocess.run([sys.executable, "-m", "multimodal_ip.cli", "reconstruct", str(data), "-o",
                           str(tmp_path / "r.h5"), "--iterations", "2"], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # the kit fails, naming each distribution
    kit = subprocess.run([sys.executable, "-m", "pytest", "--mmip-conformance", "-q", "-p", "no:cacheprovider",
                          "--rootdir", str(tmp_path)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert kit.returncode == 1
    for name in ("importerror", "typo", "dupe", "nocases"):
        assert f"mmip-fixture-{name}" in kit.stdout, name
    assert "badsplit (mmip-fixture-badsplit): split into 2 parts" in kit.stdout
    assert "test_modality_example_term_builds_and_splits[ptychography] PASSED" not in kit.stdout  # -q: no names
    assert "FAILED" in kit.stdout and "test_modality_adjoint[ptychography" not in kit.stdout.split("FAILED", 1)[1]


@pytest.mark.parametrize("attr", ["options", "refinable", "split_unknowns", "inputs", "datasets", "measurements"])
def test_capability_names_must_be_tuples_of_strings(attr):
    """A modality that declares a capability list as one string (a common slip: ``measurements = "data"``) is refused
    at registration, naming the attribute; a tuple of strings is taken."""
    from multimodal_ip.errors import PluginLoadError
    from multimodal_ip.modality import check_modality_contract

    class Bad:
        def build_term(self, td, space, **options): ...

        def conformance_cases(self, rng):
            return []

    setattr(Bad, attr, "data")
    with pytest.raises(PluginLoadError, match=f"{attr} must be a tuple of strings"):
        check_modality_contract(Bad())
    setattr(Bad, attr, ("data",))
    info = check_modality_contract(Bad())
    assert getattr(info, attr) == ("data",)
