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

import h5py

from .errors import ConfigError, DataError, one_line

MAX_RUN_FILE_BYTES = 1 << 20
ENV_MEMORY = "MMIP_MAX_MEMORY"

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


def walk_group(path, group, prefix, allow_external=False):
    """``(name, object)`` for each member of ``group``; links that leave the file are refused by name.

    Parameters
    ----------
    path : :obj:`str` or :obj:`pathlib.Path`
        The HDF5 file's name, for the messages.
    group : :obj:`h5py.Group`
        Group whose members are walked.
    prefix : :obj:`str`
        The group's path in the file, for the messages.
    allow_external : :obj:`bool`, optional
        Accept external links and external storage (as :func:`member`).

    Yields
    ------
    name : :obj:`str`
        Member name.
    obj : :obj:`h5py.Group` or :obj:`h5py.Dataset`
        The member, checked by :func:`member`.

    Raises
    ------
    DataError
        A member's link is refused (see :func:`member`).
    """
    for name in group:
        yield name, member(path, group, name, prefix, allow_external)


def member(path, group, name, prefix="/", allow_external=False):
    """``group[name]`` after checking the link: external links, soft links that leave the file or dangle, virtual
    datasets and datasets with external raw storage are refused with one line naming ``path:prefix+name``; with
    ``allow_external``, a virtual source or external storage file that is missing is still refused.

    Parameters
    ----------
    path : :obj:`str` or :obj:`pathlib.Path`
        The HDF5 file's name, for the messages.
    group : :obj:`h5py.Group`
        Group holding the member.
    name : :obj:`str`
        Member name in ``group``.
    prefix : :obj:`str`, optional
        The group's path in the file, for the messages.
    allow_external : :obj:`bool`, optional
        Accept external links, soft links that leave the file, virtual datasets and external raw storage
        (``--allow-external-links``).

    Returns
    -------
    obj : :obj:`h5py.Group` or :obj:`h5py.Dataset`
        ``group[name]``.

    Raises
    ------
    DataError
        The link is refused or cannot be resolved, or a dataset's storage is refused.
    """
    where = f"{path}:{prefix}{name}"
    link = group.get(name, getlink=True)
    if isinstance(link, h5py.ExternalLink) and not allow_external:
        msg = (f"{where}: an external link to {link.filename}:{link.path} (refused: only the named input is read; "
               "--allow-external-links for trusted facility layouts)")
        raise DataError(msg)
    try:
        obj = group[name]
    except (KeyError, OSError, RuntimeError, ValueError) as exc:
        kind = "soft link" if isinstance(link, h5py.SoftLink) else "link"
        msg = f"{where}: {kind} cannot be resolved ({one_line(exc)})"
        raise DataError(msg) from None
    if isinstance(link, h5py.SoftLink) and obj.file.filename != group.file.filename and not allow_external:
        msg = f"{where}: a soft link that leaves the file (refused)"
        raise DataError(msg)
    if isinstance(obj, h5py.Dataset):
        _check_storage(where, obj, allow_external)
    return obj


def external_raw_files(d) -> list:
    """``[(file name, offset, size)]`` of a dataset whose bytes live in other files (HDF5 external raw storage,
    ``create_dataset(..., external=...)``); empty for ordinary storage.

    Parameters
    ----------
    d : :obj:`h5py.Dataset`
        Dataset to inspect (its bytes are not read).

    Returns
    -------
    files : :obj:`list` of :obj:`tuple`
        ``(name, offset, size)`` for each external file, with ``name`` a :obj:`str` and ``offset``, ``size`` in bytes.
    """
    plist = d.id.get_create_plist()
    out = []
    for i in range(plist.get_external_count()):
        name, offset, size = plist.get_external(i)
        out.append((os.fsdecode(name), int(offset), int(size)))
    return out


