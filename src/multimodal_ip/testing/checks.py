r"""Conformance checks: dot test, Taylor test for Jacobians and for problem gradients.

Every check raises :class:`~multimodal_ip.errors.ConformanceError` (an ``AssertionError``)
naming the operator and the observed error, and returns the measured quantity.
"""

__all__ = ["check_adjoint", "check_jacobian", "check_gradient", "random_like_dtype", "adjoint_tolerance",
           "split_diagnosis", "check_same_jacobian"]

import numpy as np

from ..backend import get_array_module, real_dtype
from ..errors import ConformanceError


def random_like_dtype(rng, shape, dtype, xp=np):
    """Standard normal array of ``shape``; complex dtypes get independent real and imaginary parts.

    Parameters
    ----------
    rng : :obj:`numpy.random.Generator`
        Source of the random numbers.
    shape : :obj:`tuple` of :obj:`int`
        Shape of the array.
    dtype : :obj:`str` or :obj:`numpy.dtype`
        Real or complex dtype of the array.
    xp : module, optional
        Array module of the result (``numpy`` or ``cupy``).

    Returns
    -------
    a : :obj:`numpy.ndarray` or :obj:`cupy.ndarray`
        The random array.
    """
    dtype = np.dtype(dtype)
    a = rng.standard_normal(shape)
    if dtype.kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return xp.asarray(a.astype(dtype))


def adjoint_tolerance(dtype) -> float:
    """Relative dot-test tolerance for a dtype: about 1000 ulps of its real precision.

    Parameters
    ----------
    dtype : :obj:`str` or :obj:`numpy.dtype`
        The operator's dtype (real or complex).

    Returns
    -------
    :obj:`float`
        The tolerance :func:`check_adjoint` uses by default.
    """
    return 1e3 * float(np.finfo(real_dtype(dtype)).eps)


def _name(op) -> str:
    return getattr(op, "name", None) or type(op).__name__


def check_adjoint(op, dtype=None, rng=None, rtol=None, xp=np, name=None, x=None) -> float:
    r"""Dot test :math:`\Re\langle Au, v\rangle = \Re\langle u, A^H v\rangle` on random inputs.

    Parameters
    ----------
    op : :class:`pylops.LinearOperator` or :class:`~multimodal_ip.operators.NonlinearOperator`
        The operator (e.g. a Jacobian). A :class:`~multimodal_ip.operators.NonlinearOperator` (``Linear``,
        ``Exp``, a composition, a plugin's model) is tested through its Jacobian at ``x``.
    dtype : dtype, optional
        Domain dtype; defaults to ``op.dtype_in`` if present, else ``op.dtype``. The range
        dtype is that of ``op @ u``.
    rtol : :obj:`float`, optional
        Tolerance on the error normalised by :math:`\max(\|Au\|\|v\|, \|u\|\|A^Hv\|)`;
        default from the dtype (:func:`adjoint_tolerance`).
    x : array, optional
        The point at which the Jacobian of a ``NonlinearOperator`` is taken (default: a random point of its
        ``dims`` and ``dtype``, drawn from ``rng``); ignored for a linear operator.

    Returns
    -------
    error : :obj:`float`
        The normalised error.
    """
    from ..operators.nonlinear_operator import NonlinearOperator

    rng = rng if rng is not None else np.random.default_rng(0)
    if isinstance(op, NonlinearOperator):
        name = name or f"{_name(op)} (Jacobian)"
        op = op.jacobian(x if x is not None else random_like_dtype(rng, op.dims, dtype or op.dtype, xp))
    elif not (hasattr(op, "matvec") and hasattr(op, "rmatvec")):
        msg = (f"check_adjoint needs a linear operator (matvec, rmatvec) or a NonlinearOperator (tested through its "
               f"Jacobian); got {type(op).__name__}")
        raise TypeError(msg)
    dtype = np.dtype(dtype or getattr(op, "dtype_in", None) or op.dtype)
    u = random_like_dtype(rng, op.shape[1], dtype, xp)
    au = op.matvec(u)
    v = random_like_dtype(rng, op.shape[0], au.dtype if au.dtype.kind in "fc" else dtype, xp)
    ahv = op.rmatvec(v)
    lhs = float(xp.real(xp.vdot(au, v)))
    rhs = float(xp.real(xp.vdot(u, ahv)))
    scale = max(float(xp.linalg.norm(au)) * float(xp.linalg.norm(v)),
                float(xp.linalg.norm(u)) * float(xp.linalg.norm(ahv)), 1e-300)
    err = abs(lhs - rhs) / scale
    tol = rtol if rtol is not None else adjoint_tolerance(np.result_type(dtype, au.dtype))
    if not err <= tol:
        msg = (
            f"adjoint check failed for {name or _name(op)} (shape {op.shape}, dtype {dtype}): "
            f"Re<Au,v>={lhs:.6g}, Re<u,A^H v>={rhs:.6g}, relative error {err:.3g} > tol {tol:.1g}"
        )
        raise ConformanceError(msg)
    return err


