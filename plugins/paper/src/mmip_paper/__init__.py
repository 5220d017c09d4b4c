"""The paper's simulated cases (arXiv 2511.02153): phantoms, probe, scans, noise."""

__all__ = ["CASES", "simulate", "poisson_noise"]

from .cases import CASES, poisson_noise, simulate
