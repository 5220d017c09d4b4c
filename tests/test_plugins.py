import types

import pytest

from multimodal_ip import hookimpl
from multimodal_ip.errors import PluginLoadError, UnknownPluginError
from multimodal_ip.plugins import Registry, build_plugin_manager


def registry(*extra):
    return Registry(*build_plugin_manager(extra_plugins=extra))


def test_builtins_and_installed_modalities():
    reg = registry()
    assert {"lbfgs", "gauss-newton", "admm"} <= set(reg.names("solver"))
    assert {"ptychography", "fluorescence"} <= set(reg.names("modality"))
    rows = {(r.kind, r.name): r for r in reg.rows()}
    assert rows[("modality", "ptychography")].dist == "mmip-ptychography"
    assert rows[("solver", "lbfgs")].status == "ok"


def test_unknown_plugin_error_lists_alternatives():
    with pytest.raises(UnknownPluginError, match=r"no solver 'lbgfs'; installed: admm, gauss-newton, lbfgs"):
        registry().get("solver", "lbgfs")


def test_third_party_solver_is_selectable(tiny_dataset):
    from multimodal_ip.io import build_problem
    from multimodal_ip.solvers import History, Result

    calls = []

    def my_solve(problem, x0, **options):
        calls.append(options)
        return Result(x0, History(), "converged", "did nothing")

    plugin = types.SimpleNamespace(mmip_register_solvers=hookimpl(lambda register: register("noop", my_solve)))
    reg = registry(plugin)
    problem = build_problem(tiny_dataset, registry=reg)
    res = reg.get("solver", "noop")(problem, problem.space.full(1.0), maxiter=3)
    assert res.message == "did nothing" and calls == [{"maxiter": 3}]


def test_failing_plugin_is_isolated():
    def boom(register):
        raise RuntimeError("kaput")

    plugin = types.SimpleNamespace(mmip_register_solvers=hookimpl(boom))
    reg = registry(plugin)
    errors = [r for r in reg.rows() if r.status == "error"]
    assert len(errors) == 1 and "RuntimeError: kaput" in errors[0].error
    assert "lbfgs" in reg.names("solver")


def test_duplicate_name_is_reported():
    plugin = types.SimpleNamespace(mmip_register_solvers=hookimpl(lambda register: register("lbfgs", print)))
    reg = registry(plugin)
    bad = [r for r in reg.rows() if r.status == "error"]
    assert bad and "registered twice" in bad[0].error


def test_misspelt_hook_fails_loudly():
    plugin = types.SimpleNamespace(mmip_register_solver=hookimpl(lambda register: None))
    with pytest.raises(PluginLoadError, match="unknown hook"):
        build_plugin_manager(extra_plugins=(plugin,))


def test_blocking_by_environment(monkeypatch):
    monkeypatch.setenv("MMIP_DISABLE_PLUGINS", "fluorescence, multimodal_ip.solvers.admm")
    reg = registry()
    assert "fluorescence" not in reg.names("modality") and "admm" not in reg.names("solver")
    assert any(r.status == "blocked" and r.name == "fluorescence" for r in reg.rows())


def test_entry_point_that_fails_to_import_is_isolated(monkeypatch):
    import importlib.metadata

    class BrokenEntryPoint:
        name, dist = "broken", None

        def load(self):
            raise ImportError("No module named 'missing_dependency'")

    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [*real(group=group), BrokenEntryPoint()])
    reg = registry()
    broken = [r for r in reg.rows() if r.name == "broken"]
    assert broken and broken[0].status == "error" and "missing_dependency" in broken[0].error
    assert {"ptychography", "fluorescence"} <= set(reg.names("modality"))
