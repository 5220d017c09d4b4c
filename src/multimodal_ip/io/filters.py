"""HDF5 compression filters: hdf5plugin's registered before any read; a missing one named in one line."""

__all__ = ["register_filters", "missing_filter"]

import h5py

#: filters hdf5plugin provides (HDF5 filter id: name)
PLUGIN_FILTERS = {32008: "bitshuffle", 32001: "blosc", 32026: "blosc2", 307: "bzip2", 32004: "lz4", 32015: "zstd",
                  32013: "zfp", 32017: "sz", 32024: "sz3", 32018: "fcidecomp", 32028: "sperr", 32033: "htj2k"}
_registered = False


def register_filters() -> None:
    """Import hdf5plugin once (it registers bitshuffle/LZ4, Blosc, Zstd, ... with HDF5); without it, reads of data
    so compressed fail and :func:`missing_filter` says what to install."""
    global _registered
    if not _registered:
        _registered = True
        try:
            import hdf5plugin  # noqa: F401
        except ImportError:
            pass


def missing_filter(d) -> str | None:
    """For a dataset ``d``: ``"compressed with HDF5 filter <id> (<name>), which this HDF5 cannot apply; install
    <package>"`` for its first filter that is not available, else ``None``.

    Parameters
    ----------
    d : :obj:`h5py.Dataset`
        Dataset to inspect (its data is not read).

    Returns
    -------
    reason : :obj:`str` or :obj:`None`
        The message part above, or ``None`` when every filter is available (or the filters cannot be listed).
    """
    try:
        plist = d.id.get_create_plist()
        filters = [plist.get_filter(i) for i in range(plist.get_nfilters())]
    except (AttributeError, OSError, RuntimeError, ValueError):
        return None
    for code, _flags, _values, name in filters:
        if h5py.h5z.filter_avail(code):
            continue
        shown = PLUGIN_FILTERS.get(code) or (name.decode(errors="replace") if isinstance(name, bytes) else str(name))
        package = ("hdf5plugin (pip install hdf5plugin)" if code in PLUGIN_FILTERS else
                   "the HDF5 filter plugin registered for this id, on HDF5_PLUGIN_PATH")
        return (f"compressed with HDF5 filter {code} ({shown or 'unnamed'}), which this HDF5 cannot apply; "
                f"install {package}")
    return None
