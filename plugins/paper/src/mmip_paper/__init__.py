"""The paper's simulated cases (arXiv 2511.02153): phantoms, probe, scans, noise."""

__all__ = ["CASES", "simulate", "poisson_noise", "band_limited_spectra"]

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # type checkers see the names; at run time __getattr__ imports them on first use
    from .cases import CASES, band_limited_spectra, poisson_noise, simulate

#: where each public name lives, imported on first use: the plugin's entry module loads without the numerics
#: (``mmip plugins`` imports no pylops or scipy: docs/architecture.md, "Start-up time")
_LAZY = {"CASES": "cases", "band_limited_spectra": "cases", "poisson_noise": "cases", "simulate": "cases"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
