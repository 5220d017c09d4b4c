"""Registers the paper's simulated cases for ``mmip simulate``, its error column for ``mmip compare`` and its
``mmip hessian`` study."""

from multimodal_ip import hookimpl

from .cases import CASES, simulate
from .report import PaperReport


class PaperCase:
    """One of the paper's cases for ``mmip simulate``; ``parameters`` become the command's flags."""

    #: ``{keyword: {"type", "help", optional "flag", "choices"}}``; ``list`` values are given comma-separated
    parameters = {
        "n": {"type": int, "help": "object size (pixels)"},
        "probe_size": {"type": int, "help": "probe window (pixels)"},
        "step": {"type": int, "help": "raster step (pixels)"},
        "n_elements": {"type": int, "help": "number of element maps"},
        "xrf_grid": {"type": str, "choices": ("full", "scan"), "help": "XRF at every pixel (full) or the scan"},
        "probe_error": {"type": float, "help": "write a probe whose defocus is off by this fraction (0.2)"},
        "position_jitter_px": {"type": float, "flag": "position-jitter",
                               "help": "true positions = raster + uniform jitter of +-this many pixels; the file "
                                       "keeps the raster"},
        "coupling": {"type": str, "help": "simulate Im z = sum a_e w_e: a0,a1,... or xraylib:<keV> (stored)"},
        "elements": {"type": list, "help": "element names of the maps, e.g. Fe,Zn,Cu (default E0,E1,...)"},
    }

    def __init__(self, case):
        self.case = case

    @property
    def help(self) -> str:
        """One line for ``mmip simulate --help``."""
        p = CASES[self.case]
        return (f"{p['objects']} objects {p['n']} x {p['n']} px, probe {p['probe_size']} px, step {p['step']} px, "
                f"{p['n_elements']} element(s), balance c {p['balance_c']:g}")

    def __call__(self, seed=0, noise=0.0, **overrides):
        return simulate(self.case, seed=seed, noise=noise, **overrides)


@hookimpl
def mmip_register_simulations(register):
    for case in CASES:
        register(case, PaperCase(case))


@hookimpl
def mmip_register_reports(register):
    register("paper", PaperReport())


@hookimpl
def mmip_register_commands(register):
    from .commands import HESSIAN

    register("hessian", HESSIAN)
