__all__ = ["Composition", "compose"]

from pylops import LinearOperator

from ..errors import ShapeError
from .linear import Linear
from .nonlinear_operator import NonlinearOperator


def _as_nonlinear(op) -> NonlinearOperator:
    if isinstance(op, NonlinearOperator):
        return op
    if isinstance(op, LinearOperator):
        return Linear(op)
    msg = f"cannot compose {type(op).__name__}: expected a NonlinearOperator or a pylops LinearOperator"
    raise TypeError(msg)


class Composition(NonlinearOperator):
    r"""Chain rule: :math:`(L \circ R)(x) = L(R(x))`, :math:`J = J_L(R(x))\, J_R(x)`.

    ``R(x)`` is computed once and shared between the value and the Jacobian.

    Parameters
    ----------
    left, right : :class:`NonlinearOperator` or :class:`pylops.LinearOperator`
        Outer and inner operator; pylops operators are wrapped in :class:`Linear`.
    """

    def __init__(self, left, right, name=None):
        left, right = _as_nonlinear(left), _as_nonlinear(right)
        if left.shape[1] != right.shape[0]:
            msg = (
                f"cannot compose {left.name} (input shape {left.dims}) after {right.name} "
                f"(output shape {right.dimsd})"
            )
            raise ShapeError(msg)
        self.left, self.right = left, right
        super().__init__(right.dims, left.dimsd, dtype=right.dtype, dtyped=left.dtyped, name=name or "Composition")

    def _forward(self, x):
        return self.left.forward(self.right.forward(x).reshape(self.left.dims))

    def _jacobian(self, x):
        return self._linearize(x)[1]

    def _linearize(self, x):
        y, jr = self.right.linearize(x)
        z, jl = self.left.linearize(y.reshape(self.left.dims))
        return z, jl @ jr

    def __repr__(self) -> str:
        return f"{self.name}({self.left!r}, {self.right!r})"


def compose(*ops) -> NonlinearOperator:
    """``compose(A, B, C)`` is ``A(B(C(x)))``; pylops operators may appear anywhere.

    Parameters
    ----------
    *ops : :class:`NonlinearOperator` or :class:`pylops.LinearOperator`
        Two or more operators, the last applied first; a streamed operator stays streamed
        (:class:`StreamedAfter`).

    Returns
    -------
    :class:`NonlinearOperator`
        The composition, with the chain rule's Jacobian.
    """
    if len(ops) < 2:
        msg = "compose needs at least two operators"
        raise ValueError(msg)
    from .streamed import Streamed, StreamedAfter

    out = ops[-1]
    for op in reversed(ops[:-1]):
        # a streamed operator stays streamed: what it reads becomes part of its shared work
        out = StreamedAfter(op, out) if isinstance(op, Streamed) else Composition(op, out)
    return out
