"""The members of an HDF5 group as the reader policy allows them: external links, virtual datasets, external raw
storage and soft links that leave the file or dangle are refused by name unless the user allows external links
(``--allow-external-links``); even then a missing source is refused. Re-exported by :mod:`multimodal_ip.safety`."""

__all__ = ["walk_group", "member", "external_raw_files"]

import os
from pathlib import Path

import h5py

from .errors import DataError, one_line


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
