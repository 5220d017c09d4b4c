"""Guards against hostile or mistaken inputs: the one reader policy and the one output guard.

* :func:`regular_input` - an input must be an existing regular file (a FIFO, a device or a directory is refused
  before it is opened: reading ``/dev/zero`` or a FIFO would never end).
* :func:`walk_group` - the members of an HDF5 group, refusing external links, virtual datasets, external raw
  storage and soft links that leave the file or dangle, unless the user allows external links
  (``--allow-external-links``); even then, a source file that is missing is refused (it would read as fill values).
* :class:`MemoryBudget` - declared sizes are checked before anything is allocated (``MMIP_MAX_MEMORY``, bytes, or
  ``8G``/``500M``; default 80 % of the available memory).
* :func:`check_outputs` - every path the program writes is compared with every input by identity (same inode,
  through symlinks and hard links), not by name.
* :func:`read_text_capped` - a run file read with a size cap.

The writer side (temporaries, renames, output folders) is :mod:`multimodal_ip.atomic`.
"""

__all__ = ["regular_input", "walk_group", "member", "MemoryBudget", "check_outputs", "read_text_capped",
           "memory_budget_bytes", "MAX_RUN_FILE_BYTES", "file_fingerprint", "deferred_interrupts",
           "parse_size", "external_raw_files", "is_input"]

import contextlib
import hashlib
import os
import signal
import stat
import threading
from pathlib import Path

from .errors import ConfigError, DataError
from .hdf5_members import external_raw_files, member, walk_group
from .memory import MemoryBudget, memory_budget_bytes, parse_size

MAX_RUN_FILE_BYTES = 1 << 20

_INPUTS: set = set()  # (device, inode) of every input this process has accepted


def _remember_input(st) -> None:
    _INPUTS.add((st.st_dev, st.st_ino))


def is_input(st) -> bool:
    """Whether the file of ``os.stat`` result ``st`` is an input of this process (:func:`regular_input`).

    Parameters
    ----------
    st : :obj:`os.stat_result`
        The ``stat`` of a file (its device and inode are compared).

    Returns
    -------
    flag : :obj:`bool`
        ``True`` if :func:`regular_input` accepted that file in this process.
    """
    return (st.st_dev, st.st_ino) in _INPUTS


def regular_input(path, what="file") -> Path:
    """``path`` as a :class:`Path` if it is an existing regular file (symlinks followed); else a one-line error.

    Parameters
    ----------
    path : :obj:`str` or :obj:`pathlib.Path`
        File to read.
    what : :obj:`str`, optional
        What the file is, for the messages (``"file"``, ``"dataset"``, ``"run file"``).

    Returns
    -------
    path : :obj:`pathlib.Path`
        The checked path, remembered as an input of this process (:func:`is_input`).

    Raises
    ------
    DataError
        The name is empty or holds a NUL byte, or the file is missing, unreadable or not a regular file.
    """
    text = str(path)
    if not text.strip():
        msg = f"empty {what} name"
        raise DataError(msg)
    if "\x00" in text:  # the OS cannot name it (os.stat raises ValueError, not OSError)
        msg = f"{what} name {text!r} contains a NUL byte"
        raise DataError(msg)
    p = Path(text)
    try:
        st = p.stat()
    except FileNotFoundError:
        msg = f"{p}: no such {what}"
        raise DataError(msg) from None
    except OSError as exc:
        msg = f"{p}: cannot read {what} ({exc.strerror or exc})"
        raise DataError(msg) from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else \
            "not a regular file"
        msg = f"{p}: expected a regular {what}, got {kind}"
        raise DataError(msg)
    if not os.access(p, os.R_OK):
        msg = f"{p}: permission denied"
        raise DataError(msg)
    _remember_input(st)  # never removed as a stale temporary, whatever its name
    return p


def _identity(p: Path):
    try:
        st = p.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _check_nul(names) -> None:
    """A name with a NUL byte, which the OS cannot take (``os.stat`` raises ValueError, not OSError)."""
    for name in names:
        if "\x00" in str(name):
            msg = f"file name {str(name)!r} contains a NUL byte"
            raise ConfigError(msg)


def _check_output_name(text: str) -> None:
    """An output name that is empty or holds a newline (one line per message)."""
    if not text.strip():
        msg = "empty output name"
        raise ConfigError(msg)
    if "\n" in text or "\r" in text:
        msg = f"output name {text!r} contains a newline"
        raise ConfigError(msg)


