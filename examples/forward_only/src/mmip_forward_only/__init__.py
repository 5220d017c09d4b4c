r"""Modality ``bright-field``, written forward-only in JAX: the transmitted beam at each scan position.

.. math:: T_j = \sum K \odot S_{c_j} \exp\big(-\textstyle\sum_e \mu_e w_e\big)

(``K = |P|^2`` the beam footprint, :math:`S_{c_j}` the window at whole-pixel corner :math:`c_j`, :math:`\mu_e` the
attenuation per unit of element map :math:`w_e`). The forward function is all the physics: its Jacobian and adjoint
come from :class:`~multimodal_ip.operators.Autodiff`. It shares ``w`` with the built-in fluorescence and
ptychography terms, so one file reconstructs jointly (see ``docs/autodiff.md``).
"""

from collections.abc import Iterator

import numpy as np

from multimodal_ip import DataTerm, Variable, VariableSpace, hookimpl
from multimodal_ip.errors import ConfigError, DataError
from multimodal_ip.io import TermData
from multimodal_ip.losses import LeastSquares
from multimodal_ip.modality import Modality
from multimodal_ip.operators import NonlinearOperator
from multimodal_ip.operators.autodiff import Autodiff


def bright_field(inputs, params):
    """``(J,)`` transmitted intensities of the element maps ``inputs["w"]`` (``jax.numpy``)."""
    import jax
    import jax.numpy as jnp

    transmission = jnp.exp(-jnp.tensordot(params["mu"], inputs["w"], axes=1))
    kernel = params["kernel"]
    windows = jax.vmap(lambda c: jax.lax.dynamic_slice(transmission, (c[0], c[1]), kernel.shape))(params["corners"])
    return jnp.sum(windows * kernel, axis=(1, 2))


def bright_field_operator(kernel, corners, mu, w_shape, dtype="float64") -> NonlinearOperator:
    """The term's operator over ``w`` of shape ``w_shape`` (``(Ne, n0, n1)``)."""
    params = {"kernel": kernel, "corners": np.asarray(corners).astype(np.int32), "mu": mu}
    return Autodiff(bright_field, [Variable("w", tuple(w_shape), dtype)], params, dtype=dtype)


class BrightField:
    options: tuple[str, ...] = ("dtype",)
    split_axes = {"data": 0, "positions": 0}  # one value per position: positions split across ranks and chunks
    balance_role = "weighted"  # weighted against the reference term (ptychography) by the paper's balancing
    datasets = ("data", "kernel", "positions", "mu")

    def build_term(self, td: TermData, space: VariableSpace, *, xp=None, **options) -> DataTerm:
        if set(options) - {"dtype"}:
            msg = f"{td.where()}: unknown bright-field option(s) {sorted(set(options) - {'dtype'})}; known: dtype"
            raise ConfigError(msg)
        kernel = td.array("kernel", ndim=2, dtype_kind="f")
        data = td.array("data", ndim=1, dtype_kind="f")
        positions = td.array("positions", shape=(data.shape[0], 2), dtype_kind="fiu")
        mu = td.array("mu", ndim=1, dtype_kind="f")
        if "w" not in space or space["w"].shape[0] != mu.shape[0]:
            msg = f"{td.where('mu')}: needs a variable 'w' with {mu.shape[0]} element map(s); got {space.names}"
            raise DataError(msg)
        limit = np.array(space["w"].shape[1:]) - kernel.shape
        if np.any(positions != np.rint(positions)) or np.any(positions < 0) or np.any(positions > limit):
            msg = f"{td.where('positions')}: expected whole-pixel corners in [0, {limit.tolist()}] (windows inside w)"
            raise DataError(msg)
        dtype = np.dtype(options.get("dtype") or space.dtype)
        op = bright_field_operator(kernel, positions, mu, space["w"].shape, dtype)
        return DataTerm(op, data.astype(dtype), LeastSquares(), 1.0, ("w",), td.name)

    def conformance_cases(self, rng: np.random.Generator) -> Iterator[tuple[str, NonlinearOperator, np.ndarray]]:
        for ne, n, k in ((1, 6, 3), (2, 9, 4)):
            corners = rng.integers(0, n - k + 1, (5, 2))
            op = bright_field_operator(rng.random((k, k)), corners, 0.5 + rng.random(ne), (ne, n, n))
            yield f"Ne{ne}-n{n}-K{k}", op, rng.random((ne, n, n))

    def example_term(self, rng: np.random.Generator) -> tuple[TermData, list[Variable]]:
        kernel, mu, w = rng.random((3, 3)), np.array([0.7, 0.3]), rng.random((2, 8, 8))
        corners = np.stack(np.meshgrid(np.arange(6), np.arange(6), indexing="ij"), -1).reshape(-1, 2)
        data = np.asarray(bright_field_operator(kernel, corners, mu, w.shape).forward(w))
        arrays = {"data": data, "kernel": kernel, "positions": corners.astype(float), "mu": mu}
        return TermData("bright-field", "bright-field", arrays), [Variable("w", w.shape)]


_: Modality = BrightField()  # the type checker verifies the contract here


@hookimpl
def mmip_register_modalities(register):
    register("bright-field", BrightField())
