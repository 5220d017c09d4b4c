__all__ = ["Curvature", "DEFAULT_FLOOR"]

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backend import get_array_module
from ..errors import ShapeError

if TYPE_CHECKING:
    from ..variables import VariableSpace

#: default floor of :meth:`Curvature.solve`, a fraction of each variable's largest curvature (the regularisation
#: LSQML and ePIE add to an illumination before dividing by it)
DEFAULT_FLOOR = 1e-2


class Curvature:
    r"""A block-diagonal approximation :math:`D` of the Gauss-Newton matrix on the packed space, per variable.

    Each variable with a curvature holds either a **diagonal** (shape ``(m,)``, ``m`` its packed real size: complex
    variables as interleaved real pairs) or symmetric **blocks** over consecutive packed entries (shape
    ``(m // k, k, k)``: e.g. ``k = 2`` for the (row, column) of each scan position). Variables it does not name
    have no curvature (:meth:`missing`). Built by :meth:`~multimodal_ip.JointProblem.curvature` from what the data
    terms offer (``DataTerm(curvature=...)``, docs/plugins.md) and used by the solvers' ``precondition`` option.

    Parameters
    ----------
    space : :class:`~multimodal_ip.VariableSpace`
        The unknowns.
    blocks : :obj:`dict`
        ``{variable: array}``, each a diagonal ``(m,)`` or blocks ``(m // k, k, k)`` (non-negative curvature).
    complete : :obj:`bool`, optional
        Whether every data term contributed (``False``: some term offers none, so its curvature is missing from the
        sum even on variables that have one).
    """

    def __init__(self, space: "VariableSpace", blocks: Mapping[str, Any], complete: bool = True):
        self.space, self.complete = space, bool(complete)
        self.blocks = {name: _checked(space, name, a, "the curvature") for name, a in blocks.items()}

    @classmethod
    def combine(cls, space: "VariableSpace", offers: Iterable[tuple[float, Mapping[str, Any]]],
                frozen: Iterable[str] = (), complete: bool = True) -> "Curvature":
        """The weighted sum of the terms' offers; a frozen variable gets ones (its gradient is zero anyway).

        Parameters
        ----------
        space : :class:`~multimodal_ip.VariableSpace`
            The unknowns.
        offers : iterable of ``(weight, {variable: array})``
            Each term's offer (diagonals or blocks, as the class takes) and its weight.
        frozen : iterable of :obj:`str`, optional
            Variables held fixed.
        complete : :obj:`bool`, optional
            Whether every data term made an offer.

        Returns
        -------
        :class:`Curvature`
            Per variable the sum: diagonals add; a diagonal and blocks of size ``k`` add as blocks; blocks of
            different sizes add as their diagonals.
        """
        out: dict = {}
        for weight, offer in offers:
            for name, a in offer.items():
                a = weight * _checked(space, name, a, "a term's curvature offer")
                out[name] = a if name not in out else _add(out[name], a)
        for name in frozen:
            ncp = get_array_module(next(iter(out.values()))) if out else np
            out[name] = ncp.ones(space[name].size * (2 if space[name].is_complex else 1), dtype=space.dtype)
        return cls(space, out, complete)

    def missing(self, names: Iterable[str] | None = None) -> list:
        """The variables (of ``names``, default all) that have no curvature.

        Parameters
        ----------
        names : iterable of :obj:`str`, optional
            Variables to check; default every variable of the space.

        Returns
        -------
        :obj:`list` of :obj:`str`
        """
        return [n for n in (self.space.names if names is None else names) if n not in self.blocks]

    def map(self, fn: Callable[[Any], Any]) -> "Curvature":
        """``fn`` applied to every variable's array, in sorted order (an MPI sum over ranks).

        Parameters
        ----------
        fn : callable
            ``fn(array) -> array`` of the same shape.

        Returns
        -------
        :class:`Curvature`
        """
        return Curvature(self.space, {n: fn(self.blocks[n]) for n in sorted(self.blocks)}, self.complete)

    def damped(self, damping: float) -> "Curvature":
        """:math:`D + \\lambda I`.

        Parameters
        ----------
        damping : :obj:`float`
            :math:`\\lambda`, added to every diagonal entry.

        Returns
        -------
        :class:`Curvature`
        """
        return Curvature(self.space, {n: _add(a, damping) for n, a in self.blocks.items()}, self.complete)

    def solve(self, g, floor: float = DEFAULT_FLOOR, damping: float = 0.0):
        r""":math:`(D + \delta_v I + \lambda I)^{-1} g` on the variables with a curvature; ``g`` elsewhere.

        Parameters
        ----------
        g : array
            A packed vector.
        floor : :obj:`float`, optional
            :math:`\delta_v`: this fraction of the variable's largest diagonal entry (keeps dark or unseen entries,
            e.g. unilluminated pixels, from huge steps).
        damping : :obj:`float`, optional
            :math:`\lambda`, an absolute damping added to every entry (Gauss-Newton's).

        Returns
        -------
        array
            A new packed vector.
        """
        return self.inverse(floor, damping)(g)

    def inverse(self, floor: float = DEFAULT_FLOOR, damping: float = 0.0):
        r"""The map :math:`g \mapsto (D + \delta_v I + \lambda I)^{-1} g` of :meth:`solve`, with the shifted blocks
        formed once (a preconditioner applied at every CG iteration).

        Parameters
        ----------
        floor : :obj:`float`, optional
            :math:`\delta_v` as in :meth:`solve`.
        damping : :obj:`float`, optional
            :math:`\lambda` as in :meth:`solve`.

        Returns
        -------
        callable
            ``apply(g)``: a new packed vector.
        """
        shifted = {}
        for name, a in self.blocks.items():
            ncp = get_array_module(a)
            diag = a if a.ndim == 1 else ncp.diagonal(a, axis1=1, axis2=2)
            shift = floor * float(ncp.max(diag)) + damping if diag.size else damping
            if shift <= 0:
                shift = 1e-30
            shifted[name] = a + shift if a.ndim == 1 else a + shift * ncp.eye(a.shape[1], dtype=a.dtype)

        def apply(g):
            out = g.copy()
            for name, m in shifted.items():
                sl = self.space.slice(name)
                if m.ndim == 1:
                    out[sl] = g[sl] / m
                else:
                    out[sl] = get_array_module(m).linalg.solve(m, g[sl].reshape(-1, m.shape[1], 1)).ravel()
            return out

        return apply

    def matvec(self, v):
        """:math:`D v` on the variables with a curvature, zero elsewhere.

        Parameters
        ----------
        v : array
            A packed vector.

        Returns
        -------
        array
        """
        out = get_array_module(v).zeros_like(v)
        for name, a in self.blocks.items():
            sl = self.space.slice(name)
            out[sl] = a * v[sl] if a.ndim == 1 else (a @ v[sl].reshape(-1, a.shape[1], 1)).ravel()
        return out

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}: " + ("diagonal" if a.ndim == 1 else f"{a.shape[1]}x{a.shape[1]} blocks")
                          for n, a in self.blocks.items())
        return f"Curvature({parts})"


