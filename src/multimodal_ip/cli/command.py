"""What a command of ``mmip`` is: built-in ones (one module each in this package) and those plugins add through
the ``mmip_register_commands`` hook have the same shape."""

__all__ = ["Command"]

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """One ``mmip <name>`` command.

    Parameters
    ----------
    help : :obj:`str`
        Its one line in ``mmip --help``.
    add_arguments : callable
        ``add_arguments(parser)`` adds its arguments to its own :mod:`argparse` parser (usage errors are one line,
        exit 2); :func:`~multimodal_ip.cli.common.add_run_flags` adds the flags of a run (``--solver``, ...).
    run : callable
        ``run(args) -> int``, the exit code; bad input raises a :class:`~multimodal_ip.errors.MultimodalIPError`
        (one line, exit 2).
    folder_files : :obj:`tuple` of :obj:`str`, optional
        The files it writes into the folder ``-o`` names; each is checked like ``-o`` before any work
        (:func:`~multimodal_ip.cli.common.check_folder`). Empty: ``-o``, if any, names a file.
    ranks : callable, optional
        ``ranks(args)``: the MPI communicator its run joins (``None``: one process). On MPI ranks the check of ``-o``
        before ``run`` ends in an agreement (:func:`~multimodal_ip.distributed.agree`), so that a folder only one
        rank cannot write ends every rank; ``run`` agrees on its own work before each collective likewise
        (docs/performance.md, "A rank that fails alone").
    """

    help: str
    add_arguments: Callable
    run: Callable[..., int]
    folder_files: tuple = ()
    ranks: Callable | None = None
