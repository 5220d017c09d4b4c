"""The memory plan of the commands that run no solver (``mmip report``, ``export``, ``import``): before the first
array is read, the bytes each command will hold (the result file's arrays, the run's data, the copies the command
makes, the program) are summed from the files' structure and the command either goes on unchanged or refuses in one
line naming the files, the need and the budget (docs/performance.md, "The budget in every command")."""

__all__ = ["ReadPlan"]

import os

import h5py
import numpy as np

from ..errors import ConfigError
from ..memory import ENV_MEMORY, memory_budget_bytes
from ..run_budget import PROGRAM_MARGIN, RunEstimate


class _Planned(Exception):  # noqa: N818 - not an error: ends the loader's structure pass at its plan
    """Raised by the plan handed to ``load_dataset``: its structure is checked and its read sized, nothing read."""


class ReadPlan:
    """The parts of a command's peak memory, checked against the budget before any array is read.

    Parameters
    ----------
    command : :obj:`str`
        What the refusal names, e.g. ``"reading r.h5 and d.h5"``.
    """

    def __init__(self, command: str):
        self.command = command
        self.parts: dict = {}

    def result(self, path) -> dict:
        """Add the arrays of a result file (``/results``: variables, history, extra) from its structure.

        Parameters
        ----------
        path : :obj:`str` or :obj:`pathlib.Path`
            A result file of ``mmip reconstruct`` (checked as :func:`~multimodal_ip.io.load_result` does).

        Returns
        -------
        info : :obj:`dict`
            ``{"config", "variables", "shapes", "extra"}``: its configuration, ``{name: bytes}`` and ``{name:
            (shape, dtype)}`` of its variables and the names of the other datasets of ``/results`` (nothing of them
            read).
        """
        from ..io._reader import check_attrs, open_h5
        from ..io.results import _check_subgroups, _json_attrs, _results_group
        from ..safety import MemoryBudget, walk_group

        budget = MemoryBudget()
        with open_h5(path) as f:
            check_attrs(path, f, budget)  # attribute sizes within the budget before any is read, as load_result
            g = _results_group(path, f)
            check_attrs(path, g, budget)
            config, _ = _json_attrs(path, g)
            _check_subgroups(path, g)
            sizes = {sub: {k: _bytes(d) for k, d in walk_group(path, g[sub], f"/results/{sub}/")}
                     for sub in ("variables", "history")}
            shapes = {k: (d.shape, d.dtype) for k, d in walk_group(path, g["variables"], "/results/variables/")
                      if isinstance(d, h5py.Dataset)}
            extra = {k: _bytes(d) for k, d in walk_group(path, g, "/results/") if isinstance(d, h5py.Dataset)}
        self.parts["result"] = self.parts.get("result", 0) + sum(sum(s.values()) for s in (*sizes.values(), extra))
        return {"config": config, "variables": sizes["variables"], "shapes": shapes, "extra": list(extra)}

    def dataset(self, path, terms=None, allow_external=False) -> None:
        """Add the arrays :func:`~multimodal_ip.io.load_dataset` will read of ``path`` (its structure checked, no
        term's or truth's array read: the sizes its ``plan`` is handed).

        Parameters
        ----------
        path : :obj:`str` or :obj:`pathlib.Path`
            The dataset file.
        terms : :obj:`list` of :obj:`str`, optional
            The terms to be read (default all).
        allow_external : :obj:`bool`, optional
            As for ``load_dataset``.
        """
        from ..io import load_dataset

        def plan(space, lazy, nbytes):
            self.parts["data"] = self.parts.get("data", 0) + int(nbytes)
            raise _Planned

        try:
            load_dataset(path, terms=terms if isinstance(terms, list) else None, allow_external=allow_external,
                         plan=plan)
        except _Planned:
            return

    def check(self) -> RunEstimate:
        """Refuse (one line) when the parts and the program exceed the budget.

        Returns
        -------
        :class:`~multimodal_ip.run_budget.RunEstimate`
            The estimate, within the budget.

        Raises
        ------
        ConfigError
            The estimate exceeds ``MMIP_MAX_MEMORY`` (else 80 % of the available memory): one line naming the
            files, the need by part and the least budget.
        """
        from ..run_budget import _resident_bytes

        explicit = bool(os.environ.get(ENV_MEMORY, "").strip())
        program = (_resident_bytes() if explicit else 0) + PROGRAM_MARGIN
        est = RunEstimate(memory_budget_bytes(), {"program": program, **self.parts})
        if not est.fits:
            where = f"{ENV_MEMORY}={os.environ[ENV_MEMORY].strip()}" if explicit else "80 % of the available memory"
            msg = (f"memory budget ({where}: {est.budget / 2**30:.2f} GiB) is too small: {self.command} needs "
                   f"{est.total / 2**30:.2f} GiB ({est.shown()} MiB); set {ENV_MEMORY} to at least "
                   f"{int(np.ceil(est.total / 2**20))}M")
            raise ConfigError(msg)
        return est


def _bytes(d) -> int:
    """Declared bytes of a dataset (0 for a group: ``load_result`` refuses it when it reads)."""
    if not isinstance(d, h5py.Dataset):
        return 0
    return int(np.prod(d.shape, dtype=np.float64)) * d.dtype.itemsize if d.shape else d.dtype.itemsize
