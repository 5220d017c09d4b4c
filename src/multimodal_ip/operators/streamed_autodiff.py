r"""A forward model written in JAX and evaluated block by block: :class:`~multimodal_ip.operators.Autodiff` as a
:class:`~multimodal_ip.operators.Streamed` operator.

The output's first axis runs over independent measurements (scan positions, angles) and so does the first axis of
the parameters named in ``rows`` (their positions, angles): block :math:`b` of the output is ``forward(inputs,
params[b])``, the parameters in ``rows`` sliced to the block. The data term then computes the loss, its gradient and
Gauss-Newton products one block at a time (no whole-output array), as for a hand-written streamed model.
"""

__all__ = ["StreamedAutodiff"]

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..errors import ShapeError
from ..variables import Variable
from .autodiff import Autodiff
from .streamed import Streamed


class StreamedAutodiff(Streamed):
    """:class:`~multimodal_ip.operators.Autodiff` evaluated a block of output rows at a time.

    Parameters
    ----------
    forward : callable
        ``forward(inputs, params) -> prediction``, as for :class:`~multimodal_ip.operators.Autodiff`; given the
        parameters in ``rows`` sliced to a block, it returns that block's rows.
    variables : sequence of :class:`~multimodal_ip.Variable`
        The variables the term reads.
    params : mapping
        Fixed arrays.
    rows : sequence of :obj:`str`
        The parameters whose first axis is the output's first axis (sliced per block).
    dtype : :obj:`str`, optional
        Real precision.
    name : :obj:`str`, optional
        Name in messages.
    block : :obj:`int`, optional
        Output rows per block (default: ``STREAM_BLOCK_BYTES`` of output, as every streamed operator).

    Notes
    -----
    Each block is compiled once per block length (at most two: the full blocks and the last). ``stream_forward``
    keeps the block's JAX residuals until the next block, so the gradient pass that follows it (the data term's
    loop) costs one backward pass per block, no second forward.
    """

    def __init__(self, forward: Callable, variables: Sequence[Variable], params: Mapping, rows: Sequence[str],
                 dtype=None, name=None, block=None):
        self.whole = Autodiff(forward, variables, params, dtype=dtype, name=name)
        self.rows = tuple(rows)
        total = self.whole.dimsd[0]
        for key in self.rows:
            if key not in self.whole.params or self.whole.params[key].shape[:1] != (total,):
                msg = f"StreamedAutodiff: parameter {key!r} must have {total} rows (the output's first axis)"
                raise ShapeError(msg)
        super().__init__(self.whole.dims, self.whole.dimsd, dtype=self.whole.dtype, dtyped=self.whole.dtyped,
                         name=name or f"Streamed{self.whole.name}", block=block)

    def _params(self, rows: slice) -> dict:
        p = self.whole.params
        return {k: (v[rows] if k in self.rows else v) for k, v in p.items()}

    def stream_prepare(self, u):
        return {"u": self.whole.to_jax(u, copy=True), "kept": None}

    def stream_tangent(self, state, du):
        return self.whole.to_jax(du)

    def stream_forward(self, state, rows):
        y, pullback = self.whole._value_and_pullback(state["u"], self._params(rows))
        state["kept"] = (rows, pullback)  # the residuals of this block, for the adjoint that follows
        return np.array(y)  # a block-sized copy the caller owns (the loss may overwrite it)

    def stream_jvp(self, state, tangent, rows):
        return np.array(self.whole._jvp(state["u"], tangent, self._params(rows)))

    def stream_accumulator(self, state):
        return np.zeros(self.dims, dtype=self.dtype)

    def stream_vjp(self, state, rows, g, acc) -> None:
        import jax

        kept = state["kept"]
        if kept is not None and kept[0] == rows:
            pullback = kept[1]
        else:
            pullback = self.whole._value_and_pullback(state["u"], self._params(rows))[1]
        g = np.ascontiguousarray(g.real if self.dtyped.kind == "f" and np.iscomplexobj(g) else g, dtype=self.dtyped)
        acc += np.asarray(self.whole._pull(pullback, jax.device_put(g)))

    def stream_release(self, state):
        return None

    def stream_finish(self, state, acc):
        return acc
