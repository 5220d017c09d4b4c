"""The memory budget: declared sizes are checked before anything is allocated (``MMIP_MAX_MEMORY``, bytes or
``8G``/``500M``; default 80 % of the available memory). Re-exported by :mod:`multimodal_ip.safety`."""

__all__ = ["ENV_MEMORY", "parse_size", "memory_budget_bytes", "MemoryBudget"]

import os

from .errors import ConfigError, DataError

ENV_MEMORY = "MMIP_MAX_MEMORY"


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
