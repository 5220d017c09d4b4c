"""The ``mmip`` command: plugins, simulate, reconstruct, compare, tune, report, import, and the commands plugins add
(``mmip_register_commands``; ``hessian`` by mmip-paper).

One module per command, each a :class:`~multimodal_ip.cli.command.Command` (its help line, ``add_arguments``,
``run``); :mod:`.parser` lists the built-in ones, :mod:`.common` holds what they share, :mod:`.program` runs one.

Exit codes (:data:`~multimodal_ip.errors.EXIT_CODES`): 0 success, 1 internal error (one line, the traceback in a
log file), 2 bad input (one line naming file/dataset/flag), 3 stalled solve, 4 failed solve, 130 interrupted.
"""

__all__ = ["main", "build_parser", "Command"]

from .command import Command
from .common import _refit as _refit  # the refit of --stop validation and tune --refit (docs/validation.md)
from .common import _refit_config as _refit_config
from .common import _regularizers as _regularizers
from .parser import build_parser
from .program import main