def _check_storage(where, d, allow_external) -> None:
    """Refuse a dataset whose bytes are read from other files: external raw storage and virtual datasets (unless
    allowed); when allowed, a source that is missing (HDF5 would read fill values or zeros) is still refused."""
    external = external_raw_files(d)
    if external and not allow_external:
        files = sorted({name for name, _, _ in external})
        msg = (f"{where}: external raw storage in {files} (refused: only the named input is read; "
               "--allow-external-links for trusted facility layouts)")
        raise DataError(msg)
    for name, offset, size in external:  # HDF5 resolves a relative name from HDF5_EXTFILE_PREFIX or the cwd
        found = next((c for c in _candidates(name, os.environ.get("HDF5_EXTFILE_PREFIX"), None) if c.is_file()),
                     None)
        if found is None:
            msg = f"{where}: external raw storage file {name!r} is missing (HDF5 would read zeros)"
            raise DataError(msg)
        if size != h5py.h5f.UNLIMITED and found.stat().st_size < offset + size:
            msg = (f"{where}: external raw storage file {name!r} holds {found.stat().st_size} bytes, fewer than the "
                   f"{offset + size} declared (HDF5 would read zeros)")
            raise DataError(msg)
    if not d.is_virtual:
        return
    sources = d.virtual_sources()
    if not allow_external:
        files = sorted({s.file_name for s in sources})
        msg = f"{where}: a virtual dataset reading {files} (refused: only the named input is read)"
        raise DataError(msg)
    here = Path(d.file.filename).parent
    for s in sources:  # a missing file or dataset reads as the fill value: refused
        if s.file_name == ".":
            present = s.dset_name in d.file and isinstance(d.file.get(s.dset_name), h5py.Dataset)
        else:
            present = any(_has_dataset(c, s.dset_name)
                          for c in _candidates(s.file_name, os.environ.get("HDF5_VDS_PREFIX"), here))
        if not present:
            msg = (f"{where}: a virtual dataset whose source {s.file_name}:{s.dset_name} is missing (it would read "
                   "as fill values)")
            raise DataError(msg)


def _candidates(name, prefix, here) -> list:
    """Where HDF5 looks for the file ``name`` of external storage or a virtual source."""
    p = Path(name)
    if p.is_absolute():
        return [p] + ([Path(prefix) / p.name] if prefix else [])
    out = [Path(prefix) / p] if prefix else []
    return [*out, *([here / p] if here is not None else []), Path.cwd() / p]


def _has_dataset(path, key) -> bool:
    try:
        if not path.is_file():
            return False
        with h5py.File(path, "r") as f:
            return isinstance(f.get(key), h5py.Dataset)
    except (OSError, RuntimeError, ValueError):
        return False


def parse_size(text, allow_zero=False) -> int:
    """Bytes from ``"8G"``, ``"500M"``, ``"64K"``, ``"1000000"``; :class:`ValueError` otherwise.

    Parameters
    ----------
    text : :obj:`str` or :obj:`int`
        A number of bytes, optionally with a binary suffix ``K``, ``M``, ``G`` or ``T`` (case-insensitive).
    allow_zero : :obj:`bool`, optional
        Accept ``0``.

    Returns
    -------
    nbytes : :obj:`int`
        The size in bytes.

    Raises
    ------
    ValueError
        ``text`` is empty, not a number, negative, infinite, or zero without ``allow_zero``.
    """
    text = str(text).strip()
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if not text:
        raise ValueError(text)
    mult = units.get(text[-1].upper(), 1)
    value = float(text[:-1] if text[-1].upper() in units else text) * mult
    if not (value > 0 or (allow_zero and value == 0)) or value == float("inf"):
        raise ValueError(text)
    return int(value)


def memory_budget_bytes() -> int:
    """``MMIP_MAX_MEMORY`` (bytes, or with a K/M/G/T suffix), else 80 % of the available memory.

    Returns
    -------
    nbytes : :obj:`int`
        The memory budget in bytes (capped by an address-space limit, ``ulimit -v``).

    Raises
    ------
    ConfigError
        ``MMIP_MAX_MEMORY`` is not a positive size.
    """
    text = os.environ.get(ENV_MEMORY, "").strip()
    if text:
        try:
            return parse_size(text)
        except ValueError:
            msg = f"{ENV_MEMORY}={text!r}: expected a positive size such as 8G, 500M or 1000000"
            raise ConfigError(msg) from None
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, AttributeError):  # pragma: no cover - not Linux
        avail = 8 << 30
    try:  # an address-space limit (ulimit -v) caps what this process may allocate, whatever the machine has
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/statm") as fh:
                used = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            avail = min(avail, max(soft - used, 0))
    except (OSError, ValueError, ImportError):  # pragma: no cover - not Linux
        pass
    return int(0.8 * avail)


class MemoryBudget:
    """Bytes that may still be read; :meth:`take` refuses, naming the dataset, what would exceed it.

    Parameters
    ----------
    total : :obj:`int`, optional
        Budget in bytes; default ``MMIP_MAX_MEMORY``, else 80 % of the available memory.

    Raises
    ------
    ConfigError
        ``total`` is not given and ``MMIP_MAX_MEMORY`` is not a valid size.
    """

    def __init__(self, total: int | None = None):
        self.total = memory_budget_bytes() if total is None else int(total)
        self.left = self.total

    def take(self, nbytes: int, where: str) -> None:
        if nbytes > self.left:
            msg = (f"{where}: declares {nbytes / 2**20:.4g} MiB, more than the memory budget left "
                   f"({self.left / 2**20:.4g} of {self.total / 2**20:.4g} MiB; set {ENV_MEMORY} to change it)")
            raise DataError(msg)
        self.left -= nbytes


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
