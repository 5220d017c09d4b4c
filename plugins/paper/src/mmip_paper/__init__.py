"""The paper's simulated cases (arXiv 2511.02153): phantoms, probe, scans, noise."""

__all__ = ["CASES", "simulate", "poisson_noise", "band_limited_spectra"]

from typing import TYPE_CHECKING

from multimodal_ip._lazy import lazy_exports

if TYPE_CHECKING:  # type checkers see the names; at run time __getattr__ imports them on first use
    from .cases import CASES, band_limited_spectra, poisson_noise, simulate

#: where each public name lives, imported on first use: the plugin's entry module loads without the numerics
#: (``mmip plugins`` imports no pylops or scipy: docs/architecture.md, "Start-up time")
_LAZY = {"CASES": "cases", "band_limited_spectra": "cases", "poisson_noise": "cases", "simulate": "cases"}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
