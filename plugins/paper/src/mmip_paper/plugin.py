"""Registers the paper's simulated cases for ``mmip simulate``."""

from multimodal_ip import hookimpl

from .cases import CASES, simulate


@hookimpl
def mmip_register_simulations(register):
    for case in CASES:
        register(case, lambda _case=case, **kw: simulate(_case, **kw))
