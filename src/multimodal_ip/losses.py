r"""Misfits between a prediction :math:`y` and data :math:`d`: value and gradient in :math:`y`.

Gradients are with respect to the real inner product, so for a complex
prediction the gradient is the complex array :math:`g` with
:math:`\delta L = \Re\langle g, \delta y\rangle`.
"""

__all__ = ["Loss", "LeastSquares", "Amplitude", "Poisson", "get_loss", "LOSSES", "root_poisson_misfit"]

import numpy as np

from .backend import get_array_module
from .errors import ConfigError


class Loss:
    r"""Base class: ``value(y, d)``, ``gradient(y, d)`` and ``value_and_gradient(y, d)``.

    A subclass implements :meth:`value_and_gradient` (and :meth:`elementwise` when it is a sum over measured
    values, for held-out validation; :meth:`curvature_sqrt` when its Gauss-Newton curvature is not :math:`s\,I`).

    Parameters
    ----------
    scale : :obj:`float`, optional
        :math:`s`, multiplies value and gradient (e.g. ``1/J`` to average over J measurements).
    """

    #: name used in configuration files and the CLI
    name = "loss"

    def __init__(self, scale: float = 1.0):
        self.scale = float(scale)

    def value(self, y, d) -> float:
        """The loss of the prediction ``y`` against the data ``d`` (arrays of the same shape)."""
        return self.value_and_gradient(y, d)[0]

    def gradient(self, y, d):
        """The gradient in ``y`` (for the real inner product), shaped like ``y``."""
        return self.value_and_gradient(y, d)[1]

    def value_and_gradient(self, y, d):
        """``(value, gradient)`` in one evaluation: what a subclass implements."""
        raise NotImplementedError

    def value_and_gradient_(self, y, d):
        """:meth:`value_and_gradient` that may overwrite ``y`` (a prediction the caller owns and no longer
        needs): a loss that can write its gradient into ``y`` saves the memory traffic of new arrays."""
        return self.value_and_gradient(y, d)

    def curvature_sqrt(self, y, d):
        r"""Return :math:`M^{1/2}` as a function, where the Gauss-Newton Hessian in prediction space is
        :math:`M` (so that :math:`H_{GN} = J^H M J`). Default: :math:`\sqrt{s}\,I`."""
        root = self.scale**0.5
        return lambda delta: root * delta

    def noise_misfit(self, y, photons_per_unit: float):
        r"""The expected value of this loss if ``y`` were the truth and the data counts :math:`k \sim
        \mathrm{Poisson}(p\,\mu)` divided by :math:`p` = ``photons_per_unit`` (:math:`\mu` the intensity ``y``
        predicts): the misfit the noise alone leaves (``--stop noise``). ``None``: this loss has no such noise model."""
        return None

    def elementwise(self, y, d):
        """``(values, gradient)``: the loss of every measured value (an array shaped like ``d``, summing to
        :meth:`Loss.value`) and the gradient. Needed for held-out validation; a loss that is not a sum over the
        measured values cannot hold values out."""
        msg = f"{type(self).__name__} is not a sum over measured values: it cannot hold values out for validation"
        raise NotImplementedError(msg)

    def split(self, y, d, held):
        """``(fit value, fit gradient, held-out value)`` with the values where ``held`` is true left out of the fit
        and summed into the held-out value (one evaluation of the prediction serves both)."""
        ncp = get_array_module(y)
        values, grad = self.elementwise(y, d)
        held = held.reshape(values.shape)
        out = float(ncp.sum(values[held]))
        fit = float(ncp.sum(values)) - out
        grad = ncp.where(held.reshape(grad.shape), 0, grad)
        return fit, grad, out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self.scale:g})"


