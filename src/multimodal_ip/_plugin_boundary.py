"""The boundary around a plugin's code (:mod:`multimodal_ip.plugins`): its failure, ``SystemExit`` and own
``KeyboardInterrupt`` included, becomes one line naming where it was raised; only a real Ctrl-C interrupts."""

__all__ = ["run_plugin_code", "failure_line", "where_raised", "SigintWatch"]

import contextlib
import signal
import sys

from .errors import PluginLoadError, one_line


def _one_line(exc: BaseException) -> str:
    return one_line(f"{type(exc).__name__}: {exc}")


def where_raised(exc: BaseException) -> str:
    """``file:line: Type: message`` of where an exception was raised (the innermost frame outside the standard
    library, e.g. the plugin's line that called ``sys.exit`` or ``parser.parse_args``)."""
    import sysconfig
    import traceback

    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}: {_one_line(exc)}"
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return _one_line(exc)
    paths = sysconfig.get_paths()
    installed = (paths["purelib"], paths["platlib"])  # may lie under the stdlib folder (a system Python)
    inner = ([f for f in frames if f.filename.startswith(installed)
              or not f.filename.startswith((paths["stdlib"], "<frozen"))]
             or [f for f in frames if "importlib" not in f.filename] or frames)
    return f"{inner[-1].filename}:{inner[-1].lineno}: {_one_line(exc)}"


def failure_line(exc: BaseException, when: str) -> str:
    """One line for a plugin's failure ``when`` (``"at import"``, ``"in mmip_register_solvers()"``)."""
    if isinstance(exc, PluginLoadError):
        return str(exc)
    if isinstance(exc, SystemExit):
        where = where_raised(exc).rsplit(": SystemExit", 1)[0]
        return f"{where}: exited {when} (SystemExit: {exc.code!r}); a plugin must raise an exception, not exit"
    if isinstance(exc, KeyboardInterrupt):
        where = where_raised(exc).rsplit(": KeyboardInterrupt", 1)[0]
        return f"{where}: raised KeyboardInterrupt {when} without a Ctrl-C"
    return where_raised(exc)


class SigintWatch:
    """Tells a real Ctrl-C from a plugin's own ``raise KeyboardInterrupt``: while active, a SIGINT sets ``real``
    and then runs the handler that was there (Python's raises ``KeyboardInterrupt``). Where no handler can be set
    (not the main thread), every ``KeyboardInterrupt`` counts as real."""

    def __init__(self):
        self.real = False
        self.previous = None

    def __enter__(self):
        try:
            previous = signal.getsignal(signal.SIGINT)
            if callable(previous):  # SIG_IGN/SIG_DFL/None: no KeyboardInterrupt can come from a SIGINT
                signal.signal(signal.SIGINT, self._on_sigint)
                self.previous = previous
        except ValueError:  # not the main thread: cannot tell, so interrupt
            self.real = True
        return self

    def _on_sigint(self, signum, frame):
        self.real = True
        assert callable(self.previous)
        self.previous(signum, frame)

    def __exit__(self, *exc_info):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def run_plugin_code(fn):
    """``(fn(), None)``, or ``(None, exc)`` for whatever ``fn`` raised (``SystemExit`` and a plugin's own
    ``KeyboardInterrupt`` included); a ``KeyboardInterrupt`` from a real Ctrl-C is raised. The plugin's stdout goes
    to stderr meanwhile, so that ``mmip plugins --json`` stays JSON."""
    with SigintWatch() as watch, contextlib.redirect_stdout(sys.stderr):
        try:
            return fn(), None
        except BaseException as exc:  # noqa: BLE001 - the plugin boundary: a plugin's exit is its own failure
            if isinstance(exc, KeyboardInterrupt) and watch.real:
                raise
            return None, exc
