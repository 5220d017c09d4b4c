"""Exception hierarchy: each error is also the builtin a caller would expect."""

__all__ = [
    "MultimodalIPError",
    "ShapeError",
    "DtypeError",
    "UnknownVariableError",
    "UnknownPluginError",
    "PluginLoadError",
    "ConformanceError",
    "DataError",
    "ConfigError",
    "SolverError",
    "EXIT_CODES",
    "exit_code",
    "one_line",
]

import re

#: characters a terminal acts on (C0/C1 controls, DEL, bidirectional overrides): shown escaped in messages
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def one_line(text) -> str:
    """``text`` on one line, whitespace runs (newlines of HDF5's or a parser's own messages) as single spaces, and
    characters a terminal would act on (an escape sequence in a file or dataset name) escaped as ``\\x1b``.

    Parameters
    ----------
    text : :obj:`str` or :obj:`object`
        A message, or anything :obj:`str` can write (an exception).

    Returns
    -------
    line : :obj:`str`
        The message on one line, safe to print to a terminal.
    """
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                       " ".join(str(text).split()))


#: Exit status of every ``mmip`` subcommand (README, "Exit codes").
EXIT_CODES = {
    0: "success (a solve ended converged, maxiter or max_time)",
    1: "internal error: a bug; one line on stderr, the traceback in the log file it names",
    2: "bad input: a file, dataset, flag, run file or plugin is invalid; one line names it; nothing was written",
    3: "the solve stalled (no acceptable step); the result is written; --accept-stall makes this 0",
    4: "the solve failed (objective or gradient not finite); the result is written for inspection",
    130: "interrupted (Ctrl-C / SIGINT / SIGTERM); a checkpoint written before the signal stays consistent",
}


def exit_code(status: str, accept_stall: bool = False) -> int:
    """The exit status for a solver's ``Result.status``.

    Parameters
    ----------
    status : :obj:`str`
        The result's status (``converged``, ``maxiter``, ``stalled``, ``failed``, ...).
    accept_stall : :obj:`bool`, optional
        Count ``stalled`` as success (``--accept-stall``).

    Returns
    -------
    code : :obj:`int`
        ``0``, ``3`` for a stall, ``4`` for a failure (:data:`EXIT_CODES`).
    """
    if status == "stalled":
        return 0 if accept_stall else 3
    if status == "failed":
        return 4
    return 0


class MultimodalIPError(Exception):
    """Base class of every error raised by multimodal_ip."""


class ShapeError(MultimodalIPError, ValueError):
    """An array does not have the shape an operator, variable or file expects."""


class DtypeError(MultimodalIPError, TypeError):
    """An array does not have the dtype an operator, variable or file expects."""


class UnknownVariableError(MultimodalIPError, KeyError):
    """A variable name is not part of the :class:`~multimodal_ip.VariableSpace`."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class UnknownPluginError(MultimodalIPError, LookupError):
    """No modality, solver, regularizer or importer is registered under a name."""


class PluginLoadError(MultimodalIPError, RuntimeError):
    """A plugin failed to import or to register, or two plugins claim one name."""


class ConformanceError(MultimodalIPError, AssertionError):
    """An operator, Jacobian or gradient fails a conformance check (adjoint, Taylor)."""


class DataError(MultimodalIPError, ValueError):
    """A data file is missing, corrupt, or holds values that break the schema."""


class ConfigError(MultimodalIPError, ValueError):
    """A run configuration (flag or TOML value) is invalid."""


class SolverError(MultimodalIPError, RuntimeError):
    """A solver cannot run on a problem (missing capability) or diverged (NaN)."""