def _checked(space, name, a, what):
    """``a`` as a float array of the variable's packed size (diagonal) or ``(m // k, k, k)`` blocks."""
    size = space[name].size * (2 if space[name].is_complex else 1)
    shape = tuple(getattr(a, "shape", ()))
    ok = shape == (size,) or len(shape) == 3 and shape[1] == shape[2] and shape[0] * shape[1] == size
    if not ok:
        msg = (f"{what} of variable {name!r} must have shape ({size},) (a diagonal) or (m, k, k) with m * k = {size} "
               f"(blocks); got {shape}")
        raise ShapeError(msg)
    return a


def _add(a, b):
    """The sum of two curvatures of one variable (a scalar ``b`` adds to the diagonal)."""
    ncp = get_array_module(a)
    if np.isscalar(b):
        if a.ndim == 1:
            return a + b
        return a + b * ncp.eye(a.shape[1], dtype=a.dtype)
    if a.ndim == 1 and b.ndim == 1:
        return a + b
    if a.ndim == 3 and b.ndim == 3 and a.shape == b.shape:
        return a + b
    if a.ndim == 3 and b.ndim == 1 or a.ndim == 1 and b.ndim == 3:
        blocks, diag = (a, b) if a.ndim == 3 else (b, a)
        k = blocks.shape[1]
        out = blocks.copy()
        idx = ncp.arange(k)
        out[:, idx, idx] += diag.reshape(-1, k)
        return out
    return ncp.diagonal(a, axis1=1, axis2=2).ravel() + ncp.diagonal(b, axis1=1, axis2=2).ravel()