class LeastSquares(Loss):
    r""":math:`L = \tfrac{s}{2}\|y - d\|^2`, :math:`\nabla L = s(y - d)`.

    Parameters
    ----------
    scale : :obj:`float`, optional
        :math:`s`, multiplies value and gradient (e.g. ``1/J`` to average over J measurements).
    """

    name = "least-squares"

    def value_and_gradient(self, y, d):
        r = y - d
        ncp = get_array_module(r)
        value = 0.5 * self.scale * float(ncp.vdot(r, r).real)
        r *= self.scale  # the residual becomes the gradient in place (no second data-sized array)
        return value, r

    def elementwise(self, y, d):
        r = y - d
        return 0.5 * self.scale * (r.real**2 + r.imag**2 if get_array_module(r).iscomplexobj(r) else r * r), \
            self.scale * r

    def noise_misfit(self, y, photons_per_unit: float):
        # E (d - mu)^2 = mu / p for Poisson counts / p, mu = y (a real intensity); a complex prediction has none
        ncp = get_array_module(y)
        if ncp.iscomplexobj(y):
            return None
        return 0.5 * self.scale * float(ncp.sum(ncp.maximum(y, 0))) / float(photons_per_unit)

    def split(self, y, d, held):
        # the residual zeroed where held out: two extra reductions, no per-value array of losses
        r = y - d
        ncp = get_array_module(r)
        total = float(ncp.vdot(r, r).real)
        r[held.reshape(r.shape)] = 0
        fit = float(ncp.vdot(r, r).real)
        return 0.5 * self.scale * fit, self.scale * r, 0.5 * self.scale * (total - fit)


class Amplitude(Loss):
    r"""Gaussian misfit on amplitudes: :math:`L = \tfrac{s}{2}\| |y| - \sqrt{d} \|^2`.

    :math:`\nabla L = s(|y| - \sqrt d)\, y/|y|` (0 where :math:`y = 0`). ``y`` may be the
    complex exit wave (its modulus is taken here) or a non-negative amplitude.

    Parameters
    ----------
    scale : :obj:`float`, optional
        :math:`s`, multiplies value and gradient (e.g. ``1/J`` to average over J measurements).
    """

    name = "amplitude"

    def __init__(self, scale: float = 1.0):
        super().__init__(scale)
        self._data = self._sqrt_data = None

    def _sqrt(self, d):
        if self._data is not d:  # the data of a term never change: take the square root once
            self._data, self._sqrt_data = d, get_array_module(d).sqrt(get_array_module(d).maximum(d, 0))
        return self._sqrt_data

    def _residual(self, y, d):
        """``(|y|, |y| - sqrt(d))``."""
        a = get_array_module(y).abs(y)
        return a, a - self._sqrt(d)

    def _gradient(self, y, a, r):
        r""":math:`s\,r\,y/|y|` (0 where :math:`y = 0`)."""
        ncp = get_array_module(y)
        ratio = ncp.divide(r, a, out=ncp.zeros_like(a), where=a > 0) if ncp is np else \
            ncp.where(a > 0, r / ncp.where(a > 0, a, 1), 0)
        ratio *= self.scale
        return ratio * y

    def value_and_gradient(self, y, d):
        a, r = self._residual(y, d)
        return 0.5 * self.scale * float(get_array_module(r).vdot(r, r).real), self._gradient(y, a, r)

    def value_and_gradient_(self, y, d):
        # one fused pass (multimodal_ip.kernels): |y|, the residual, its sum of squares and the gradient in y
        if self._data is not d and getattr(getattr(y, "flags", None), "writeable", True):
            from .kernels import amplitude_misfit_

            return 0.5 * self.scale * amplitude_misfit_(y, d, self.scale), y
        return self.value_and_gradient(y, d)

    def elementwise(self, y, d):
        a, r = self._residual(y, d)
        return 0.5 * self.scale * r * r, self._gradient(y, a, r)

    def split(self, y, d, held):
        # the amplitude residual zeroed where held out (its gradient there is then zero too): two extra reductions
        a, r = self._residual(y, d)
        ncp = get_array_module(r)
        total = float(ncp.vdot(r, r).real)
        r[held.reshape(r.shape)] = 0
        fit = float(ncp.vdot(r, r).real)
        return 0.5 * self.scale * fit, self._gradient(y, a, r), 0.5 * self.scale * (total - fit)

    def noise_misfit(self, y, photons_per_unit: float):
        # E (sqrt(k) - sqrt(lam))^2 / p per value, lam = p |y|^2: about 1/4 for bright values, 2 lam for dark ones
        p = float(photons_per_unit)
        lam = get_array_module(y).abs(y).astype(float) ** 2 * p
        return 0.5 * self.scale * float(root_poisson_misfit(lam).sum()) / p

    def curvature_sqrt(self, y, d):
        # GN of | |y| - a |^2: projection onto the phase direction u = y/|y| (idempotent, so M^1/2 = M)
        return _phase_projection(y, self.scale**0.5)


