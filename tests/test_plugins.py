import types

import pytest

from multimodal_ip import hookimpl
from multimodal_ip.errors import UnknownPluginError
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
        msg = "kaput"
        raise RuntimeError(msg)

    plugin = types.SimpleNamespace(mmip_register_solvers=hookimpl(boom))
    reg = registry(plugin)
    errors = [r for r in reg.rows() if r.status == "error"]
    assert len(errors) == 1 and "RuntimeError: kaput" in errors[0].error
    assert "lbfgs" in reg.names("solver")


def test_duplicate_name_is_refused_for_both_claimants():
    plugin = types.SimpleNamespace(mmip_register_solvers=hookimpl(lambda register: register("lbfgs", print)))
    reg = registry(plugin)
    bad = [r for r in reg.rows() if r.status == "error"]
    assert len(bad) == 2 and all("is claimed by" in r.error and "MMIP_DISABLE_PLUGINS" in r.error for r in bad)
    assert "lbfgs" not in reg.names("solver") and "gauss-newton" in reg.names("solver")
    with pytest.raises(UnknownPluginError, match="claimed by"):
        reg.get("solver", "lbfgs")


def test_misspelt_hook_affects_only_its_plugin():
    plugin = types.SimpleNamespace(__name__="typo_plugin",
                                   mmip_register_solver=hookimpl(lambda register: register("x", print)))
    reg = registry(plugin)
    bad = [r for r in reg.rows() if r.status == "error"]
    assert len(bad) == 1 and "typo_plugin" in bad[0].error and "mmip_register_solvers" in bad[0].error
    assert "lbfgs" in reg.names("solver") and "ptychography" in reg.names("modality")


def test_hook_without_marker_is_reported():
    plugin = types.SimpleNamespace(__name__="unmarked", mmip_register_solvers=lambda register: register("x", print))
    bad = registry(plugin).errors
    assert len(bad) == 1 and "@hookimpl" in bad[0].error


def test_modality_breaking_the_contract_is_listed_and_not_used():
    class NoCases:
        def build_term(self, td, space, **options):
            return None

    class BadRole(NoCases):
        balance_role = "boss"

        def conformance_cases(self, rng):
            return []

    plugin = types.SimpleNamespace(mmip_register_modalities=hookimpl(
        lambda register: (register("nocases", NoCases()), register("badrole", BadRole()))))
    reg = registry(plugin)
    errors = {r.name: r.error for r in reg.errors}
    assert "conformance_cases" in errors["nocases"] and "balance_role" in errors["badrole"]
    assert "nocases" not in reg.names("modality") and "badrole" not in reg.names("modality")


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
            msg = "No module named 'missing_dependency'"
            raise ImportError(msg)

    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [*real(group=group), BrokenEntryPoint()])
    reg = registry()
    broken = [r for r in reg.rows() if r.name == "broken"]
    assert broken and broken[0].status == "error" and "missing_dependency" in broken[0].error
    assert {"ptychography", "fluorescence"} <= set(reg.names("modality"))
