"""The ``mmip`` program: parse, run the command, and turn every outcome into an exit code and at most one line
(:data:`~multimodal_ip.errors.EXIT_CODES`); signals end it with 130."""

__all__ = ["main"]

import contextlib
import sys
import warnings
from pathlib import Path

from ..errors import ConfigError, MultimodalIPError
from ..errors import one_line as _one_line
from .common import _HELD


def _log_traceback(command) -> str:
    """Write the current exception's traceback to a log file; its path."""
    import os
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix=f"mmip-{command}-", suffix=".log")
    with os.fdopen(fd, "w") as fh:
        fh.write(traceback.format_exc())
    return path


#: characters the files written for an ``-o`` name add to it: the checkpoint (``.ckpt.h5``) and the temporaries
#: (``.<name>.<pid>.<machine>.<random>.tmp``, about 35), with room to spare
_DERIVED_NAME_CHARS = 64


def _check_name_lengths(output: str, probe: Path, folder: bool) -> None:
    """Refuse an ``-o`` whose names (or those derived from it: checkpoint, temporaries) are longer than the file
    system under ``probe`` allows."""
    import os

    try:
        name_max = os.pathconf(probe, "PC_NAME_MAX")
        path_max = os.pathconf(probe, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    parts = Path(output).parts
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        n = len(os.fsencode(part))
        limit = name_max if folder or not last else name_max - _DERIVED_NAME_CHARS
        if n > limit:
            what = "the -o name" if last else "a folder name in -o"
            extra = "" if limit == name_max else (f" less {_DERIVED_NAME_CHARS} for the checkpoint and temporaries, "
                                                  f"so at most {limit}")
            msg = (f"{what} is {n} bytes long; this file system allows {name_max}{extra}: "
                   f"{part[:40]!r}...; choose a shorter name")
            raise ConfigError(msg)
    total = len(os.fsencode(os.path.abspath(output))) + _DERIVED_NAME_CHARS + (32 if folder else 0)
    if total > path_max:
        msg = f"-o {output[:40]!r}... is too long a path ({total} bytes with its derived files; at most {path_max})"
        raise ConfigError(msg)


def _check_output_path(args) -> None:
    """Refuse, before any work, an ``-o`` that could only fail or surprise when the result is written: a name (or
    the names derived from it) the file system cannot hold, an existing read-only output, a folder that cannot be
    written."""
    import os

    output = getattr(args, "output", None)
    if not isinstance(output, str) or not output or "\x00" in output:
        return  # empty names and NUL bytes: refused by check_outputs with their own messages
    path = Path(output)
    probe = path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    # a command whose -o is a folder (it declares the files it writes there) has no derived names beside it
    _check_name_lengths(output, probe, folder=bool(getattr(args, "folder_files", ())))
    with contextlib.suppress(OSError):  # a read-only result is kept: its owner made it so (README, Hostile inputs)
        mode = os.stat(path).st_mode
        if not mode & 0o200 or not os.access(path, os.W_OK):
            what = "write into" if path.is_dir() else "replace"
            msg = (f"refusing to {what} {output}: the {'folder' if path.is_dir() else 'file'} exists and is "
                   "read-only (make it writable, e.g. chmod u+w, or choose another -o)")
            raise ConfigError(msg)
    if probe.is_dir() and not os.access(probe, os.W_OK | os.X_OK):
        msg = f"cannot write {output}: the folder {probe} is not writable"
        raise ConfigError(msg)


def _install_interrupts(program: bool) -> tuple[dict, list]:
    """SIGTERM (and SIGINT, where Python's own handler is set) raise one ``KeyboardInterrupt``; later signals of a
    storm are ignored while the run ends with 130. A signal the process started with ignored (``nohup``, a shell's
    background job) stays ignored. Returns the previous handlers and the list a signal is recorded in."""
    import signal

    caught: list = []

    def on_signal(signum, frame):  # pragma: no cover - exercised by the signal tests in a subprocess
        if caught:  # the run is already ending (exit 130): a storm of signals changes nothing
            return
        caught.append(signum)
        raise KeyboardInterrupt

    previous: dict = {}
    with contextlib.suppress(ValueError):  # not in the main thread (embedded use): keep the host's handlers
        for s in (signal.SIGTERM, signal.SIGINT):
            current = signal.getsignal(s)
            if current is signal.SIG_IGN or (s == signal.SIGINT and current is not signal.default_int_handler
                                             and not program):
                continue  # ignored by whoever started us, or a host's own Ctrl-C handler: leave it
            previous[s] = signal.signal(s, on_signal)
    return previous, caught


def _end_interrupts(previous: dict, interrupted: bool, program: bool) -> None:
    """Put the handlers back; a program that was interrupted ignores further signals instead (Python resets its
    handlers to the defaults while it shuts down, and a storm's next SIGTERM would then kill it: exit 143)."""
    import signal

    with contextlib.suppress(ValueError):
        for s, h in previous.items():
            signal.signal(s, signal.SIG_IGN if interrupted and program else h)


def main(argv=None) -> int:
    """The ``mmip`` command. ``argv=None``: the program's own command line (signals then end it with 130 however
    many arrive); a list: a call from Python, whose signal handlers are put back afterwards."""
    program = argv is None
    previous, caught = _install_interrupts(program)
    command = "mmip"
    interrupted = False
    outer, _HELD.lines = _HELD.lines, []  # (a nested call, e.g. from a plugin, holds its own)
    try:
        from . import build_parser  # the package's, at each call: a test or a host may replace it

        args = build_parser().parse_args(argv)
        command = f"mmip {args.command}"
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = lambda message, *_a, **_k: _HELD.show(
                f"{command}: warning: {_one_line(message)}")
            comm = args.run_ranks(args) if getattr(args, "run_ranks", None) else None  # on MPI ranks: all agree
            if comm is None:
                _check_output_path(args)
            else:
                from ..distributed import agree

                agree(comm, _check_output_path, args)
            code = args.func(args)
        _HELD.release()
        return code
    except (MultimodalIPError, MemoryError) as exc:
        _HELD.lines = None  # refused: the error line alone (the warnings come back once the input is fixed)
        print(f"{command}: error: " + (_one_line(exc) if isinstance(exc, MultimodalIPError) else
                                       "out of memory (set MMIP_MAX_MEMORY lower, or use a smaller problem)"),
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        interrupted = True
        caught.append(0)  # a signal while this line is printed is part of the same interruption
        _HELD.release()
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug still gives one clean line; the traceback goes to a log
        _HELD.release()
        log = _log_traceback(command.removeprefix("mmip ") or "mmip")
        print(f"{command}: internal error: {_one_line(f'{type(exc).__name__}: {exc}')[:300]} "
              f"(traceback in {log}; please report it)", file=sys.stderr)
        return 1
    finally:
        _HELD.lines = outer
        _end_interrupts(previous, interrupted or bool(caught), program)