def _taylor_slope(h, r, floor):
    """Least-squares slope of log r vs log h over points clearly above the round-off floor."""
    ok = r > 100 * floor
    # only the asymptotic part: the smaller half of the steps above the floor (at least three). The largest steps
    # can still be pre-asymptotic (a remainder / h^2 that changes 5x over a decade), which biased the fit low.
    hs, rs = np.log(h[ok]), np.log(r[ok])
    if hs.size < 3:
        return None
    take = slice(hs.size - max(3, hs.size // 2), None)
    return float(np.polyfit(hs[take], rs[take], 1)[0])


def check_jacobian(op, x, rng=None, direction=None, min_slope=1.8, name=None) -> float | None:
    r"""Taylor test: :math:`r(h) = \|F(x+hd) - F(x) - hJ(x)d\|` must fall as :math:`O(h^2)`.

    Computed for :math:`h = 2^{-1}, \dots, 2^{-20}` in the input's precision (use float64 for
    a clear slope). The slope of :math:`\log r` against :math:`\log h` above the
    round-off floor must be at least ``min_slope`` (a wrong Jacobian gives about 1).

    Parameters
    ----------
    op : :class:`~multimodal_ip.operators.NonlinearOperator`
        The operator :math:`F` (``linearize`` and ``forward``).
    x : :obj:`numpy.ndarray`
        The point (numpy or cupy), shaped like ``op.dims``.
    rng : :obj:`numpy.random.Generator`, optional
        Draws the direction :math:`d` when ``direction`` is not given.
    direction : :obj:`numpy.ndarray`, optional
        The direction :math:`d` (scaled to the norm of ``x``).
    min_slope : :obj:`float`, optional
        The smallest accepted order.
    name : :obj:`str`, optional
        The operator's name in the error message.

    Returns
    -------
    slope : :obj:`float` or ``None``
        Observed order; ``None`` when :math:`r(h)` stays at round-off (a linear operator). A slope below
        ``min_slope`` is a :class:`~multimodal_ip.errors.ConformanceError`.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    xp = get_array_module(x)
    d = direction if direction is not None else random_like_dtype(rng, x.shape, x.dtype, xp)
    d = d * (float(xp.linalg.norm(x)) / max(float(xp.linalg.norm(d)), 1e-300) if float(xp.linalg.norm(x)) else 1.0)
    fx, jac = op.linearize(x)
    jd = jac.matvec(d.ravel()).reshape(fx.shape)
    h = 2.0 ** -np.arange(1, 21)
    r = np.array([float(xp.linalg.norm((op.forward(x + hi * d) - fx - hi * jd).ravel())) for hi in h])
    eps = float(np.finfo(real_dtype(x.dtype)).eps)
    floor = eps * (float(xp.linalg.norm(fx)) + float(xp.linalg.norm(jd)))
    if np.all(r[7:] <= 100 * floor):
        # the remainder vanishes for small h: the map is (piecewise) linear along d and J d is exact
        # (a wrong Jacobian leaves r(h) ~ h |J d - J_true d|, far above round-off)
        return None
    slope = _taylor_slope(h, r, floor)
    if slope is None:
        if np.any(r[-5:] > 100 * floor):
            msg = f"Taylor test inconclusive for {name or _name(op)}: remainders {r[-5:]}"
            raise ConformanceError(msg)
        return None
    if slope < min_slope:
        msg = (
            f"Jacobian check failed for {name or _name(op)} (dims {getattr(op, 'dims', '?')}): Taylor remainder "
            f"falls as h^{slope:.2f}, expected h^2 (remainders {r[0]:.3g} at h=1/2 .. {r[-1]:.3g} at h=2^-20)"
        )
        raise ConformanceError(msg)
    return slope


def check_gradient(problem, v, rng=None, direction=None, min_slope=1.8) -> float | None:
    r"""Taylor test of a problem's gradient: :math:`|\Phi(v+hd) - \Phi(v) - h\langle g, d\rangle| = O(h^2)`.

    Parameters
    ----------
    problem : :class:`~multimodal_ip.JointProblem`
        The objective :math:`\Phi` (``value`` and ``value_and_gradient``).
    v : :obj:`numpy.ndarray`
        The packed point (numpy or cupy).
    rng : :obj:`numpy.random.Generator`, optional
        Draws the direction :math:`d` when ``direction`` is not given.
    direction : :obj:`numpy.ndarray`, optional
        The direction :math:`d` (scaled to the norm of ``v``).
    min_slope : :obj:`float`, optional
        The smallest accepted order.

    Returns
    -------
    slope : :obj:`float` or ``None``
        Observed order; ``None`` when the remainder stays at round-off. A slope below ``min_slope`` is a
        :class:`~multimodal_ip.errors.ConformanceError`.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    xp = get_array_module(v)
    d = direction if direction is not None else random_like_dtype(rng, v.shape, v.dtype, xp)
    d = d * (float(xp.linalg.norm(v)) / float(xp.linalg.norm(d)) if float(xp.linalg.norm(v)) else 1.0)
    f0, g = problem.value_and_gradient(v)
    gd = float(xp.vdot(g, d))
    h = 2.0 ** -np.arange(1, 25)
    r = np.array([abs(problem.value(v + hi * d) - f0 - hi * gd) for hi in h])
    floor = float(np.finfo(v.dtype).eps) * (abs(f0) + abs(gd))
    slope = _taylor_slope(h, r, floor)
    if slope is None:
        if np.any(r[-5:] > 100 * floor):
            msg = f"gradient Taylor test inconclusive for {problem!r}: remainders {r[-5:]}"
            raise ConformanceError(msg)
        return None
    if slope < min_slope:
        msg = (
            f"gradient check failed for {problem!r}: Taylor remainder falls as h^{slope:.2f}, expected h^2 "
            f"(<g,d>={gd:.6g})"
        )
        raise ConformanceError(msg)
    return slope


def split_diagnosis(objective, td, axes: dict, parts: int, rtol: float = 1e-9) -> str:
    """Why the objectives of ``td`` split into ``parts`` parts along ``axes`` do not sum to the whole's: one
    sentence from three experiments, for the conformance kit's failure message.

    ``objective(td) -> float`` builds the term from a :class:`~multimodal_ip.io.TermData` and evaluates it at a
    fixed point. The experiments: does a part's objective change when its attribute ``split_offset`` (its first
    global index) or ``split_total`` (the whole length) changes, and does the whole's objective change when every
    split dataset is rolled along its axis (it does only when values depend on the global index)?

    Parameters
    ----------
    objective : :obj:`callable`
        ``objective(td) -> float``, as above.
    td : :class:`~multimodal_ip.io.TermData`
        The whole term.
    axes : :obj:`dict`
        ``{dataset: split axis}`` (the modality's ``split_axes``).
    parts : :obj:`int`
        Number of parts (at least 2).
    rtol : :obj:`float`, optional
        Relative difference below which two objectives are equal.

    Returns
    -------
    diagnosis : :obj:`str`
        One sentence naming the likely fault (``split_offset``, ``split_total`` or ``split_axes``).
    """
    from dataclasses import replace

    from ..modality import split_term

    pieces = [split_term(td, axes, k, parts) for k in range(parts)]

    def differs(a: float, b: float) -> bool:
        return not abs(a - b) <= rtol * max(abs(a), abs(b), 1e-300)

    def with_attr(t, key, value):
        return replace(t, attrs={**t.attrs, key: value})

    values = [objective(t) for t in pieces]
    reads_offset = any(differs(objective(with_attr(t, "split_offset", 0)), f)
                       for t, f in zip(pieces[1:], values[1:]))
    reads_total = any(differs(objective(with_attr(t, "split_total", 2 * int(t.attrs["split_total"]))), f)
                      for t, f in zip(pieces, values))
    shift = int(pieces[1].attrs["split_offset"])
    rolled = replace(td, arrays={k: np.roll(np.asarray(a), -shift, axis=axes[k]) if k in axes else a
                                 for k, a in td.arrays.items()})
    whole, moved = objective(td), objective(rolled)
    axes_wrong = "split_axes is wrong (a per-index dataset undeclared, or one declared that is not per-index)"
    total = ("" if reads_total
             else "the parts ignore attribute split_total (normalise by it, not by a part's length), or ")
    if differs(whole, moved) and not reads_offset:
        return (f"the objective depends on the global index along the split (rolling the split datasets by {shift} "
                f"changes it from {whole!r} to {moved!r}) but the parts ignore attribute split_offset (the global "
                "index of a part's first entry): read it where the index matters; this is not a split_axes or "
                "split_total fault")
    if differs(whole, moved):
        return ("the objective depends on the global index along the split and the parts read split_offset: check "
                "that a part's local index j means global index split_offset + j; else " + total + axes_wrong)
    return ("the objective does not depend on the global index (rolling the split datasets leaves it unchanged), so "
            "split_offset is not the cause: " + total + axes_wrong)


def check_same_jacobian(reference, other, x, rng=None, rtol=None, name=None) -> float:
    r"""Two implementations of one operator agree at ``x``: value :math:`F(x)`, product :math:`J(x)u` and adjoint
    product :math:`J(x)^H v` on random :math:`u, v` (the conformance kit's check of a hand-written Jacobian against
    the automatic-differentiation one, ``autodiff_cases``).

    Parameters
    ----------
    reference : :class:`~multimodal_ip.operators.NonlinearOperator`
        The hand-written operator.
    other : :class:`~multimodal_ip.operators.NonlinearOperator`
        The second implementation (e.g. an :class:`~multimodal_ip.operators.Autodiff`), of the same
        ``shape`` (its ``dims`` may be the flat form of the reference's).
    x : :obj:`numpy.ndarray`
        The point.
    rng : :obj:`numpy.random.Generator`, optional
        Draws :math:`u` and :math:`v`.
    rtol : :obj:`float`, optional
        Tolerance on each relative difference :math:`\|a - b\| / \|a\|`; default from the dtype
        (:func:`adjoint_tolerance`: about 1000 ulps).
    name : :obj:`str`, optional
        The case's name in the error message.

    Returns
    -------
    error : :obj:`float`
        The largest of the three relative differences; above ``rtol`` a
        :class:`~multimodal_ip.errors.ConformanceError` naming which one differs.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    name = name or f"{_name(reference)} vs {_name(other)}"
    if tuple(reference.shape) != tuple(other.shape):
        msg = (f"{name}: the implementations have different shapes: {reference.dims} -> {reference.dimsd} and "
               f"{other.dims} -> {other.dimsd}")
        raise ConformanceError(msg)
    ya, ja = reference.linearize(x.reshape(reference.dims))
    yb, jb = other.linearize(x.reshape(other.dims))
    u = random_like_dtype(rng, ja.shape[1], x.dtype)
    v = random_like_dtype(rng, ja.shape[0], np.result_type(ya.dtype, x.dtype))
    tol = rtol if rtol is not None else adjoint_tolerance(np.result_type(x.dtype, ya.dtype))
    worst = 0.0
    for what, a, b in (("value F(x)", ya, yb), ("product J(x) u", ja.matvec(u), jb.matvec(u)),
                       ("adjoint J(x)^H v", ja.rmatvec(v), jb.rmatvec(v))):
        a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
        err = float(np.linalg.norm(a - b)) / max(float(np.linalg.norm(a)), 1e-300)
        if not err <= tol:
            msg = f"{name}: the implementations differ in the {what}: relative difference {err:.3g} > tol {tol:.1g}"
            raise ConformanceError(msg)
        worst = max(worst, err)
    return worst
