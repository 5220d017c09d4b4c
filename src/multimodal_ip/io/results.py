"""Result and checkpoint files: ``/results/variables``, ``/results/history``, configuration and versions."""

__all__ = ["save_result", "load_result", "save_checkpoint", "load_checkpoint", "versions"]

import json
from importlib import metadata
from pathlib import Path

import h5py
import numpy as np

from ..backend import to_numpy
from ..errors import DataError
from .dataset import FORMAT, _str, atomic_h5, open_h5


def versions() -> dict:
    out = {}
    for dist in ("multimodal_ip", "mmip-ptychography", "mmip-fluorescence", "mmip-paper", "numpy", "scipy",
                 "pylops", "pyproximal", "h5py", "pluggy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def save_result(path, arrays: dict, history, config: dict, status="", message="", extra: dict | None = None):
    """Write a result file atomically: final variables, history table, configuration (JSON), versions."""
    with atomic_h5(path) as f:
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


def load_result(path) -> dict:
    """Read a result file: ``{"variables", "history", "config", "versions", "status", "message", "extra"}``
    (``extra``: other datasets of ``/results``, e.g. the calibration's start values ``start_probe``)."""
    path = Path(path)
    with open_h5(path) as f:
        if _str(f.attrs.get("format", "")) != FORMAT or "results" not in f:
            msg = f"{path}: not a multimodal_ip result file (no /results group)"
            raise DataError(msg)
        g = f["results"]
        try:
            config = json.loads(_str(g.attrs.get("config", "{}")))
            vers = json.loads(_str(g.attrs.get("versions", "{}")))
        except json.JSONDecodeError as exc:
            msg = f"{path}:/results: attribute config/versions is not valid JSON ({exc})"
            raise DataError(msg) from None
        return {
            "variables": {k: d[()] for k, d in g["variables"].items()},
            "history": {k: d[()] for k, d in g["history"].items()},
            "config": config,
            "versions": vers,
            "status": _str(g.attrs.get("status", "")),
            "message": _str(g.attrs.get("message", "")),
            "extra": {k: d[()] for k, d in g.items() if k not in ("variables", "history")},
        }


def save_checkpoint(path, state: dict, config: dict) -> None:
    """Solver state (arrays, scalars, history) and the run configuration, written atomically."""
    with atomic_h5(path) as f:
        g = f.create_group("checkpoint")
        g.attrs["solver"] = state["solver"]
        g.attrs["iteration"] = state["iteration"]
        g.attrs["elapsed"] = state["elapsed"]
        g.attrs["scalars"] = json.dumps(state["scalars"])
        g.attrs["config"] = json.dumps(config, default=str)
        ga = g.create_group("arrays")
        for k, a in state["arrays"].items():
            ga.create_dataset(k, data=a)
        gh = g.create_group("history")
        for k, a in state["history"].items():
            gh.create_dataset(k, data=a)


def load_checkpoint(path):
    """``(state, config)`` from a checkpoint file."""
    try:
        with h5py.File(path, "r") as f:
            g = f["checkpoint"]
            state = {
                "solver": _str(g.attrs["solver"]),
                "iteration": int(g.attrs["iteration"]),
                "elapsed": float(g.attrs["elapsed"]),
                "scalars": json.loads(_str(g.attrs["scalars"])),
                "arrays": {k: d[()] for k, d in g["arrays"].items()},
                "history": {k: d[()] for k, d in g["history"].items()},
            }
            return state, json.loads(_str(g.attrs["config"]))
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        msg = f"{path}: not a readable checkpoint ({exc})"
        raise DataError(msg) from None
