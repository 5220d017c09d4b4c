"""The one writer policy: every file is written beside its name and renamed over it, never through a link.

* :func:`atomic_write` - bytes (e.g. an HDF5 file image) to a temporary beside the target, then a rename; a full disk
  is one :class:`~multimodal_ip.errors.DataError`.
* :func:`staged_folder` - the files of an output folder written into a fresh private folder, checked like ``-o``
  (:func:`~multimodal_ip.safety.check_outputs`) and renamed into place.
* :func:`remove_stale_temporaries` - a killed writer's temporary is removed only when this program can prove it made
  it (host, boot and PID namespace in its name, a marker inside, its pid gone) and it is no input.
"""

__all__ = ["atomic_write", "staged_folder", "remove_stale_temporaries", "temporary_prefix", "temporary_marker",
           "new_temporary", "discarded_on_failure", "TEMPORARY_MARKER", "USERBLOCK"]

import contextlib
import functools
import hashlib
import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path

from .errors import DataError
from .safety import check_outputs, is_input

#: the first bytes of a temporary this program is writing (an HDF5 user block, cleared once the file is complete)
TEMPORARY_MARKER = b"multimodal_ip temporary file; "
#: the size of the HDF5 user block that holds the marker
USERBLOCK = 512
@functools.cache
def _machine_token() -> str:
    """12 hex digits naming this host, boot and PID namespace: a pid means one process only within all three."""
    parts = [socket.gethostname()]
    for name in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(Path(name).read_text().strip() if name.endswith("boot_id") else os.readlink(name))
        except OSError:  # pragma: no cover - not Linux: the host name alone
            parts.append("?")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def temporary_prefix(target) -> str:
    """``.<name>.<pid>.<machine>.``: the start of the name of a temporary written beside ``target``.

    Parameters
    ----------
    target : :obj:`str` or :obj:`pathlib.Path`
        The file the temporary will replace.

    Returns
    -------
    prefix : :obj:`str`
        Name prefix for :func:`tempfile.mkstemp`.
    """
    return f".{Path(target).name}.{os.getpid()}.{_machine_token()}."


def temporary_marker(pid=None) -> bytes:
    """What a temporary of process ``pid`` (default: this one) holds in its first bytes while it is written.

    Parameters
    ----------
    pid : :obj:`int`, optional
        Process id of the writer; default this process.

    Returns
    -------
    marker : :obj:`bytes`
        ``TEMPORARY_MARKER``, the machine token and the pid, ending in a newline.
    """
    return TEMPORARY_MARKER + f"{_machine_token()} {os.getpid() if pid is None else pid}\n".encode()


def remove_stale_temporaries(target) -> None:
    """Delete temporaries beside ``target`` that this program can prove it made and whose writer is gone (killed
    during a write): the name ``.<name>.<pid>.<machine>.<random>.tmp`` names this host, boot and PID namespace, the
    pid is not running, and the file starts with :func:`temporary_marker` of that pid. A symlink, an input of this
    run (:func:`~multimodal_ip.safety.regular_input`) or anything else is left alone, whatever its name.

    Parameters
    ----------
    target : :obj:`str` or :obj:`pathlib.Path`
        The file whose leftover temporaries are looked for in its folder (errors listing it are ignored).
    """
    target = Path(target)
    token = _machine_token()
    with contextlib.suppress(OSError):
        for tmp in target.parent.glob(f".{target.name}.*.tmp"):
            parts = tmp.name[len(target.name) + 2: -len(".tmp")].split(".")
            if len(parts) != 3 or not parts[0].isdigit() or parts[1] != token or int(parts[0]) == os.getpid():
                continue
            try:
                os.kill(int(parts[0]), 0)
                continue  # running (or a pid reused by another process): not ours to judge
            except ProcessLookupError:
                pass
            except (PermissionError, OverflowError):
                continue
            with contextlib.suppress(OSError):
                fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                try:
                    st = os.fstat(fd)
                    marker = temporary_marker(int(parts[0]))
                    ours = stat.S_ISREG(st.st_mode) and not is_input(st) \
                        and os.pread(fd, len(marker), 0) == marker
                finally:
                    os.close(fd)
                if ours:
                    tmp.unlink()


