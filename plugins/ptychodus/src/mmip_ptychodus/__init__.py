"""Any diffraction, position or probe file ptychodus reads, imported into multimodal_ip through ptychodus's own
readers (``mmip import --ptychodus FILE``); ptychodus is the extra ``mmip-ptychodus[ptychodus]``."""

__all__ = ["PtychodusImporter", "ptychodus_term"]

from typing import TYPE_CHECKING

from multimodal_ip._lazy import lazy_exports

if TYPE_CHECKING:  # type checkers see the names; at run time __getattr__ imports them on first use
    from .importer import PtychodusImporter
    from .mapping import ptychodus_term

#: where each public name lives, imported on first use: the plugin's entry module loads without the numerics
#: (``mmip plugins`` imports no pylops or scipy: docs/architecture.md, "Start-up time")
_LAZY = {"PtychodusImporter": "importer", "ptychodus_term": "mapping"}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