class Poisson(Loss):
    r"""Poisson negative log-likelihood of counts :math:`N = p\,d` given intensity :math:`\mu = |y|^2`
    (or :math:`\mu = y` for a real, non-negative prediction with ``intensity=True``):

    .. math:: L = s\, p \sum \big(\mu - d \log(\mu + \epsilon)\big) + \text{const}

    Parameters
    ----------
    photons_per_unit : :obj:`float`
        Photon scale :math:`p` of the data (counts = ``p * d``).
    intensity : :obj:`bool`, optional
        ``True``: the prediction is the intensity itself; ``False`` (default): the
        prediction is an amplitude/exit wave and :math:`\mu = |y|^2`.
    eps : :obj:`float`, optional
        Floor that keeps :math:`\log` finite where the model is dark.
    scale : :obj:`float`, optional
        :math:`s`, multiplies value and gradient.

    Notes
    -----
    With ``intensity=True`` the prediction can go negative during a solve, where the likelihood is undefined
    (and :math:`\mu - d\log(\max(\mu, 0) + \epsilon)` falls without bound). Below
    :math:`\mu_0 = \max(\epsilon, 10^{-6}\,\overline{|d|})` the loss is continued by its second-order expansion at
    :math:`\mu_0` with curvature :math:`s\max(d, \mu_0)/\mu_0^2`: convex, continuously differentiable, and bounded
    below (its minimum for :math:`d = 0` is at :math:`\mu = 0`).
    """

    name = "poisson"

    def __init__(self, photons_per_unit: float = 1.0, intensity: bool = False, eps: float = 1e-9, scale=1.0):
        super().__init__(scale)
        self.photons_per_unit = float(photons_per_unit)
        self.intensity = bool(intensity)
        self.eps = float(eps)
        self._floor_data: object = None
        self._floor_value = 0.0

    def _floor(self, d) -> float:
        if self._floor_data is not d:  # the data of a term never change: one pass over them, once
            self._floor_data = d
            self._floor_value = max(self.eps, 1e-6 * float(get_array_module(d).mean(get_array_module(d).abs(d))))
        return self._floor_value

    def value_and_gradient(self, y, d):
        ncp = get_array_module(y)
        s = self.scale * self.photons_per_unit
        if self.intensity:  # mu = y may go negative: quadratic continuation below mu0 (see Notes)
            mu0 = self._floor(d)
            low = y < mu0
            mu = ncp.where(low, mu0, y)
            val = s * (mu - d * ncp.log(mu))
            dmu = s * (1 - d / mu)
            if bool(ncp.any(low)):
                t = ncp.where(low, y - mu0, 0)
                k = s * ncp.maximum(d, mu0) / mu0**2
                val = val + ncp.where(low, dmu * t + 0.5 * k * t * t, 0)
                dmu = dmu + ncp.where(low, k * t, 0)
            return float(ncp.sum(val)), dmu
        mu = y.real**2 + y.imag**2 if ncp.iscomplexobj(y) else y * y
        mu_eps = mu + self.eps
        val = s * float(ncp.sum(mu - d * ncp.log(mu_eps)))
        return val, 2 * s * (1 - d / mu_eps) * y

    def elementwise(self, y, d):
        ncp = get_array_module(y)
        s = self.scale * self.photons_per_unit
        if self.intensity:
            mu0 = self._floor(d)
            low = y < mu0
            mu = ncp.where(low, mu0, y)
            t = ncp.where(low, y - mu0, 0)
            k = s * ncp.maximum(d, mu0) / mu0**2
            dmu = s * (1 - d / mu)
            return s * (mu - d * ncp.log(mu)) + ncp.where(low, dmu * t + 0.5 * k * t * t, 0), \
                dmu + ncp.where(low, k * t, 0)
        mu = y.real**2 + y.imag**2 if ncp.iscomplexobj(y) else y * y
        mu_eps = mu + self.eps
        return s * (mu - d * ncp.log(mu_eps)), 2 * s * (1 - d / mu_eps) * y

    def curvature_sqrt(self, y, d):
        ncp = get_array_module(y)
        s = self.scale * self.photons_per_unit
        if self.intensity:  # Fisher information p/mu
            root = ncp.sqrt(s / ncp.maximum(y, self._floor(d)))
            return lambda delta: root * delta
        # mu = |y|^2: Fisher information in y is 4 p along the phase direction (variance-stabilised)
        return _phase_projection(y, 2 * s**0.5)

    def __repr__(self) -> str:
        return f"Poisson(photons_per_unit={self.photons_per_unit:g}, scale={self.scale:g})"