def _check_not_an_input(o: Path, ins) -> None:
    """``o`` is none of the inputs ``ins`` (``(path, identity)``) and, as a folder, contains none of them."""
    oid = _identity(o)
    for i, iid in ins:
        same = (oid is not None and oid == iid) or o.resolve() == i.resolve()
        inside = o.is_dir() and iid is not None and o.resolve() in i.resolve().parents
        if same or inside:
            msg = f"refusing to write {o}: it {'is' if same else 'contains'} the input {i}; choose another output"
            raise ConfigError(msg)


def _check_writable_kind(o: Path, folder: bool) -> None:
    """``o`` is (or can become) a folder when ``folder``, else a file; every folder above it is one."""
    if folder and o.exists() and not o.is_dir():
        msg = f"cannot write into {o}: it exists and is not a folder"
        raise ConfigError(msg)
    if not folder and o.is_dir():
        msg = f"cannot write {o}: it is a folder"
        raise ConfigError(msg)
    parent = o.resolve().parent
    for anc in (parent, *parent.parents):
        if anc.exists() and not anc.is_dir():
            msg = f"cannot write {o}: {anc} is not a folder"
            raise ConfigError(msg)


def check_outputs(outputs, inputs, folder=False) -> None:
    """Refuse to write any of ``outputs`` (files or folders) where it would replace or lie inside an input.

    Compared by identity (device, inode) through symlinks and hard links, and by resolved path for files that
    do not exist yet; a folder output may not be an input and may not contain one.

    Parameters
    ----------
    outputs : sequence of :obj:`str` or :obj:`pathlib.Path`
        Files or folders about to be written.
    inputs : sequence of :obj:`str` or :obj:`pathlib.Path`
        Files read by the command (empty entries are skipped).
    folder : :obj:`bool`, optional
        The outputs are folders (else files).

    Raises
    ------
    ConfigError
        A name is empty or holds a NUL byte or a newline, an output is or contains an input, or an output is of
        the wrong kind (a folder for a file, a file above it, ...).
    """
    _check_nul((*outputs, *(i for i in inputs if i)))
    ins = [(Path(str(i)), _identity(Path(str(i)))) for i in inputs if i]
    for out in outputs:
        _check_output_name(str(out))
        o = Path(str(out))
        _check_not_an_input(o, ins)
        _check_writable_kind(o, folder)


def read_text_capped(path, what="run file", cap=MAX_RUN_FILE_BYTES) -> bytes:
    """The bytes of a small regular file, refusing FIFOs, devices, directories and files over ``cap``.

    Parameters
    ----------
    path : :obj:`str` or :obj:`pathlib.Path`
        File to read.
    what : :obj:`str`, optional
        What the file is, for the messages.
    cap : :obj:`int`, optional
        Largest size accepted, in bytes.

    Returns
    -------
    data : :obj:`bytes`
        The file's contents.

    Raises
    ------
    DataError
        The file is missing, unreadable or not a regular file (:func:`regular_input`).
    ConfigError
        The file is larger than ``cap``.
    """
    p = regular_input(path, what)
    if p.stat().st_size > cap:
        msg = f"{p}: {what} is {p.stat().st_size} bytes, more than the {cap} allowed"
        raise ConfigError(msg)
    with open(p, "rb") as fh:
        return fh.read(cap + 1)[:cap]


def file_fingerprint(path, chunk=1 << 22) -> str:
    """SHA-256 of a file's bytes (streamed: bounded memory), as hex; what a checkpoint records of its input.

    Parameters
    ----------
    path : :obj:`str` or :obj:`pathlib.Path`
        File to hash.
    chunk : :obj:`int`, optional
        Bytes read at a time.

    Returns
    -------
    digest : :obj:`str`
        Hexadecimal SHA-256.

    Raises
    ------
    DataError
        The file is missing, unreadable or not a regular file (:func:`regular_input`).
    """
    h = hashlib.sha256()
    with open(regular_input(path), "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def deferred_interrupts():
    """Hold SIGINT/SIGTERM while a file is written (an interrupt inside HDF5's close can be swallowed); the
    interrupt is raised as :class:`KeyboardInterrupt` once the block has finished. A signal that is ignored
    (``nohup``, a shell's background job started with SIGINT ignored) stays ignored: it interrupts nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list = []

    def hold(signum, frame):
        caught.append(signum)

    previous = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(s) not in (signal.SIG_IGN, None)}  # None: a handler not set from Python
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if caught:
            raise KeyboardInterrupt
