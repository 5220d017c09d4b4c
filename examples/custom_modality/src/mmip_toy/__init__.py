"""Toy modality ``toy``: attenuation-like measurements ``y = exp(-A x)`` of a real map ``x``."""

import numpy as np
import pylops

from multimodal_ip import DataTerm, hookimpl
from multimodal_ip.errors import DataError
from multimodal_ip.losses import LeastSquares
from multimodal_ip.operators import Exp, Linear, compose


def toy_operator(matrix, n):
    """``x (n,) -> exp(-M x)``: a pylops matrix composed with an elementwise exponential."""
    m = pylops.MatrixMult(-np.asarray(matrix, dtype=float), dtype="float64")
    return compose(Exp(m.shape[0]), Linear(m, name="MinusM"))


class Toy:
    def build_term(self, td, space, xp=None, **options):
        matrix = td.array("matrix", ndim=2, dtype_kind="f")
        data = td.array("data", ndim=1, dtype_kind="f", shape=(matrix.shape[0],))
        var = str(td.attrs.get("variable", "x"))
        if var not in space or space[var].size != matrix.shape[1]:
            msg = f"{td.where('matrix')}: needs a variable {var!r} of size {matrix.shape[1]}"
            raise DataError(msg)
        op = toy_operator(matrix, matrix.shape[1])
        if space[var].shape != (matrix.shape[1],):
            op = compose(op, Linear(pylops.Reshape(space[var].shape, (matrix.shape[1],))))
        return DataTerm(op, data, LeastSquares(), 1.0, (var,), td.name)

    def conformance_cases(self, rng):
        for m, n in ((3, 2), (7, 5)):
            yield f"{m}x{n}", toy_operator(0.3 * rng.standard_normal((m, n)), n), rng.standard_normal(n)


@hookimpl
def mmip_register_modalities(register):
    register("toy", Toy())
