r"""The ptychography model written forward-only in JAX: the second implementation of
:class:`~mmip_ptychography.PtychographyModel` (term option ``implementation = "jax"``), its Jacobian and adjoint
derived by :class:`~multimodal_ip.operators.Autodiff`.

.. math:: \Psi_j = F\big(P \odot S_{c_j} z\big),\quad z = x + i \textstyle\sum_e a_e w_e

Whole-pixel positions, the probe fixed or refined (``refine=("probe",)``); sub-pixel or refined positions are the
hand-written model's (cubic windows).
"""

__all__ = ["ptychography_forward", "ptychography_autodiff", "autodiff_cases"]

import numpy as np

from multimodal_ip import Variable
from multimodal_ip.errors import ConfigError

from .far_field import validate_positions


def ptychography_forward(inputs, params):
    r"""Exit-wave spectra :math:`\Psi_j = \mathrm{fftshift}(F_{\text{ortho}}(P \odot S_{c_j} z))` in ``jax.numpy``.

    Parameters
    ----------
    inputs : :obj:`dict`
        ``x`` ``(n0, n1)`` and ``w`` ``(Ne, n0, n1)`` real; ``probe`` ``(Np0, Np1)`` complex when refined.
    params : :obj:`dict`
        ``coefficients`` ``(Ne,)``, ``corners`` ``(J, 2)`` integer top-left corners, ``probe`` (the fixed probe).

    Returns
    -------
    :obj:`jax.Array`
        ``(J, Np0, Np1)`` complex spectra.
    """
    import jax
    import jax.numpy as jnp

    z = inputs["x"] + 1j * jnp.tensordot(params["coefficients"], inputs["w"], axes=1)
    probe = inputs.get("probe", params["probe"])
    window = probe.shape
    patches = jax.vmap(lambda c: jax.lax.dynamic_slice(z, (c[0], c[1]), window))(params["corners"])
    return jnp.fft.fftshift(jnp.fft.fft2(probe * patches, norm="ortho"), axes=(-2, -1))


def ptychography_autodiff(probe, positions_px, object_shape, n_elements, coefficients=None, dtype="float64",
                          refine=(), block=None):
    """The JAX form of the modality's model over the packed ``[x; w]`` (and the probe when refined).

    Parameters
    ----------
    probe : :obj:`numpy.ndarray`
        Complex probe ``(Np0, Np1)`` (the start value when refined).
    positions_px : :obj:`numpy.ndarray`
        ``(J, 2)`` whole-pixel top-left corners; every window inside the object.
    object_shape : :obj:`tuple`
        ``(n0, n1)``.
    n_elements : :obj:`int`
        Number of element maps.
    coefficients : array-like, optional
        Coupling :math:`a_e` (default ones).
    dtype : :obj:`str`, optional
        Real precision.
    refine : :obj:`tuple` of :obj:`str`, optional
        ``()`` or ``("probe",)``; positions and the affine map are refined by the hand-written model only.
    block : :obj:`int`, optional
        Positions per block: a :class:`~multimodal_ip.operators.StreamedAutodiff` (evaluated a block at a time);
        default ``None``, one evaluation of the whole scan.

    Returns
    -------
    :class:`~multimodal_ip.operators.Autodiff` or :class:`~multimodal_ip.operators.StreamedAutodiff`
        ``[x; w(; probe)] -> (J, Np0, Np1)`` complex spectra.
    """
    from multimodal_ip.operators import Autodiff, StreamedAutodiff

    refine = tuple(refine)
    if set(refine) - {"probe"}:
        msg = (f"ptychography implementation 'jax' refines only the probe; got refine {list(refine)} (positions and "
               "the affine map: the hand-written implementation)")
        raise ConfigError(msg)
    positions = np.asarray(positions_px, dtype=float)
    if not np.all(positions == np.rint(positions)):
        msg = ("ptychography implementation 'jax' takes whole-pixel positions; sub-pixel ones need the hand-written "
               "implementation (cubic windows)")
        raise ConfigError(msg)
    corners = validate_positions(positions, tuple(object_shape), probe.shape)
    ne = int(n_elements)
    coef = np.ones(ne) if coefficients is None else np.asarray(coefficients, dtype=float).ravel()
    cdtype = np.result_type(dtype, np.complex64)
    variables = [Variable("x", tuple(object_shape), dtype), Variable("w", (ne, *object_shape), dtype)]
    if "probe" in refine:
        variables.append(Variable("probe", tuple(probe.shape), cdtype))
    params = {"coefficients": coef, "corners": corners.astype(np.int32), "probe": np.asarray(probe)}
    label = "+".join(("object", *refine))
    name = f"PtychographyJax[{label}]"
    op = Autodiff(ptychography_forward, variables, params, dtype=dtype, name=name) if block is None else \
        StreamedAutodiff(ptychography_forward, variables, params, ("corners",), dtype=dtype, name=name, block=block)
    op.refine = refine  # the calibration unknowns it reads, as PtychographyModel.refine
    return op


def autodiff_cases(rng):
    """``(case, hand-written model, JAX model, point)`` for the conformance kit's opt-in comparison: fixed and refined
    probe, one and two elements, float64 and float32.

    Parameters
    ----------
    rng : :obj:`numpy.random.Generator`
        Draws the probes, coefficients and points.

    Returns
    -------
    :obj:`list` of :obj:`tuple`
        The cases.
    """
    from .ptychography_model import PtychographyModel
    from .scan import raster_positions

    out = []
    for n, npx, step, ne, refine, dtype in ((12, 4, 3, 1, (), "float64"), (16, 8, 4, 2, (), "float32"),
                                           (10, 4, 2, 2, ("probe",), "float64")):
        probe = rng.standard_normal((npx, npx)) + 1j * rng.standard_normal((npx, npx))
        pos = raster_positions(n, npx, step_px=step)
        coef = 0.5 + rng.random(ne)
        hand = PtychographyModel(probe, pos, (n, n), ne, refine=refine, coefficients=coef, dtype=dtype)
        auto = ptychography_autodiff(probe, pos, (n, n), ne, coefficients=coef, dtype=dtype, refine=refine)
        x = np.concatenate([1 + rng.random(n * n * (1 + ne))] + [probe.view(float).ravel()] * ("probe" in refine))
        out.append((f"n{n}-Np{npx}-Ne{ne}-{'-'.join(refine) or 'fixed'}-{dtype}", hand, auto, x.astype(dtype)))
    return out