def atomic_write(path, data, userblock=0) -> None:
    """Write ``data`` (bytes) to ``path`` through a temporary beside it and a rename: a reader sees the old file or
    the new one, never a part, and nothing is written through a link at ``path`` (the name is replaced).

    ``userblock``: the bytes of ``data`` are an HDF5 file image to be placed after a user block of that many bytes;
    the block holds :func:`temporary_marker` while the file is written (so that :func:`remove_stale_temporaries` can
    prove a leftover is ours) and zeros once it is complete. A full disk or any other write error is a
    :class:`DataError` naming ``path``, with the temporary removed.

    Parameters
    ----------
    path : :obj:`str` or :obj:`pathlib.Path`
        File to write (its folders are created).
    data : bytes-like
        The contents.
    userblock : :obj:`int`, optional
        Size in bytes of the HDF5 user block placed before ``data`` (``0``: none).

    Raises
    ------
    DataError
        The folder, the temporary or the rename cannot be written.
    """
    path = Path(path)
    fd, tmp = new_temporary(path)
    with discarded_on_failure(tmp, path):
        try:
            if userblock:
                _write_all(fd, temporary_marker().ljust(userblock, b"\0"))
            _write_all(fd, data)
            if userblock:
                os.pwrite(fd, bytes(len(temporary_marker())), 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)


def new_temporary(path: Path, need_bytes: int = 0) -> tuple:
    """``(fd, name)`` of a new temporary beside ``path``, named by :func:`temporary_prefix`, with the user's umask as a
    plain ``open()`` would give; its folders are created and this program's stale temporaries of ``path`` removed
    first.

    Parameters
    ----------
    path : :obj:`pathlib.Path`
        The file the temporary will be renamed to.
    need_bytes : :obj:`int`, optional
        Refuse in one line, before creating anything, when the folder's disk has less room than this (+ 16 MiB);
        ``0``: no check.

    Returns
    -------
    fd : :obj:`int`
        The temporary's open file descriptor (the caller closes it).
    tmp : :obj:`str`
        The temporary's name.

    Raises
    ------
    DataError
        The folder or the temporary cannot be made, or the disk is too full.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        if need_bytes:
            free = shutil.disk_usage(path.parent).free
            if free < need_bytes + (16 << 20):
                msg = (f"cannot write {path}: it needs about {need_bytes / 1e9:.3g} GB and {path.parent} has "
                       f"{free / 1e9:.3g} GB free")
                raise DataError(msg)
        fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=".tmp", dir=path.parent)
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        msg = f"cannot write {path}: {exc.strerror or exc}"
        raise DataError(msg) from None
    return fd, tmp


@contextlib.contextmanager
def discarded_on_failure(tmp, path, describe=lambda exc: exc.strerror or exc):
    """Remove the temporary ``tmp`` when the block fails; an ``OSError`` (a full disk, say) becomes one
    :class:`DataError` naming ``path`` (``describe(exc)`` after it), anything else (an interrupt) is re-raised.

    Parameters
    ----------
    tmp : :obj:`str` or :obj:`pathlib.Path`
        The temporary to remove on failure.
    path : :obj:`str` or :obj:`pathlib.Path`
        The target, named in the error.
    describe : :obj:`callable`, optional
        ``describe(exc)``: the words after the target in the error (default: the system's message).

    Raises
    ------
    DataError
        The block raised an ``OSError``.
    """
    try:
        yield
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        msg = f"cannot write {path}: {describe(exc)}"
        raise DataError(msg) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_all(fd, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view[: 1 << 26]):]


@contextlib.contextmanager
def staged_folder(folder, inputs=()):
    """A fresh private folder inside ``folder`` to write a command's files into; when the block succeeds, each file
    is checked like ``-o`` (:func:`check_outputs`: not an input, through symlinks and hard links) and moved into
    ``folder`` by rename, so that a symlink or hard link already in ``folder`` is replaced, never written through.
    Nothing is moved when the block fails; the staging folder is removed either way.

    Parameters
    ----------
    folder : :obj:`str` or :obj:`pathlib.Path`
        Destination folder (created if missing).
    inputs : sequence of :obj:`str` or :obj:`pathlib.Path`, optional
        Files the command read, which no output may replace.

    Yields
    ------
    stage : :obj:`pathlib.Path`
        The staging folder to write into.

    Raises
    ------
    DataError
        ``folder`` or a file in it cannot be written.
    ConfigError
        An output would replace an input (:func:`~multimodal_ip.safety.check_outputs`).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".mmip-staging.", suffix=".tmp", dir=folder))
    except OSError as exc:
        msg = f"cannot write into {folder}: {exc.strerror or exc}"
        raise DataError(msg) from None
    try:
        yield stage
        names = sorted(p.name for p in stage.iterdir())
        check_outputs([folder / n for n in names], inputs)
        for n in names:
            try:
                os.replace(stage / n, folder / n)
            except OSError as exc:
                msg = f"cannot write {folder / n}: {exc.strerror or exc}"
                raise DataError(msg) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
