"""``mmip import --ptychodus FILE``: ptychodus's own file readers (its plugin registry) read the diffraction
patterns, the probe positions and the probe; :func:`~mmip_ptychodus.mapping.ptychodus_term` maps them to the
ptychography term."""

__all__ = ["PtychodusImporter", "EXTRA"]

import fnmatch
import re
import warnings
from pathlib import Path

from multimodal_ip.errors import ConfigError, DataError, one_line

#: what to install for this importer (ptychodus is an extra, never a dependency)
EXTRA = "pip install 'mmip-ptychodus[ptychodus]'"
#: (registry attribute, what it reads) of the three readers
KINDS = {"diffraction": "diffraction_file_readers", "positions": "probe_position_file_readers",
         "probe": "probe_file_readers"}


def _registry():
    """ptychodus's plugin registry (every ``ptychodus.plugins`` module loaded); one line naming the extra without
    ptychodus."""
    with warnings.catch_warnings():  # ptychodus's modules import deprecated ones (xdrlib): not the user's concern
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            from ptychodus.api.plugins import PluginRegistry
        except ImportError as exc:
            msg = f"mmip import --ptychodus needs ptychodus (not installed: {one_line(exc)}); {EXTRA}"
            raise ConfigError(msg) from None
        return PluginRegistry.load_plugins()


def _patterns(plugin) -> list:
    """The file patterns of a ptychodus reader, from its display name (``"CXI Files (*.cxi)"`` -> ``["*.cxi"]``)."""
    found = re.search(r"\(([^)]*)\)\s*$", plugin.display_name)
    return found.group(1).split() if found else []


def _reader(registry, kind, name, path):
    """``(simple name, reader)``: the reader named ``name``, else the only one whose file patterns match ``path``."""
    plugins = list(getattr(registry, KINDS[kind]))
    option = "--ptychodus-reader" if kind == "diffraction" else f"--ptychodus-{kind}-reader"
    if name:
        hit = next((p for p in plugins if p.simple_name.casefold() == name.casefold()), None)
        if hit is None:
            names = ", ".join(sorted(p.simple_name for p in plugins))
            msg = f"{option} {name!r}: ptychodus has no {kind} reader of that name; it has: {names}"
            raise ConfigError(msg)
        return hit.simple_name, hit.strategy
    matches = [p for p in plugins if any(fnmatch.fnmatch(Path(path).name.lower(), g.lower()) for g in _patterns(p))]
    if len(matches) != 1:
        names = ", ".join(p.simple_name for p in matches) or ", ".join(sorted(p.simple_name for p in plugins))
        what = "several" if matches else "none"
        msg = f"{path}: {what} of ptychodus's {kind} readers match its name; choose one with {option} NAME ({names})"
        raise ConfigError(msg)
    return matches[0].simple_name, matches[0].strategy


def _read(reader, name, kind, path):
    """``reader.read(path)``; a reader's own failure is one line naming the file and the reader."""
    try:
        return reader.read(Path(path))
    except Exception as exc:  # noqa: BLE001 - a third party's reader: any failure is this file's
        msg = f"{path}: ptychodus's {name} {kind} reader failed: {one_line(f'{type(exc).__name__}: {exc}')[:200]}"
        raise DataError(msg) from None


class PtychodusImporter:
    """``mmip import --ptychodus FILE``: a diffraction file of any format ptychodus reads, with positions and probe
    from ``--ptychodus-positions`` and ``--ptychodus-probe`` (default: the same file, e.g. a CXI file; a ptychodus
    product for both); the readers are chosen by file name or named (``--ptychodus-reader`` ...). Sets the object
    frame and probe for the XRF importer, like ``--ptycho``."""

    flag = "ptychodus"
    help = ("a diffraction file read by ptychodus's own readers (any format ptychodus knows; needs the extra "
            "mmip-ptychodus[ptychodus])")
    order = 0  # first: the XRF importer places its maps on this scan's frame
    #: options of this importer (flags of ``mmip import``)
    options = {
        "ptychodus_reader": {"type": str, "default": None,
                             "help": "ptychodus's diffraction reader (its simple name, e.g. CXI, NPZ, APS_Velociprobe; "
                                     "default: the one whose file pattern matches)"},
        "ptychodus_positions": {"type": str, "default": None, "file": True,
                                "help": "the probe positions, a file ptychodus reads (default: the --ptychodus file)"},
        "ptychodus_positions_reader": {"type": str, "default": None,
                                       "help": "ptychodus's position reader (e.g. CXI, HDF5, CSV)"},
        "ptychodus_probe": {"type": str, "default": None, "file": True,
                            "help": "the probe, any file ptychodus reads (default: the positions file)"},
        "ptychodus_probe_reader": {"type": str, "default": None,
                                   "help": "ptychodus's probe reader (e.g. CXI, HDF5, NPY)"},
    }

    def __call__(self, path, context):
        from multimodal_ip.safety import regular_input

        from .mapping import ptychodus_term

        if "frame" in context:
            msg = "--ptychodus and --ptycho both import the ptychography scan: give one of them"
            raise ConfigError(msg)
        positions = context.get("ptychodus_positions") or path
        probe = context.get("ptychodus_probe") or positions
        for extra in {positions, probe} - {path}:
            regular_input(extra, "input file")
        registry = _registry()
        read = {}
        for kind, file in (("diffraction", path), ("positions", positions), ("probe", probe)):
            option = "ptychodus_reader" if kind == "diffraction" else f"ptychodus_{kind}_reader"
            name, reader = _reader(registry, kind, context.get(option), file)
            read[kind] = _read(reader, name, kind, file)
        term, frame = ptychodus_term(read["diffraction"], read["positions"], read["probe"], str(path),
                                     str(positions), str(probe))
        context.update(frame=frame, probe=term.arrays["probe"])
        context.setdefault("attrs", {}).update(pixel_size_m=frame.pixel_size_m, origin_m=list(frame.origin_m))
        if context.get("importing", [self.flag]) == [self.flag]:  # ptychography alone: one phase map, w (1, n, n)
            term.attrs["elements"] = ["phase"]
        return term
