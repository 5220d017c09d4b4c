"""Toy modality ``toy``: attenuation-like measurements ``y = exp(-A x)`` of a real map ``x``.

A complete third-party modality: the two required methods of the contract (``build_term``,
``conformance_cases``) and the optional capabilities (``split_axes``, ``balance_role``, ``variables``,
``example_term``); see ``docs/plugins.md``. The numerics (pylops, the operators, the data term) are imported in
the methods that use them, so that ``mmip plugins`` loads this module without them (docs/plugins.md, "Start-up time").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from multimodal_ip import Variable, hookimpl
from multimodal_ip.errors import DataError
from multimodal_ip.losses import LeastSquares
from multimodal_ip.modality import Modality

if TYPE_CHECKING:
    from multimodal_ip import DataTerm, VariableSpace
    from multimodal_ip.io import TermData
    from multimodal_ip.operators.nonlinear_operator import NonlinearOperator


def toy_operator(matrix, shape) -> NonlinearOperator:
    """``x (shape, n values) -> exp(-M x.ravel())``: a pylops matrix composed with an elementwise exponential."""
    import pylops

    from multimodal_ip.operators import Exp, Linear, compose

    m = pylops.MatrixMult(-1.0 * matrix, dtype="float64")  # numpy or cupy: the matrix's own array module
    m.dims = tuple(np.atleast_1d(shape))  # the variable's own shape, read flattened
    return compose(Exp(m.shape[0]), Linear(m, name="MinusM"))


class Toy:
    options: tuple[str, ...] = ()
    split_axes = {"data": 0, "matrix": 0}  # one measurement per row: rows split across ranks and chunks
    balance_role = "none"  # no opinion: a joint problem with toy names its balancing reference
    datasets = ("matrix", "data")  # the loader reads only these

    def variables(self, td: TermData) -> list[Variable]:
        return [Variable(str(td.attrs.get("variable", "x")), (int(np.shape(td.arrays["matrix"])[1]),))]

    def build_term(self, td: TermData, space: VariableSpace, *, xp=None, **options) -> DataTerm:
        from multimodal_ip import DataTerm

        matrix = td.array("matrix", ndim=2, dtype_kind="f")
        data = td.array("data", ndim=1, dtype_kind="f", shape=(matrix.shape[0],))
        var = str(td.attrs.get("variable", "x"))
        if var not in space or space[var].size != matrix.shape[1]:
            msg = f"{td.where('matrix')}: needs a variable {var!r} of size {matrix.shape[1]}"
            raise DataError(msg)
        if xp is not None:  # the backend's arrays (cupy on a GPU): the operator computes where its matrix lives
            matrix, data = xp.asarray(matrix), xp.asarray(data)
        op = toy_operator(matrix, space[var].shape)
        return DataTerm(op, data, LeastSquares(), 1.0, (var,), td.name)

    def conformance_cases(self, rng: np.random.Generator) -> Iterator[tuple[str, NonlinearOperator, np.ndarray]]:
        for m, n in ((3, 2), (7, 5)):
            yield f"{m}x{n}", toy_operator(0.3 * rng.standard_normal((m, n)), n), rng.standard_normal(n)

    def example_term(self, rng: np.random.Generator) -> tuple[TermData, list[Variable]]:
        from multimodal_ip.io import TermData

        matrix = 0.3 * rng.standard_normal((7, 4))
        data = np.exp(-matrix @ rng.standard_normal(4))
        return TermData("toy", "toy", {"matrix": matrix, "data": data}), [Variable("x", (4,))]


_: Modality = Toy()  # the type checker verifies the contract here


@hookimpl
def mmip_register_modalities(register):
    register("toy", Toy())
