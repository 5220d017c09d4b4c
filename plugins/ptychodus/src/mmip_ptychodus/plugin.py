"""Registers the ``ptychodus`` importer (``mmip import --ptychodus FILE``); ptychodus is imported only when it runs."""

from multimodal_ip import hookimpl


@hookimpl
def mmip_register_importers(register):
    from .importer import PtychodusImporter

    register("ptychodus", PtychodusImporter())
