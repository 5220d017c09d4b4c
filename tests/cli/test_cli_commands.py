"""The commands of ``mmip``: one module per built-in command, and those plugins add through
``mmip_register_commands`` (``hessian`` by mmip-paper)."""

import subprocess
import sys
from pathlib import Path

import pytest

from multimodal_ip import hookimpl, plugins
from multimodal_ip.cli import Command, build_parser, main
from multimodal_ip.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _greet_arguments(parser) -> None:
    parser.add_argument("who")
    parser.add_argument("--times", type=int, default=1)
    parser.add_argument("-o", "--output")


def _greet(args) -> int:
    from multimodal_ip.cli.common import check_folder

    if args.times < 1:
        msg = f"--times must be >= 1, got {args.times}"
        raise ConfigError(msg)
    for _ in range(args.times):
        print(f"hello {args.who}")
    if args.output:
        check_folder(args, [])
        Path(args.output).mkdir()
        (Path(args.output) / "greeting.txt").write_text(f"hello {args.who}\n")
    return 0


GREET = Command(help="say hello (a test plugin's command)", add_arguments=_greet_arguments, run=_greet,
                folder_files=("greeting.txt",))


class Greeter:
    @staticmethod
    @hookimpl
    def mmip_register_commands(register):
        register("greet", GREET)


class Impostor:
    @staticmethod
    @hookimpl
    def mmip_register_commands(register):
        register("simulate", GREET)


class SecondGreeter:
    @staticmethod
    @hookimpl
    def mmip_register_commands(register):
        register("greet", GREET)


@pytest.fixture(autouse=True)
def _fresh_registry():
    yield
    plugins.reset()


def _with_plugins(monkeypatch, *extra):
    """The process-wide registry with the plugins ``extra`` added (undone, and the cache reset, after the test)."""
    real = plugins.build_plugin_manager
    monkeypatch.setattr(plugins, "build_plugin_manager",
                        lambda extra_plugins=(), load_entry_points=True: real((*extra_plugins, *extra)))
    plugins.reset()


def test_a_plugin_adds_a_command(monkeypatch, capsys, tmp_path):
    _with_plugins(monkeypatch, Greeter)
    with pytest.raises(SystemExit) as exc:
        main(["greet", "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and out.startswith("usage: mmip greet") and "--times" in out
    assert main(["greet", "world", "--times", "2"]) == 0
    assert capsys.readouterr().out == "hello world\nhello world\n"
    assert main(["greet", "world", "--times", "0"]) == 2  # its bad input: one line, exit 2, like a built-in's
    assert capsys.readouterr().err == "mmip greet: error: --times must be >= 1, got 0\n"
    with pytest.raises(SystemExit) as exc:
        main(["greet"])  # a usage error: one line too
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("mmip greet: error: ")
    # its -o is a folder holding greeting.txt: checked like a built-in command's before any work
    assert main(["greet", "world", "-o", str(tmp_path / "g")]) == 0
    assert (tmp_path / "g" / "greeting.txt").read_text() == "hello world\n"
    assert build_parser(with_plugins=True).parse_args(["greet", "w"]).folder_files == ("greeting.txt",)
    assert main(["plugins"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["command", "greet", "multimodal_ip"] == rows[[r[:2] for r in rows].index(["command", "greet"])][:3]


def test_a_command_named_like_a_built_in_is_refused_in_one_line(monkeypatch, capsys):
    _with_plugins(monkeypatch, Greeter, Impostor)
    assert main(["plugins"]) == 2
    captured = capsys.readouterr()
    row = next(line for line in captured.out.splitlines() if line.startswith("command") and " simulate " in line)
    assert "error: command 'simulate' of plugin 'Impostor'" in row
    assert "clashes with the built-in `mmip simulate`: refused" in row
    assert captured.err == "mmip plugins: 1 plugin problem(s); the others work\n"
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])  # still the built-in command
    assert "cases:" in capsys.readouterr().out
    assert main(["greet", "world"]) == 0  # and the plugin's other commands still work
    assert capsys.readouterr().out == "hello world\n"


def test_a_command_claimed_by_two_plugins_names_both(monkeypatch, capsys):
    _with_plugins(monkeypatch, Greeter, SecondGreeter)
    with pytest.raises(SystemExit) as exc:
        main(["greet", "world"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.splitlines()) == 1
    assert "command 'greet' is claimed by" in err and "Greeter" in err and "SecondGreeter" in err


def test_each_built_in_command_is_one_module():
    from multimodal_ip.cli import parser

    folder = ROOT / "src/multimodal_ip/cli"
    for name, command in parser.BUILTIN.items():
        module = sys.modules[command.run.__module__]
        assert module.COMMAND is command and Path(module.__file__).stem in (name, f"{name}_")
    assert "hessian" not in parser.BUILTIN  # the paper's study is mmip-paper's command
    too_long = {p.name: n for p in folder.glob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not too_long


def test_the_paper_hessian_command_comes_from_its_plugin():
    from mmip_paper.commands import HESSIAN

    from multimodal_ip.cli.parser import plugin_commands

    assert plugin_commands()[0]["hessian"] is HESSIAN
    proc = subprocess.run([sys.executable, "-m", "multimodal_ip.cli", "hessian", "--help"], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0 and "--dense-max" in proc.stdout and "--regularizer" in proc.stdout, proc.stderr
