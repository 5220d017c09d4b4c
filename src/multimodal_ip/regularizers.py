r"""Regularizers on named variables, usable as smooth penalties (lbfgs, gauss-newton) and as
proximal operators (admm, through pyproximal).

Each one acts on 2-D images: a variable of shape ``(..., rows, cols)`` is treated as a
stack of images (e.g. one per element map).
"""

__all__ = ["Regularizer", "Tikhonov", "TotalVariation", "Box", "NonNegative", "REGULARIZERS",
           "mmip_register_regularizers"]

import numpy as np

from .backend import get_array_module
from .errors import ConfigError
from .hookspecs import hookimpl


def _gradient_op(shape, dtype):
    """Forward differences along the last two axes, stacked (rows then cols)."""
    from pylops import FirstDerivative, VStack  # here: ``mmip plugins`` loads this module (docs/architecture.md)

    return VStack(
        [FirstDerivative(shape, axis=-2, kind="forward", dtype=dtype),
         FirstDerivative(shape, axis=-1, kind="forward", dtype=dtype)]
    )


class Regularizer:
    r"""Base class: a penalty on some variables of a :class:`~multimodal_ip.JointProblem`.

    A smooth regularizer implements ``_value``, ``_value_and_gradient`` and ``_hessian_vector`` on one variable's
    array (the public methods sum them over ``variables``); a proximal one implements :meth:`prox`. The class
    attributes :attr:`is_smooth`, :attr:`has_prox` and :attr:`is_constraint` say which solvers can use it.

    Parameters
    ----------
    variables : :obj:`str` or :obj:`tuple` of :obj:`str`
        Names of the variables it penalises (each separately, with the same weight).
    weight : :obj:`float`, optional
        Strength :math:`\lambda` of the penalty.
    name : :obj:`str`, optional
        Name in reports and histories; defaults to the class name and the variables, e.g. ``totalvariation_x``.
    """

    #: usable by gradient-based solvers (``value_and_gradient``, ``hessian_vector``)
    is_smooth = False
    #: usable by proximal solvers (``prox``)
    has_prox = False
    #: a set constraint that gradient solvers can enforce by projection or bounds
    is_constraint = False

    def __init__(self, variables, weight=1.0, name=None):
        self.variables = tuple([variables] if isinstance(variables, str) else variables)
        self.weight = float(weight)
        self.name = name or f"{type(self).__name__.lower()}_{'_'.join(self.variables)}"

    # ---- per-variable pieces a smooth regularizer implements --------------------------------------------
    def _value(self, a) -> float:
        raise NotImplementedError

    def _value_and_gradient(self, a):
        raise NotImplementedError

    def _hessian_vector(self, a, da):
        raise NotImplementedError

    def value(self, arrays) -> float:
        """The penalty at ``arrays`` (``{variable: array}``, at least the regularizer's ``variables``)."""
        return float(sum(self._value(arrays[n]) for n in self.variables))

    def value_and_gradient(self, arrays):
        """``(value, {variable: gradient})`` at ``arrays``, one gradient per penalised variable."""
        vals, grads = 0.0, {}
        for n in self.variables:
            v, g = self._value_and_gradient(arrays[n])
            vals += v
            grads[n] = g
        return vals, grads

    def hessian_vector(self, arrays, darrays) -> dict:
        """``{variable: H d}``: the (Gauss-Newton) Hessian at ``arrays`` applied to the direction ``darrays``."""
        return {n: self._hessian_vector(arrays[n], darrays[n]) for n in self.variables}

    def prox(self, array, tau):
        """Proximal operator of ``tau * self`` on one variable's array."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self.variables)}, weight={self.weight:g})"


class Tikhonov(Regularizer):
    r""":math:`\tfrac{\lambda}{2}\|v\|^2` (``derivative=False``) or :math:`\tfrac{\lambda}{2}\|\nabla v\|^2`.

    Parameters
    ----------
    variables : :obj:`str` or :obj:`tuple` of :obj:`str`
        Names of the variables it penalises.
    weight : :obj:`float`, optional
        Strength :math:`\lambda`.
    derivative : :obj:`bool`, optional
        Penalise the forward differences along the last two axes instead of the values.
    name : :obj:`str`, optional
        Name in reports and histories.
    """

    is_smooth = True
    has_prox = True

    def __init__(self, variables, weight=1.0, derivative=False, name=None):
        super().__init__(variables, weight, name)
        self.derivative = bool(derivative)

    def _apply(self, a):
        if not self.derivative:
            return a
        return (_gradient_op(a.shape, a.dtype).H @ (_gradient_op(a.shape, a.dtype) @ a.ravel())).reshape(a.shape)

    def _value(self, a):
        return self._value_and_gradient(a)[0]

    def _value_and_gradient(self, a):
        g = self.weight * self._apply(a)
        return 0.5 * float(get_array_module(a).vdot(a, g).real), g

    def _hessian_vector(self, a, d):
        return self.weight * self._apply(d)

    def prox(self, array, tau):
        if not self.derivative:
            return array / (1 + tau * self.weight)
        op = _gradient_op(array.shape, array.dtype)
        import pyproximal

        f = pyproximal.L2(Op=op, sigma=self.weight, niter=20)
        return f.prox(array.ravel(), tau).reshape(array.shape)


class TotalVariation(Regularizer):
    r"""Isotropic total variation :math:`\lambda \sum \sqrt{|\nabla v|^2 + \epsilon^2}` per image.

    As a smooth penalty it uses the :math:`\epsilon`-smoothed form; as a proximal
    operator the exact isotropic TV (``pyproximal.TV``), image by image.

    Parameters
    ----------
    variables : :obj:`str` or :obj:`tuple` of :obj:`str`
        Names of the variables it penalises; the last two axes of each are an image.
    weight : :obj:`float`, optional
        Strength :math:`\lambda`.
    eps : :obj:`float`, optional
        Smoothing :math:`\epsilon` of the smooth form (not used by :meth:`prox`).
    name : :obj:`str`, optional
        Name in reports and histories.
    """

    is_smooth = True
    has_prox = True

    def __init__(self, variables, weight=1.0, eps=1e-3, name=None):
        super().__init__(variables, weight, name)
        self.eps = float(eps)

    def _parts(self, a):
        op = _gradient_op(a.shape, a.dtype)
        g = (op @ a.ravel()).reshape((2, *a.shape))
        mag = get_array_module(a).sqrt(g[0] ** 2 + g[1] ** 2 + self.eps**2)
        return op, g, mag

    def _value(self, a):
        return self.weight * float(self._parts(a)[2].sum())

    def _value_and_gradient(self, a):
        op, g, mag = self._parts(a)
        grad = op.H @ (g / mag).ravel()
        return self.weight * float(mag.sum()), self.weight * grad.reshape(a.shape)

    def _hessian_vector(self, a, d):  # lagged-diffusivity (Gauss-Newton) curvature
        op, _, mag = self._parts(a)
        gd = (op @ d.ravel()).reshape((2, *a.shape))
        return self.weight * (op.H @ (gd / mag).ravel()).reshape(a.shape)

    def prox(self, array, tau):
        images = array.reshape(-1, *array.shape[-2:])
        import pyproximal

        tv = pyproximal.TV(dims=images.shape[1:], sigma=self.weight, isotropic=True, niter=20)
        out = get_array_module(array).stack([tv.prox(im.ravel(), tau).reshape(im.shape) for im in images])
        return out.reshape(array.shape)


class Box(Regularizer):
    """Indicator of ``lower <= v <= upper`` (a constraint: bounds for L-BFGS-B, projection otherwise).

    Parameters
    ----------
    variables : :obj:`str` or :obj:`tuple` of :obj:`str`
        Names of the constrained variables.
    lower, upper : :obj:`float` or :obj:`numpy.ndarray`, optional
        Bounds: numbers, or arrays of the shape of each of ``variables`` (one bound per entry, e.g. a refined
        unknown kept within a distance of its start: :func:`~multimodal_ip.io.build_problem`'s
        ``refine_bounds``). A lower bound above its upper bound is a :class:`~multimodal_ip.errors.ConfigError`.
    name : :obj:`str`, optional
        Name in reports and histories.
    """

    has_prox = True
    is_constraint = True

    def __init__(self, variables, lower=-np.inf, upper=np.inf, name=None):
        super().__init__(variables, 0.0, name)
        self.lower, self.upper = _bound(lower), _bound(upper)
        if np.any(np.asarray(self.lower) > np.asarray(self.upper)):
            msg = f"{type(self).__name__}: a lower bound exceeds its upper bound"
            raise ConfigError(msg)

    def value(self, arrays) -> float:
        ok = all(bool(((arrays[n] >= self._on(arrays[n], self.lower) - 1e-12)
                       & (arrays[n] <= self._on(arrays[n], self.upper) + 1e-12)).all()) for n in self.variables)
        return 0.0 if ok else float("inf")

    @staticmethod
    def _on(array, b):
        """``b`` on the array module and in the shape of ``array`` (a variable, or its packed slice; per-entry
        bounds are kept on the host)."""
        return b if np.ndim(b) == 0 else get_array_module(array).asarray(b, dtype=array.dtype).reshape(array.shape)

    def prox(self, array, tau):
        return get_array_module(array).clip(array, self._on(array, self.lower), self._on(array, self.upper))

    project = prox

    def __repr__(self) -> str:
        def show(b):
            return f"{b:g}" if np.ndim(b) == 0 else f"per-entry {np.min(b):g}..{np.max(b):g}"

        return f"{type(self).__name__}({list(self.variables)}, [{show(self.lower)}, {show(self.upper)}])"


def _bound(b):
    """A bound as a float, or a float array when given per entry."""
    return float(b) if np.ndim(b) == 0 else np.asarray(b, dtype=float)


class NonNegative(Box):
    """Indicator of ``v >= 0``.

    Parameters
    ----------
    variables : :obj:`str` or :obj:`tuple` of :obj:`str`
        Names of the constrained variables.
    name : :obj:`str`, optional
        Name in reports and histories.
    """

    def __init__(self, variables, name=None):
        super().__init__(variables, 0.0, np.inf, name)


REGULARIZERS = {"tikhonov": Tikhonov, "tv": TotalVariation, "box": Box, "nonnegative": NonNegative}


@hookimpl
def mmip_register_regularizers(register):
    """Register the built-in regularizers (hook ``mmip_register_regularizers``).

    Parameters
    ----------
    register : :obj:`callable`
        ``register(name, cls)``: adds a regularizer class under a name (``tv``, ``box``, ...).
    """
    for name, cls in REGULARIZERS.items():
        register(name, cls)
