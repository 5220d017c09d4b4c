__all__ = ["ComplexCoupling"]

import numpy as np
from pylops import LinearOperator

from multimodal_ip.backend import complex_dtype, get_array_module
from multimodal_ip.errors import ConfigError


class ComplexCoupling(LinearOperator):
    r"""Real unknowns to one complex array: :math:`z = x + i \sum_e a_e w_e`.

    The input is the packed real vector ``[x.ravel(); w.ravel()]`` (the packing of
    a :class:`~multimodal_ip.VariableSpace` holding ``x`` of shape ``shape`` and
    ``w`` of shape ``(ne, *shape)``), the output the complex array of shape ``shape``.

    Parameters
    ----------
    shape : :obj:`tuple`
        Shape of ``x`` and of each ``w_e``.
    ne : :obj:`int`
        Number of imaginary-part maps ``w_e``.
    coefficients : array-like, optional
        Per-map weights :math:`a_e` (default all ones: the paper's coupling).
    dtype : :obj:`str`, optional
        Real input dtype; the output is the matching complex dtype.

    Notes
    -----
    Only :math:`\mathbb{R}`-linear (``clinear=False``). Adjoint with respect to
    :math:`\Re\langle\cdot,\cdot\rangle`: :math:`\bar x = \Re r`,
    :math:`\bar w_e = a_e \Im r`.
    """

    def __init__(self, shape, ne, coefficients=None, dtype="float64", name="ComplexCoupling"):
        shape = tuple(int(s) for s in shape)
        self.ne = int(ne)
        self.npix = int(np.prod(shape))
        coef = np.ones(self.ne) if coefficients is None else np.asarray(coefficients, dtype=float).ravel()
        if coef.shape != (self.ne,):
            msg = f"ComplexCoupling: need {self.ne} coefficients, got {coef.shape[0]}"
            raise ValueError(msg)
        with np.errstate(over="ignore"):
            self.coefficients = coef.astype(dtype)
        if not np.all(np.isfinite(self.coefficients)):
            msg = (f"coupling coefficients {coef.tolist()} do not fit the compute precision {np.dtype(dtype)} "
                   f"(largest {np.finfo(dtype).max:.3g}); use smaller ones or dtype float64")
            raise ConfigError(msg)
        self.dtype_in = np.dtype(dtype)
        super().__init__(
            dtype=complex_dtype(dtype),
            dims=(self.npix * (1 + self.ne),),
            dimsd=shape,
            clinear=False,
            name=name,
        )

    def _matvec(self, v):
        ncp = get_array_module(v)
        x = v[: self.npix]
        w = v[self.npix :].reshape(self.ne, self.npix)
        coef = ncp.asarray(self.coefficients, dtype=v.dtype)
        out = ncp.empty(self.npix, dtype=complex_dtype(v.dtype))  # written in place: no complex temporaries
        out.real = x
        out.imag = coef @ w
        return out

    def _rmatvec(self, r):
        ncp = get_array_module(r)
        coef = ncp.asarray(self.coefficients, dtype=r.real.dtype)
        out = ncp.empty(self.npix * (1 + self.ne), dtype=r.real.dtype)
        out[: self.npix] = r.real
        ncp.multiply(coef[:, None], r.imag[None, :], out=out[self.npix :].reshape(self.ne, self.npix))
        return out
