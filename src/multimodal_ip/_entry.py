"""The ``mmip`` program (the console script and ``python -m multimodal_ip``): a Ctrl-C or SIGTERM while the command
line's modules load (numpy, the plugins: a few hundred milliseconds) ends it like one during a run, with exit 130 and
one line, not a traceback or a kill (143)."""

__all__ = ["main", "finish"]

import signal
import sys


def _interrupt(signum, frame):  # pragma: no cover - exercised by the signal tests in a subprocess
    raise KeyboardInterrupt


def main() -> int:
    """Load :mod:`multimodal_ip.cli` with SIGTERM raising ``KeyboardInterrupt`` (a signal ignored by whoever
    started the program stays ignored), then run :func:`multimodal_ip.cli.main` on the command line."""
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        from .cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("mmip: interrupted\n")
        _exit_interrupted()
    return finish(run())


def finish(code: int) -> int:
    """``code``, the exit status of :func:`multimodal_ip.cli.main` run as the program; 130 (interrupted) ends the
    process at once (below)."""
    if code == 130:
        _exit_interrupted()
    return code


def _exit_interrupted():
    """End the program with 130 now: every file is closed (the command's blocks have exited), and a storm of
    signals during the interpreter's shutdown would otherwise turn the status into a kill by the signal (SIGTERM:
    143; SIGINT: the interpreter re-raises it once a ``KeyboardInterrupt`` was seen, -2)."""
    import os

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more can be said
            pass
    os._exit(130)
