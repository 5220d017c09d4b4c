"""HDF5 files written atomically: the root attributes of the format, and the large-file path of
:func:`~multimodal_ip.io.atomic_h5` (HDF5 writing a marked temporary beside the target, then a rename)."""

__all__ = ["FORMAT", "FORMAT_VERSION"]

import contextlib
import os
from pathlib import Path

import h5py

from ..errors import DataError, one_line

FORMAT = "multimodal_ip"
FORMAT_VERSION = 1


def _nbytes_of(arrays) -> int:
    return int(sum(getattr(a, "nbytes", 0) for a in arrays))


@contextlib.contextmanager
def _atomic_h5_on_disk(path: Path, size: int):
    """:func:`atomic_h5` for a large file: HDF5 writes a temporary that holds the marker of
    :func:`~multimodal_ip.atomic.temporary_marker` in its user block until it is complete."""
    import shutil
    import tempfile

    from ..atomic import USERBLOCK, remove_stale_temporaries, temporary_marker, temporary_prefix

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        free = shutil.disk_usage(path.parent).free
        if free < size + (16 << 20):
            msg = (f"cannot write {path}: it needs about {size / 1e9:.3g} GB and {path.parent} has "
                   f"{free / 1e9:.3g} GB free")
            raise DataError(msg)
        fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=".tmp", dir=path.parent)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # the user's umask, as a plain open() would give
        os.close(fd)
    except OSError as exc:
        msg = f"cannot write {path}: {exc.strerror or exc}"
        raise DataError(msg) from None

    def mark(block: bytes) -> None:  # HDF5 leaves the user block alone: the marker goes in beside it
        fd = os.open(tmp, os.O_WRONLY)
        try:
            os.pwrite(fd, block, 0)
            os.fsync(fd)
        finally:
            os.close(fd)

    try:
        with h5py.File(tmp, "w", userblock_size=USERBLOCK) as f:
            mark(temporary_marker().ljust(USERBLOCK, b"\0"))
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            yield f
        mark(bytes(USERBLOCK))
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        msg = f"cannot write {path}: {one_line(exc)}"
        raise DataError(msg) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
