r"""Operators evaluated block by block: bounded memory for terms with many independent measurements.

A :class:`Streamed` operator's output splits along its first axis into blocks (runs of scan positions, angles,
...) that are computed from one shared intermediate :math:`s = S(u)`:

.. math:: y_b = B_b(s), \qquad \nabla_u L = J_S^H \sum_b J_{B_b}^H \nabla_{y_b} L

A data term over such an operator (:meth:`multimodal_ip.DataTerm.linearize_input`) computes the loss, its gradient
and Gauss-Newton products one block at a time, accumulating into the shared intermediate's gradient: no array the
size of the whole output is ever allocated. ``forward`` and ``jacobian`` still give the whole output (for small
problems, tests and the conformance kit).

A subclass implements the ``stream_*`` methods below; :func:`~multimodal_ip.operators.compose` of a streamed
operator after any other operator is streamed again (the other operator becomes part of the shared work).
"""

__all__ = ["Streamed", "StreamedAfter", "STREAM_BLOCK_BYTES", "BLOCK_TEMPORARIES"]

import numpy as np
from pylops import LinearOperator

from ..backend import get_array_module
from .nonlinear_operator import NonlinearOperator

#: default size of one block's output (bytes): small enough that a block's temporaries stay in cache-sized
#: buffers that are reused from block to block (measured at Np = 128: 8-32 positions a block are equally fast,
#: 128 are 20 % slower)
STREAM_BLOCK_BYTES = 4 << 20
#: output-sized arrays one block holds at once (its prediction, the loss gradient written into it, the adjoint's
#: FFT output, the data slice): what a memory target per block is divided by
BLOCK_TEMPORARIES = 4


