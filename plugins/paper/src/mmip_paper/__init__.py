"""The paper's simulated cases (arXiv 2511.02153): phantoms, probe, scans, noise."""

__all__ = ["CASES", "simulate", "poisson_noise", "band_limited_spectra"]

from .cases import CASES, band_limited_spectra, poisson_noise, simulate
