"""The data file behind a result file: the input its configuration names (``config["data"]``, as ``mmip
reconstruct`` was given it), looked up the same way by ``mmip export`` and ``mmip report``."""

__all__ = ["named_data_file"]

from pathlib import Path


def named_data_file(result, config) -> tuple[str | None, Path | None]:
    """The data file named in a result's configuration: as given (relative to the working folder), else beside
    the result (its file name), else relative to the result's folder.

    Parameters
    ----------
    result : :obj:`str` or :obj:`pathlib.Path`
        The result file.
    config : :obj:`dict`
        The result's configuration (anything else names no file).

    Returns
    -------
    name : :obj:`str` or :obj:`None`
        The name the configuration gives; ``None`` when it gives none that could name a file (missing, empty, not
        a string, a NUL byte).
    path : :obj:`pathlib.Path` or :obj:`None`
        The first of those places holding a regular file; ``None`` when none does.
    """
    name = config.get("data") if isinstance(config, dict) else None
    if not isinstance(name, str) or not name or "\0" in name:
        return None, None
    here = Path(result).parent
    return name, next((p for p in (Path(name), here / Path(name).name, here / name) if p.is_file()), None)