class Streamed(NonlinearOperator):
    """Base class of block-evaluated operators (see the module docstring).

    Parameters
    ----------
    block : :obj:`int`, optional
        Output rows (indices of the first axis) per block; default: ``STREAM_BLOCK_BYTES`` of output.
    """

    def __init__(self, dims, dimsd, dtype="float64", dtyped=None, name=None, block=None):
        super().__init__(dims, dimsd, dtype=dtype, dtyped=dtyped, name=name)
        self.block = block

    # ---- to implement ------------------------------------------------------------
    def stream_prepare(self, u):
        """The shared state at input ``u`` (e.g. the complex object)."""
        raise NotImplementedError

    def stream_prepare_transient(self, u):
        """The shared state at ``u`` for one evaluation during which ``u`` stays unchanged (a loss and its gradient,
        an objective; not a Jacobian kept for later products): it may hold views of ``u`` instead of what it derives
        from them (e.g. each block's complex windows formed from the real unknowns, no complex object). Default:
        :meth:`stream_prepare`.

        Parameters
        ----------
        u : array
            The operator's input, not changed until the evaluation ends.

        Returns
        -------
        state
            What :meth:`stream_forward` and :meth:`stream_finish` take, as :meth:`stream_prepare`'s.
        """
        return self.stream_prepare(u)

    def stream_tangent(self, state, du):
        """The shared state's tangent :math:`J_S\\,du`."""
        raise NotImplementedError

    def stream_forward(self, state, rows: slice):
        """Output block ``rows`` (an array the caller owns and may overwrite)."""
        raise NotImplementedError

    def stream_jvp(self, state, tangent, rows: slice):
        """:math:`J_{B_b}` (at the state's point) applied to a shared tangent: the output block's tangent."""
        raise NotImplementedError

    def stream_accumulator(self, state):
        """A zero accumulator for :meth:`stream_vjp` (shared-state sized)."""
        raise NotImplementedError

    def stream_vjp(self, state, rows: slice, g, acc) -> None:
        """``acc += J_{B_b}^H g`` for output block ``rows`` (``g`` may be overwritten)."""
        raise NotImplementedError

    def stream_finish(self, state, acc):
        """:math:`J_S^H` of the accumulated shared gradient: the gradient in the input ``u``."""
        raise NotImplementedError

    def stream_release(self, state):
        """What :meth:`stream_finish` still needs of ``state`` once every block is done (default: all of it); the
        rest (e.g. the complex object) is freed before the finishing adjoint runs."""
        return state

    # ---- blocks ------------------------------------------------------------------------
    def _rows_for_bytes(self, target: int, arrays: int = 1) -> int:
        row_bytes = int(np.prod(self.dimsd[1:])) * self.dtyped.itemsize * arrays
        return max(1, int(target) // max(row_bytes, 1))

    def block_for_bytes(self, target: int) -> int:
        """Rows per block so that one block's temporaries stay under ``target`` bytes."""
        return self._rows_for_bytes(target, BLOCK_TEMPORARIES)

    def blocks(self) -> list:
        """Slices of the output's first axis, one per block."""
        total = self.dimsd[0]
        size = max(1, int(self.block if self.block is not None else self._rows_for_bytes(STREAM_BLOCK_BYTES)))
        return [slice(s, min(s + size, total)) for s in range(0, total, size)]

    # ---- whole-output fallbacks (small problems, tests, the conformance kit) ----------------
    def stream_whole(self, state):
        """The whole output at ``state``: every block's prediction, concatenated."""
        parts = [self.stream_forward(state, b) for b in self.blocks()]
        return get_array_module(parts[0]).concatenate(parts)

    def _forward(self, u):
        return self.stream_whole(self.stream_prepare(u))

    def _jacobian(self, u):
        return _StreamedJacobian(self, self.stream_prepare(u))

    def _linearize(self, u):
        state = self.stream_prepare(u)
        return self.stream_whole(state), _StreamedJacobian(self, state)


class _StreamedJacobian(LinearOperator):
    """The whole Jacobian of a streamed operator at one state (products block by block, output whole)."""

    def __init__(self, op: Streamed, state):
        self.op, self.state = op, state
        super().__init__(dtype=np.result_type(op.dtype, op.dtyped), shape=op.shape, dims=op.dims, dimsd=op.dimsd)

    def _matvec(self, du):
        ncp = get_array_module(du)
        du = du.reshape(self.op.dims)
        if self.op.dtype.kind == "f" and du.dtype.kind == "c":
            du = du.real
        tangent = self.op.stream_tangent(self.state, du)
        return ncp.concatenate([self.op.stream_jvp(self.state, tangent, b) for b in self.op.blocks()]).ravel()

    def _rmatvec(self, g):
        g = g.reshape(self.op.dimsd)
        acc = self.op.stream_accumulator(self.state)
        for b in self.op.blocks():
            self.op.stream_vjp(self.state, b, g[b].copy(), acc)
        return self.op.stream_finish(self.state, acc).ravel()


class StreamedAfter(Streamed):
    """``left(right(u))`` with ``left`` streamed: ``right`` (any operator) joins the shared work.

    Parameters
    ----------
    left : :class:`Streamed`
        Outer operator, evaluated block by block.
    right : :class:`~multimodal_ip.operators.NonlinearOperator` or :obj:`pylops.LinearOperator`
        Inner operator (a linear one is wrapped); its output shape must be ``left``'s input shape.
    name : :obj:`str`, optional
        Name in messages (default ``"left∘right"``).

    Raises
    ------
    ShapeError
        ``right``'s output does not match ``left``'s input.
    """

    def __init__(self, left: Streamed, right, name=None):
        from .composition import _as_nonlinear

        right = _as_nonlinear(right)
        if left.shape[1] != right.shape[0]:
            from ..errors import ShapeError

            msg = (f"cannot compose {left.name} (input shape {left.dims}) after {right.name} "
                   f"(output shape {right.dimsd})")
            raise ShapeError(msg)
        self.left, self.right = left, right
        # not Streamed.__init__: the block size is the left operator's
        NonlinearOperator.__init__(self, right.dims, left.dimsd, dtype=right.dtype, dtyped=left.dtyped,
                                   name=name or f"{left.name}∘{right.name}")

    @property
    def block(self):
        return self.left.block

    @block.setter
    def block(self, value):
        self.left.block = value

    def blocks(self) -> list:
        return self.left.blocks()

    def stream_prepare(self, u):
        s, jac = self.right.linearize(u)
        return s, jac, self.left.stream_prepare(s.reshape(self.left.dims))

    def stream_prepare_transient(self, u):
        s, jac = self.right.linearize(u)  # s is the state's own (unchanged while it is used)
        return s, jac, self.left.stream_prepare_transient(s.reshape(self.left.dims))

    def stream_tangent(self, state, du):
        _, jac, inner = state
        return self.left.stream_tangent(inner, jac.matvec(du.ravel()).reshape(self.left.dims))

    def stream_forward(self, state, rows):
        return self.left.stream_forward(state[2], rows)

    def stream_jvp(self, state, tangent, rows):
        return self.left.stream_jvp(state[2], tangent, rows)

    def stream_accumulator(self, state):
        return self.left.stream_accumulator(state[2])

    def stream_vjp(self, state, rows, g, acc) -> None:
        self.left.stream_vjp(state[2], rows, g, acc)

    def stream_release(self, state):
        return None, state[1], self.left.stream_release(state[2])

    def stream_finish(self, state, acc):
        _, jac, inner = state
        out = jac.rmatvec(self.left.stream_finish(inner, acc).ravel())
        return out.real if self.dtype.kind == "f" else out

    def __repr__(self) -> str:
        return f"{self.name}({self.left!r}, {self.right!r})"
