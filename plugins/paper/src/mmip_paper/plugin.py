"""Registers the paper's simulated cases for ``mmip simulate`` and its error column for ``mmip compare``."""

from multimodal_ip import hookimpl

from .cases import CASES, simulate
from .report import PaperReport


@hookimpl
def mmip_register_simulations(register):
    for case in CASES:
        register(case, lambda _case=case, **kw: simulate(_case, **kw))


@hookimpl
def mmip_register_reports(register):
    register("paper", PaperReport())
