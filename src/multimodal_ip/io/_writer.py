"""HDF5 files written atomically: the root attributes of the format, and the large-file path of
:func:`~multimodal_ip.io.atomic_h5` (HDF5 writing a marked temporary beside the target, then a rename)."""

__all__ = ["FORMAT", "FORMAT_VERSION"]

import contextlib
import os
from pathlib import Path

import h5py

from ..errors import one_line

FORMAT = "multimodal_ip"
FORMAT_VERSION = 1


def _nbytes_of(arrays) -> int:
    return int(sum(getattr(a, "nbytes", 0) for a in arrays))


@contextlib.contextmanager
def _atomic_h5_on_disk(path: Path, size: int):
    """:func:`atomic_h5` for a large file: HDF5 writes a temporary that holds the marker of
    :func:`~multimodal_ip.atomic.temporary_marker` in its user block until it is complete."""
    from ..atomic import USERBLOCK, discarded_on_failure, new_temporary, temporary_marker

    fd, tmp = new_temporary(path, need_bytes=size)
    os.close(fd)  # HDF5 opens it by name

    def mark(block: bytes) -> None:  # HDF5 leaves the user block alone: the marker goes in beside it
        fd = os.open(tmp, os.O_WRONLY)
        try:
            os.pwrite(fd, block, 0)
            os.fsync(fd)
        finally:
            os.close(fd)

    with discarded_on_failure(tmp, path, describe=one_line):
        with h5py.File(tmp, "w", userblock_size=USERBLOCK) as f:
            mark(temporary_marker().ljust(USERBLOCK, b"\0"))
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            yield f
        mark(bytes(USERBLOCK))
        os.replace(tmp, path)
