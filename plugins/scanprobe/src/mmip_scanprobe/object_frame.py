"""Where the object grid of a data file sits: the root attributes ``pixel_size_m`` and ``origin_m`` that
``mmip import`` writes, read once for every exporter and start reader."""

__all__ = ["ObjectFrame"]

from typing import NamedTuple

import numpy as np


class ObjectFrame(NamedTuple):
    """Object pixel (r, c) sits at ``origin_m + (r, c) * pixel_size_m`` (y, x), in metres.

    Parameters
    ----------
    pixel_size_m : :obj:`float`
        Object pixel size in metres.
    origin_m : :obj:`tuple`
        ``(y, x)`` position in metres of object pixel (0, 0).
    """

    pixel_size_m: float
    origin_m: tuple

    @classmethod
    def from_attrs(cls, attrs) -> "ObjectFrame | None":
        """The frame of a data file's root attributes, ``None`` when it has none: either attribute missing, not one
        pixel size and two origin coordinates, not numbers, not finite, or a pixel size not positive.

        Parameters
        ----------
        attrs : :obj:`dict` or :obj:`None`
            The data file's root attributes (a :class:`~multimodal_ip.io.Dataset`'s ``attrs``).

        Returns
        -------
        frame : :obj:`ObjectFrame` or :obj:`None`
            ``(pixel_size_m, origin_m)``.
        """
        frame, _ = cls._read(attrs)
        return frame

    @classmethod
    def why_not(cls, attrs) -> str:
        """Why :meth:`from_attrs` finds no frame in ``attrs`` (e.g. ``pixel_size_m is 'abc', not a number``), ``""``
        when it finds one.

        Parameters
        ----------
        attrs : :obj:`dict` or :obj:`None`
            The data file's root attributes.

        Returns
        -------
        :obj:`str`
        """
        return cls._read(attrs)[1]

    @classmethod
    def _read(cls, attrs) -> tuple:
        attrs = attrs or {}
        pixel, origin = attrs.get("pixel_size_m"), attrs.get("origin_m")
        missing = [k for k, v in (("pixel_size_m", pixel), ("origin_m", origin)) if v is None]
        if missing:
            return None, f"{' and '.join(missing)} missing"
        if np.size(pixel) != 1 or np.size(origin) != 2:
            return None, (f"expected one pixel_size_m and two origin_m values, got {np.size(pixel)} and "
                          f"{np.size(origin)}")
        try:
            pixel, origin = float(np.ravel(pixel)[0]), tuple(float(v) for v in np.ravel(origin))
        except (TypeError, ValueError):  # not numbers: no frame
            return None, f"pixel_size_m {attrs.get('pixel_size_m')!r} or origin_m {attrs.get('origin_m')!r} not numbers"
        if not (np.all(np.isfinite(origin)) and np.isfinite(pixel) and pixel > 0):
            return None, f"expected a finite pixel_size_m > 0 and a finite origin_m, got {pixel!r} and {origin!r}"
        return cls(pixel, origin), ""
