"""Plugin loading at the edges: entry-point names declared by two distributions, plugins that exit, interrupt or
print at import or in a hook, and misspelled ``MMIP_DISABLE_PLUGINS`` names (issues 28 item 2, 36 items 6, 11, 12).

Fixture distributions are dist-info folders on ``sys.path``, as in ``tests/test_contract.py``.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from multimodal_ip import plugins

SOLVER = ("import sys\nfrom multimodal_ip import hookimpl\n"
          "def solve(problem, x0, **options):\n    raise NotImplementedError\n"
          "@hookimpl\ndef mmip_register_solvers(register):\n    register({solver!r}, solve)\n")


def _install(root, dist, entry, code, module=None):
    """A distribution ``dist`` 0.1 under ``root``: module ``module`` (``code``) and entry point ``entry``."""
    module = module or "mmipcol_" + dist.replace("-", "_")
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(code)
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[multimodal_ip]\n{entry} = {module}\n")
    return root


def _mmip(args, path_first=(), path_last=(), disable=None, cwd=None):
    """``mmip *args`` in a fresh interpreter; ``path_first`` before the installed distributions on ``sys.path``
    (``PYTHONPATH``), ``path_last`` after them."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", plugins.DISABLE_ENV)}
    if path_first:
        env["PYTHONPATH"] = os.pathsep.join(map(str, path_first))
    if disable is not None:
        env[plugins.DISABLE_ENV] = disable
    code = ("import sys\nsys.path.extend(sys.argv[1].split(chr(10)) if sys.argv[1] else [])\n"
            "from multimodal_ip.cli import main\nsys.exit(main(sys.argv[2:]))")
    last = "\n".join(map(str, path_last))
    return subprocess.run([sys.executable, "-c", code, last, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


def _rows(stdout):
    return [ln.split(None, 4) for ln in stdout.splitlines()[1:] if ln.strip()]


def _only_line(stderr, needle):
    lines = [ln for ln in stderr.splitlines() if needle in ln]
    assert len(lines) == 1, stderr
    return lines[0]


# ---- issue 28 item 2: an entry-point name declared by two distributions -----------------------------------------
@pytest.mark.parametrize("order", ["a-first", "b-first"])
def test_two_distributions_sharing_an_entry_point_name_are_both_refused_and_named(tmp_path, order):
    a = _install(tmp_path / "a", "mmip-collide-a", "shared", SOLVER.format(solver="solver-a"))
    b = _install(tmp_path / "b", "mmip-collide-b", "shared", SOLVER.format(solver="solver-b"))
    proc = _mmip(["plugins"], path_first=(a, b) if order == "a-first" else (b, a), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    rows = [r for r in _rows(proc.stdout) if r[1] == "shared"]
    assert sorted(r[2] for r in rows) == ["mmip-collide-a", "mmip-collide-b"], proc.stdout
    for r in rows:  # each row names both distributions, whatever the path order
        assert r[4].startswith("error: entry point 'shared'"), r
        assert "mmip-collide-a 0.1 and mmip-collide-b 0.1" in r[4] and "none is loaded" in r[4], r
        assert "MMIP_DISABLE_PLUGINS=mmip-collide-b:shared" in r[4], r
    # nothing silently replaced: neither distribution's solver is registered
    assert not [r for r in _rows(proc.stdout) if r[1] in ("solver-a", "solver-b")], proc.stdout
    assert _only_line(proc.stderr, "plugin problem").startswith("mmip plugins: 2 plugin problem(s)")
    # dist:entry keeps the other one, exit 0
    kept = _mmip(["plugins"], path_first=(a, b), disable="mmip-collide-b:shared", cwd=tmp_path)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert ["solver", "solver-a", "mmip-collide-a", "0.1", "ok"] in _rows(kept.stdout), kept.stdout
    assert ["plugin", "shared", "mmip-collide-b", "0.1", "blocked"] in _rows(kept.stdout), kept.stdout
    assert not [r for r in _rows(kept.stdout) if r[1] == "solver-b"], kept.stdout
    assert kept.stderr == ""
    # the plain name blocks every distribution's entry point of that name
    both = _mmip(["plugins"], path_first=(a, b), disable="shared", cwd=tmp_path)
    assert both.returncode == 0, both.stdout + both.stderr
    assert sum(r[4] == "blocked" for r in _rows(both.stdout) if r[1] == "shared") == 2, both.stdout


@pytest.mark.parametrize("where", ["before", "after"])
def test_an_entry_point_named_like_a_builtin_does_not_drop_the_builtin_silently(tmp_path, where):
    """A package whose entry point is called ``ptychography`` (registering a modality of another name), before or
    after mmip-ptychography on sys.path: both named, exit 2, --json too; dist:entry picks either one."""
    pytest.importorskip("mmip_toy", reason="install examples/custom_modality (make test does)")
    code = ("from mmip_toy import Toy\nfrom multimodal_ip import hookimpl\n@hookimpl\n"
            "def mmip_register_modalities(register):\n    register('impostor', Toy())\n")
    root = _install(tmp_path / "p", "mmip-impostor", "ptychography", code)
    place = {"path_first": (root,)} if where == "before" else {"path_last": (root,)}
    proc = _mmip(["plugins", "--json"], cwd=tmp_path, **place)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    rows = json.loads(proc.stdout)
    mine = [r for r in rows if r["kind"] == "plugin" and r["name"] == "ptychography"]
    assert sorted(r["dist"] for r in mine) == ["mmip-impostor", "mmip-ptychography"], rows
    assert all(r["status"] == "error" and "mmip-impostor 0.1 and mmip-ptychography" in r["error"] for r in mine)
    names = {(r["kind"], r["name"]) for r in rows}
    assert ("modality", "impostor") not in names and ("modality", "ptychography") not in names, rows
    assert ("importer", "cxi") not in names, rows
    # block the newcomer: the built-in is back with its modality, importer and report, exit 0
    fixed = _mmip(["plugins"], cwd=tmp_path, disable="mmip-impostor:ptychography", **place)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    got = {(r[0], r[1], r[2], r[4]) for r in _rows(fixed.stdout)}
    for kind, name in (("modality", "ptychography"), ("importer", "cxi"), ("report", "calibration")):
        assert (kind, name, "mmip-ptychography", "ok") in got, fixed.stdout
    # or block the built-in (Mmip_Ptychography: the distribution name is normalised): the newcomer loads
    other = _mmip(["plugins"], cwd=tmp_path, disable=" Mmip_Ptychography:ptychography ", **place)
    assert other.returncode == 0, other.stdout + other.stderr
    got = {(r[0], r[1], r[2], r[4]) for r in _rows(other.stdout)}
    assert ("modality", "impostor", "mmip-impostor", "ok") in got and ("modality", "ptychography") not in {
        (k, n) for k, n, _, _ in got}, other.stdout


def test_conformance_kit_fails_naming_both_distributions(tmp_path):
    a = _install(tmp_path / "a", "mmip-collide-a", "shared", SOLVER.format(solver="solver-a"))
    b = _install(tmp_path / "b", "mmip-collide-b", "shared", SOLVER.format(solver="solver-b"))
    env = {**{k: v for k, v in os.environ.items() if k != plugins.DISABLE_ENV}, "PYTHONPATH": f"{b}{os.pathsep}{a}"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--mmip-conformance",
                           "-k", "every_installed_plugin_loaded"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 failed" in proc.stdout, proc.stdout[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if "mmip-collide-b (plugin shared)" in ln)
    assert "mmip-collide-a 0.1 and mmip-collide-b 0.1" in line, line


# ---- issue 36 items 6 and 12: plugins that exit, interrupt or print at import or in a hook ------------------------
HOSTILE = {  # distribution -> (module code, what its row must say)
    "exit0": ("import sys\nsys.exit(0)\n", ".py:2: exited at import (SystemExit: 0); a plugin must raise"),
    "exit1": ("import sys\n\nsys.exit('bye')\n", ".py:3: exited at import (SystemExit: 'bye')"),
    "raise-systemexit": ("raise SystemExit\n", ".py:1: exited at import (SystemExit: None)"),
    "argparse": ("import argparse\np = argparse.ArgumentParser()\np.add_argument('--x', required=True)\n"
                 "p.parse_args([])\n", ".py:4: exited at import (SystemExit: 2)"),
    "keyboardinterrupt": ("raise KeyboardInterrupt\n", ".py:1: raised KeyboardInterrupt at import without a Ctrl-C"),
    "generatorexit": ("raise GeneratorExit('x')\n", ".py:1: GeneratorExit: x"),
    "exit-in-hook": ("import sys\nfrom multimodal_ip import hookimpl\n@hookimpl\n"
                     "def mmip_register_solvers(register):\n    sys.exit(0)\n",
                     ".py:5: exited in mmip_register_solvers() (SystemExit: 0)"),
    "interrupt-in-hook": ("from multimodal_ip import hookimpl\n@hookimpl\n"
                          "def mmip_register_reports(register):\n    raise KeyboardInterrupt\n",
                          ".py:4: raised KeyboardInterrupt in mmip_register_reports() without a Ctrl-C"),
}


def test_plugins_that_exit_or_interrupt_are_failed_plugins_and_commands_still_work(tmp_path):
    root = tmp_path / "site"
    for name, (code, _) in HOSTILE.items():
        _install(root, f"mmip-hostile-{name}", f"hostile-{name}", code)
    proc = _mmip(["plugins"], path_first=(root,), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    rows = {r[2]: r for r in _rows(proc.stdout)}
    for name, (_, said) in HOSTILE.items():
        row = rows.get(f"mmip-hostile-{name}")
        assert row is not None and row[4].startswith("error: ") and said in row[4], (name, proc.stdout)
        assert f"mmipcol_mmip_hostile_{name.replace('-', '_')}.py" in row[4], row
    want = f"mmip plugins: {len(HOSTILE)} plugin problem(s); the others work"
    assert _only_line(proc.stderr, "plugin problem") == want
    assert "Traceback" not in proc.stderr
    # every other command still runs and writes its result
    out = tmp_path / "sim.h5"
    sim = _mmip(["simulate", "phantom", "-o", str(out), "--n", "32", "--probe-size", "16", "--step", "8"],
                path_first=(root,), cwd=tmp_path)
    assert sim.returncode == 0 and out.is_file(), sim.stdout + sim.stderr
    assert sim.stdout.startswith(f"wrote {out}: case phantom"), sim.stdout
    assert "Traceback" not in sim.stderr


def test_a_plugin_that_prints_keeps_plugins_json_pure(tmp_path):
    code = ("print('hello from the plugin at import')\nfrom multimodal_ip import hookimpl\n"
            "def solve(problem, x0, **options):\n    raise NotImplementedError\n"
            "@hookimpl\ndef mmip_register_solvers(register):\n    print('hello from the hook')\n"
            "    register('chatty', solve)\n")
    root = _install(tmp_path / "c", "mmip-chatty", "chatty", code)
    proc = _mmip(["plugins", "--json"], path_first=(root,), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(proc.stdout)  # pure JSON
    assert {"kind": "solver", "name": "chatty", "dist": "mmip-chatty", "version": "0.1", "status": "ok",
            "error": ""} in rows
    assert proc.stderr.splitlines() == ["hello from the plugin at import", "hello from the hook"]


def test_a_real_ctrl_c_still_interrupts_plugin_loading():
    """Only a KeyboardInterrupt raised by a SIGINT received meanwhile propagates; the plugin's own is returned."""
    if not callable(signal.getsignal(signal.SIGINT)):
        pytest.skip("SIGINT is ignored in this process")
    before = signal.getsignal(signal.SIGINT)

    def ctrl_c():
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10**7):  # the handler runs at the next bytecode
            pass
        return "not interrupted"

    with pytest.raises(KeyboardInterrupt):
        plugins._run_plugin_code(ctrl_c)
    assert signal.getsignal(signal.SIGINT) is before  # handler restored

    def own():
        raise KeyboardInterrupt

    value, exc = plugins._run_plugin_code(own)
    assert value is None and isinstance(exc, KeyboardInterrupt)
    assert plugins._run_plugin_code(lambda: sys.exit(4))[1].code == 4
    assert signal.getsignal(signal.SIGINT) is before


def test_a_real_ctrl_c_during_plugin_import_is_not_a_plugin_failure(tmp_path):
    code = "import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(30)\n"
    root = _install(tmp_path / "k", "mmip-ctrlc", "ctrlc", code)
    proc = _mmip(["plugins"], path_first=(root,), cwd=tmp_path)
    assert proc.returncode in (130, -signal.SIGINT), proc.stdout + proc.stderr  # interrupted, not "exit 2"
    assert "mmip-ctrlc" not in proc.stdout


# ---- issue 36 item 11: a misspelled MMIP_DISABLE_PLUGINS name ---------------------------------------------------
@pytest.mark.parametrize(("disable", "closest"), [
    ("ptychograhpy", "ptychography"),
    ("mmip-ptychograhpy:ptychography", "mmip-ptychography:ptychography"),
    ("multimodal_ip.solvers.lbgfs", "multimodal_ip.solvers.lbfgs"),
])
def test_a_misspelled_disable_name_gets_one_warning_line(tmp_path, disable, closest):
    proc = _mmip(["plugins"], disable=f"fluorescence,{disable}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [
        f"mmip: warning: MMIP_DISABLE_PLUGINS names {disable!r}, which is no installed plugin (closest: {closest!r}); "
        "it blocks nothing"]
    rows = _rows(proc.stdout)
    assert ["plugin", "fluorescence", "mmip-fluorescence", "0.1.0", "blocked"] in rows, proc.stdout
    assert ["modality", "ptychography", "mmip-ptychography", "0.1.0", "ok"] in rows, proc.stdout


def test_known_disable_names_give_no_warning(tmp_path):
    proc = _mmip(["plugins"], disable="multimodal_ip.regularizers, mmip-paper:paper ,toy", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    rows = _rows(proc.stdout)
    assert not [r for r in rows if r[0] == "regularizer"], proc.stdout
    assert [r for r in rows if r[2] in ("mmip-paper", "mmip-toy")] == [
        ["plugin", "paper", "mmip-paper", "0.1.0", "blocked"], ["plugin", "toy", "mmip-toy", "0.1.0", "blocked"]]


def test_run_plugin_code_isolates_every_exit_in_process(capsys):
    def generator_exit():
        raise GeneratorExit

    for raising, kind in ((lambda: sys.exit(0), SystemExit), (generator_exit, GeneratorExit),
                          (lambda: textwrap.dedent(), TypeError)):
        value, exc = plugins._run_plugin_code(raising)
        assert value is None and type(exc) is kind, raising
    assert plugins._run_plugin_code(lambda: print("out") or 7) == (7, None)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "out\n"
