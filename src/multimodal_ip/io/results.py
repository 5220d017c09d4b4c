"""Result and checkpoint files: ``/results/variables``, ``/results/history``, configuration and versions."""

__all__ = ["save_result", "load_result", "save_checkpoint", "load_checkpoint", "versions"]

import json
from importlib import metadata
from pathlib import Path

import h5py
import numpy as np

from ..backend import to_numpy
from ..errors import DataError, one_line
from .dataset import FORMAT, _nbytes_of, _str, atomic_h5, check_attrs, open_h5, read_group


def versions() -> dict:
    """Installed versions of this package, its plugin distributions and the main dependencies.

    Returns
    -------
    versions : :obj:`dict`
        ``{distribution: version}``, for those installed (what a result file records).
    """
    out = {}
    plugins = sorted({ep.dist.name for ep in metadata.entry_points(group="multimodal_ip") if ep.dist is not None})
    for dist in ("multimodal_ip", *plugins, "numpy", "scipy", "pylops", "pyproximal", "h5py", "pluggy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def save_result(path, arrays: dict, history, config: dict, status="", message="", extra: dict | None = None):
    """Write a result file atomically: final variables, history table, configuration (JSON), versions.

    Parameters
    ----------
    path : :obj:`str` or :obj:`pathlib.Path`
        The HDF5 file to write (replaced only once the new one is complete).
    arrays : :obj:`dict`
        ``{variable: array}``, the final values (numpy or cupy), written to ``/results/variables``.
    history : :class:`~multimodal_ip.solvers.History`
        The per-iteration table, written to ``/results/history``.
    config : :obj:`dict`
        The run's configuration, stored as JSON.
    status, message : :obj:`str`, optional
        The solver's status (:data:`~multimodal_ip.solvers.STATUSES`) and its message.
    extra : :obj:`dict`, optional
        Further datasets of ``/results`` (e.g. ``start_<name>`` of refined calibration unknowns).
    """
    with atomic_h5(path, size_hint=_nbytes_of([*arrays.values(), *(extra or {}).values()])) as f:
        g = f.create_group("results")
        g.attrs["status"] = status
        g.attrs["message"] = message
        g.attrs["config"] = json.dumps(config, default=str)
        g.attrs["versions"] = json.dumps(versions())
        gv = g.create_group("variables")
        for k, a in arrays.items():
            gv.create_dataset(k, data=to_numpy(a))
        gh = g.create_group("history")
        for k, col in history.as_arrays().items():
            gh.create_dataset(k, data=np.asarray(col))
        for k, v in (extra or {}).items():
            g.create_dataset(k, data=np.asarray(v))


def _results_group(path, f) -> h5py.Group:
    """The file's ``/results`` group, a hard link of this file; else "not a multimodal_ip result file"."""
    if _str(f.attrs.get("format", "")) != FORMAT or "results" not in f \
            or not isinstance(f.get("results", getlink=True), h5py.HardLink) \
            or not isinstance(f["results"], h5py.Group):
        msg = f"{path}: not a multimodal_ip result file (no /results group in the file)"
        raise DataError(msg)
    return f["results"]


def _json_attrs(path, g) -> tuple:
    """``(config, versions)``: the JSON attributes of ``/results``."""
    try:
        return json.loads(_str(g.attrs.get("config", "{}"))), json.loads(_str(g.attrs.get("versions", "{}")))
    except (json.JSONDecodeError, RecursionError, UnicodeDecodeError) as exc:
        msg = f"{path}:/results: attribute config/versions is not valid JSON ({one_line(exc)[:100]})"
        raise DataError(msg) from None


def _check_subgroups(path, g) -> None:
    for sub in ("variables", "history"):
        if not isinstance(g.get(sub, getlink=True), h5py.HardLink) or not isinstance(g[sub], h5py.Group):
            msg = f"{path}:/results/{sub}: missing, or not a group of this file"
            raise DataError(msg)


def _check_history(path, history: dict) -> None:
    """Numeric 1-D columns of one length >= 1 (one row per iteration)."""
    lengths = {k: np.shape(v) for k, v in history.items()}
    rows = {s[0] for s in lengths.values() if len(s) == 1}
    if not history or len(rows) != 1 or any(len(s) != 1 for s in lengths.values()) or rows == {0} \
            or any(np.asarray(v).dtype.kind not in "fiub" for v in history.values()):
        shown = one_line(", ".join(f"{k}{list(s)}" for k, s in lengths.items()))[:200] or "no columns"
        msg = (f"{path}:/results/history: expected numeric columns of one length >= 1 (one row per iteration), "
               f"got {shown}")
        raise DataError(msg)


def load_result(path) -> dict:
    """Read a result file written by :func:`save_result`.

    Parameters
    ----------
    path : :obj:`str` or :obj:`pathlib.Path`
        The result file.

    Returns
    -------
    :obj:`dict`
        ``{"variables", "history", "config", "versions", "status", "message", "extra"}`` (``extra``: other datasets
        of ``/results``, e.g. the start values ``start_<name>`` of refined calibration unknowns).
    """
    from ..safety import MemoryBudget

    path = Path(path)
    budget = MemoryBudget()
    with open_h5(path) as f:
        check_attrs(path, f, budget)  # attribute sizes within the budget before any is read
        g = _results_group(path, f)
        check_attrs(path, g, budget)
        config, vers = _json_attrs(path, g)
        _check_subgroups(path, g)
        history = read_group(path, g["history"], "/results/history/", budget)
        _check_history(path, history)
        return {
            "variables": read_group(path, g["variables"], "/results/variables/", budget),
            "history": history,
            "config": config,
            "versions": vers,
            "status": _str(g.attrs.get("status", "")),
            "message": _str(g.attrs.get("message", "")),
            "extra": read_group(path, g, "/results/", budget, skip_groups=True),
        }


def save_checkpoint(path, state: dict, config: dict, fingerprint: str = "") -> None:
    """Solver state (arrays, scalars, history), the run configuration and the input's fingerprint
    (:func:`~multimodal_ip.safety.file_fingerprint`), written atomically.

    Parameters
    ----------
    path : :obj:`str` or :obj:`pathlib.Path`
        Checkpoint file.
    state : :obj:`dict`
        A solver's ``state_dict()``: ``solver``, ``iteration``, ``elapsed``, ``scalars``, ``arrays``, ``history``.
    config : :obj:`dict`
        The run configuration (written as JSON).
    fingerprint : :obj:`str`, optional
        SHA-256 of the input file.

    Raises
    ------
    DataError
        The file cannot be written.
    """
    with atomic_h5(path, size_hint=_nbytes_of(state.get("arrays", {}).values())) as f:
        g = f.create_group("checkpoint")
        g.attrs["fingerprint"] = fingerprint
        g.attrs["solver"] = state["solver"]
        g.attrs["iteration"] = state["iteration"]
        g.attrs["elapsed"] = state["elapsed"]
        g.attrs["scalars"] = json.dumps(state["scalars"])
        g.attrs["config"] = json.dumps(config, default=str)
        ga = g.create_group("arrays")
        for k, a in state["arrays"].items():
            if hasattr(a, "ndim") and not isinstance(a, np.ndarray) and a.ndim == 2 and len(a):
                rows = ga.create_dataset(k, shape=a.shape, dtype=a.dtype)  # a solver's history, one row at a time
                for i, row in enumerate(a):
                    rows[i] = row
            else:
                ga.create_dataset(k, data=np.asarray(a))
        gh = g.create_group("history")
        for k, a in state["history"].items():
            gh.create_dataset(k, data=a)


def load_checkpoint(path):
    """``(state, config)`` from a checkpoint file, read through the safe reader (no links leaving the file,
    sizes within the memory budget, finite arrays); ``config["fingerprint"]`` is the input's fingerprint.

    Parameters
    ----------
    path : :obj:`str` or :obj:`pathlib.Path`
        Checkpoint file written by :func:`save_checkpoint`.

    Returns
    -------
    state : :obj:`dict`
        Solver state, for ``resume_state``.
    config : :obj:`dict`
        The run configuration, with ``fingerprint``.

    Raises
    ------
    DataError
        The file is not a readable checkpoint, or is over the memory budget.
    """
    from ..safety import MemoryBudget

    budget = MemoryBudget()
    with open_h5(path) as f:
        try:
            if not isinstance(f.get("checkpoint", getlink=True), h5py.HardLink):
                msg = "no /checkpoint group in the file"
                raise KeyError(msg)
            g = f["checkpoint"]
            if not isinstance(g, h5py.Group):
                msg = "/checkpoint is not a group"
                raise KeyError(msg)
            check_attrs(path, g, budget)  # attribute sizes within the budget before any is read
            state = {
                "solver": _str(g.attrs["solver"]),
                "iteration": int(g.attrs["iteration"]),
                "elapsed": float(g.attrs["elapsed"]),
                "scalars": json.loads(_str(g.attrs["scalars"])),
                "arrays": read_group(path, g["arrays"], "/checkpoint/arrays/", budget, finite=True),
                "history": read_group(path, g["history"], "/checkpoint/history/", budget),
            }
            config = json.loads(_str(g.attrs["config"]))
            if not isinstance(config, dict) or not isinstance(state["scalars"], dict) or "x" not in state["arrays"]:
                msg = "configuration, scalars or x missing"
                raise KeyError(msg)
            config["fingerprint"] = _str(g.attrs.get("fingerprint", ""))
            return state, config
        except (OSError, KeyError, TypeError, ValueError, OverflowError, RecursionError) as exc:  # inf iteration
            msg = f"{path}: not a readable checkpoint ({one_line(exc)[:200]})"
            raise DataError(msg) from None