#: the table of :func:`root_poisson_misfit`: rates and values (built on first use)
_ROOT_TABLE: list = []
#: above this rate the expansion 1/4 + 7/(64 lam) is used (its error is below 1e-5 there)
_ROOT_EXPANSION = 1000.0


def root_poisson_misfit(lam):
    r""":math:`E(\sqrt{k} - \sqrt{\lambda})^2` for :math:`k \sim \mathrm{Poisson}(\lambda)`, elementwise: what the
    amplitude misfit of one value is in expectation at the truth (:math:`2\lambda` for :math:`\lambda \ll 1`, about
    1/4 above 10).

    Parameters
    ----------
    lam : array
        Expected counts :math:`\lambda \ge 0` (numpy, or cupy: computed on the host).

    Returns
    -------
    values : :obj:`numpy.ndarray`
        The expectations, shaped like ``lam``; exact sums over :math:`k` tabulated on 1 200 rates up to 1000 and
        interpolated, the expansion :math:`1/4 + 7/(64\lambda)` above.
    """
    if not _ROOT_TABLE:
        rates = np.logspace(-8, np.log10(_ROOT_EXPANSION), 1200)[:, None]
        k = np.arange(int(_ROOT_EXPANSION + 40 * _ROOT_EXPANSION**0.5 + 60))
        log_factorial = np.concatenate([[0.0], np.cumsum(np.log(k[1:]))])
        pmf = np.exp(k * np.log(rates) - rates - log_factorial)
        values = np.sum(pmf * (np.sqrt(k) - np.sqrt(rates)) ** 2, axis=1)
        _ROOT_TABLE.extend([np.concatenate([[0.0], rates[:, 0]]), np.concatenate([[0.0], values])])
    lam = np.asarray(lam.get() if hasattr(lam, "get") else lam, dtype=float)
    high = np.maximum(lam, _ROOT_EXPANSION)
    return np.where(lam > _ROOT_EXPANSION, 0.25 + 7 / (64 * high), np.interp(lam, *_ROOT_TABLE))


def _phase_projection(y, factor):
    ncp = get_array_module(y)
    if not ncp.iscomplexobj(y):
        return lambda delta: factor * delta
    a = ncp.abs(y)
    u = ncp.where(a > 0, y / ncp.where(a > 0, a, 1), 0)
    return lambda delta: factor * u * (u.conj() * delta).real


LOSSES = {cls.name: cls for cls in (LeastSquares, Amplitude, Poisson)}


def get_loss(name: str, **kwargs) -> Loss:
    """Build a loss by name.

    Parameters
    ----------
    name : :obj:`str`
        ``least-squares``, ``amplitude`` or ``poisson`` (the keys of :data:`LOSSES`).
    **kwargs
        The loss's own parameters (``scale``; ``photons_per_unit``, ``intensity``, ``eps`` for ``poisson``).

    Returns
    -------
    :class:`Loss`
        The loss; an unknown name is a :class:`~multimodal_ip.errors.ConfigError` listing the known ones.
    """
    try:
        return LOSSES[name](**kwargs)
    except KeyError:
        msg = f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}"
        raise ConfigError(msg) from None
