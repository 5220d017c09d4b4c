__all__ = ["JointProblem"]

from collections.abc import Mapping
from dataclasses import replace

import numpy as np
from pylops import LinearOperator

from ..backend import get_array_module, real_dtype
from ..errors import DtypeError, ShapeError, UnknownVariableError
from ..variables import VariableSpace
from .align import align
from .curvature import Curvature
from .linearization import Linearization, _StreamState
from .term import _LazyCurvature


class _Restriction(LinearOperator):
    """Packed joint vector -> a term's input (one variable's array, or the packed sub-vector)."""

    def __init__(self, space: VariableSpace, names, dtype):
        self.space, self.names = space, tuple(names)
        single = space[names[0]] if len(names) == 1 else None
        self.complex_single = single is not None and single.is_complex
        nout = space.subspace(names).size
        self.cdtype = np.result_type(dtype, np.complex64)
        dimsd = single.shape if single is not None else (nout,)
        super().__init__(dtype=self.cdtype if self.complex_single else dtype, dims=(space.size,), dimsd=dimsd)
        self.slices = [space.slice(n) for n in self.names]

    def _matvec(self, v):
        ncp = get_array_module(v)
        contiguous = all(a.stop == b.start for a, b in zip(self.slices, self.slices[1:]))
        # adjacent variables in packing order are one view (no copy of the term's whole input)
        out = v[self.slices[0].start : self.slices[-1].stop] if contiguous else \
            ncp.concatenate([v[s] for s in self.slices])
        if self.complex_single:
            out = ncp.ascontiguousarray(out).view(self.cdtype)
        return out

    def _rmatvec(self, u):
        out = get_array_module(u).zeros(self.space.size, dtype=u.real.dtype)
        self.add_rmatvec(out, u)
        return out

    def add_rmatvec(self, out, u) -> None:
        """``out += R^T u`` in place (no joint-sized temporary)."""
        if self.complex_single:
            ncp = get_array_module(u)
            u = ncp.ascontiguousarray(u.astype(self.cdtype, copy=False)).view(real_dtype(self.cdtype))
        u = u.ravel()
        start = 0
        for s in self.slices:
            n = s.stop - s.start
            out[s] += u[start : start + n].real
            start += n


class JointProblem:
    r"""Weighted sum of data terms and regularizers over shared named variables.

    .. math:: \Phi(v) = \sum_t w_t L_t(A_t(R_t v), d_t) + \sum_r \rho_r(v)

    where :math:`R_t` picks the variables term :math:`t` reads. Solvers see the
    packed real vector of :class:`~multimodal_ip.VariableSpace`.

    Parameters
    ----------
    space : :class:`~multimodal_ip.VariableSpace`
        The unknowns.
    terms : sequence of :class:`DataTerm`
        Data terms; their ``inputs`` must name variables of ``space``.
    regularizers : sequence of :class:`~multimodal_ip.regularizers.Regularizer`, optional
    truth : mapping, optional
        Ground-truth arrays by variable name (simulations), used for error columns in histories.
    calibration : mapping, optional
        Start values of calibration unknowns by variable name:
        :meth:`start` puts them there, and the ``total`` of :meth:`relative_errors` leaves them out.
    """

    def __init__(self, space: VariableSpace, terms, regularizers=(), truth: Mapping | None = None,
                 calibration: Mapping | None = None, frozen=()):
        self.space = space
        self.calibration = dict(calibration or {})
        self.frozen = tuple(frozen)
        for name in (*self.calibration, *self.frozen):
            space[name]
        self.terms = tuple(terms)
        self.regularizers = tuple(regularizers)
        keys = [(t.name, t.part) for t in self.terms]
        if len(set(keys)) != len(keys):
            msg = f"data term names (and parts) must be unique; got {[t.name for t in self.terms]}"
            raise ValueError(msg)
        self._restrictions = []
        for t in self.terms:
            for n in t.inputs:
                if n not in space:
                    msg = f"term {t.name!r} reads unknown variable {n!r}; the space has: {', '.join(space.names)}"
                    raise UnknownVariableError(msg)
            restr = _Restriction(space, t.inputs, space.dtype)
            if tuple(restr.dimsd) != t.operator.dims:
                msg = (
                    f"term {t.name!r}: operator {t.operator.name} expects input shape {t.operator.dims}, "
                    f"but its inputs {list(t.inputs)} give shape {tuple(restr.dimsd)}"
                )
                raise ShapeError(msg)
            if t.operator.dtype.kind == "f" and restr.complex_single:
                msg = f"term {t.name!r}: operator {t.operator.name} takes real input but {t.inputs[0]!r} is complex"
                raise DtypeError(msg)
            self._restrictions.append(restr)
        for r in self.regularizers:
            for n in r.variables:
                space[n]
        self.truth = None
        if truth is not None:
            self.truth = {k: v for k, v in truth.items() if k in space}

    # ---- construction helpers --------------------------------------------------
    def with_terms(self, names) -> "JointProblem":
        """The problem restricted to the data terms ``names`` (same space, regularizers, truth)."""
        keep = [t for t in self.terms if t.name in names]
        missing = set(names) - {t.name for t in keep}
        if missing:
            msg = f"unknown term(s) {sorted(missing)}; this problem has: {', '.join(self.term_names)}"
            raise UnknownVariableError(msg)
        return JointProblem(self.space, keep, self.regularizers, self.truth, self.calibration, self.frozen)

    def alone(self, name) -> "JointProblem":
        """The separate inversion of one data term: that term alone, weight 1, same regularizers and truth."""
        return self.with_terms([name]).with_weights({name: 1.0})

    def with_weights(self, weights: Mapping) -> "JointProblem":
        """A copy whose term weights are replaced by ``weights`` (by term name).

        Parameters
        ----------
        weights : :obj:`dict`
            ``{term name: weight}``; terms not named keep their weight (e.g. :func:`~multimodal_ip.balanced_weights`).

        Returns
        -------
        :class:`~multimodal_ip.JointProblem`
            The same terms, variables and regularizers with the new weights.
        """
        terms = [replace(t, weight=weights.get(t.name, t.weight)) for t in self.terms]
        return JointProblem(self.space, terms, self.regularizers, self.truth, self.calibration, self.frozen)

    def with_regularizers(self, regularizers) -> "JointProblem":
        """A copy with its regularizers replaced.

        Parameters
        ----------
        regularizers : :obj:`list` of :class:`~multimodal_ip.regularizers.Regularizer`
            The new penalties and constraints (``()``: none), e.g.
            ``[TotalVariation("x", weight=1e-3), NonNegative("w")]``.

        Returns
        -------
        :class:`~multimodal_ip.JointProblem`
            The same terms and variables with these regularizers.
        """
        return JointProblem(self.space, self.terms, regularizers, self.truth, self.calibration, self.frozen)

    def with_frozen(self, names) -> "JointProblem":
        """A copy in which the variables ``names`` do not move: their gradient is zero and the Gauss-Newton
        operator acts on the others only (e.g. the calibration unknowns during the first iterations)."""
        return JointProblem(self.space, self.terms, self.regularizers, self.truth, self.calibration, tuple(names))

    def _freeze(self, g):
        for name in self.frozen:
            g[self.space.slice(name)] = 0
        return g

    def start(self, fill_value=1.0, xp=None):
        """The start point: ``fill_value`` in every variable (the paper's all-ones), calibration unknowns at
        their start values."""
        xp = xp or self.xp
        return self.space.pack({v.name: xp.asarray(self.calibration[v.name]) if v.name in self.calibration
                                else xp.full(v.shape, fill_value, dtype=v.dtype) for v in self.space.variables})

    @property
    def xp(self):
        """Array module of the data (numpy or cupy)."""
        return get_array_module(self.terms[0].data) if self.terms else np

    @property
    def term_names(self) -> tuple:
        return tuple(dict.fromkeys(t.name for t in self.terms))

    @property
    def has_holdout(self) -> bool:
        """Whether some term holds values out for validation (a solver's early stopping needs one)."""
        return any(t.holdout is not None for t in self.terms)

    @property
    def weights(self) -> dict:
        return {t.name: t.weight for t in self.terms}

    @property
    def parts(self) -> dict:
        """Number of parts (chunks) of each data term, by name."""
        out: dict = {}
        for t in self.terms:
            out[t.name] = out.get(t.name, 0) + 1
        return out

    def __repr__(self) -> str:
        counts = self.parts
        terms = ", ".join(f"{n}*{w:.3g}" + (f" in {counts[n]} parts" if counts[n] > 1 else "")
                          for n, w in self.weights.items())
        return f"JointProblem({self.space!r}, terms=[{terms}], regularizers={list(self.regularizers)})"

    # ---- evaluation ------------------------------------------------------------
    def _term_input(self, i, v):
        return self._restrictions[i].matvec(v).reshape(self.terms[i].operator.dims)

    def at_precision(self, v):
        """``v`` no wider than the unknowns' precision: a solver's trial point ``x + alpha * p`` with a numpy float64
        ``alpha`` is float64 (NEP 50) and would silently run a float32 problem in float64. (A narrower ``v`` is
        kept: a float32 point of a float64 space evaluates in float32, as its terms were built for.)"""
        return v.astype(self.space.dtype) if v.dtype.itemsize > self.space.dtype.itemsize else v

    def objectives(self, v) -> dict:
        """Weighted value of each data term and regularizer, by name."""
        v = self.at_precision(v)
        out: dict = {}
        for i, t in enumerate(self.terms):
            out[t.name] = out.get(t.name, 0.0) + t.weight * t.objective_input(self._term_input(i, v))
        arrays = self.space.unpack(v) if self.regularizers else None
        for r in self.regularizers:
            if not r.is_constraint:
                out[r.name] = r.value(arrays)
        return out

    def value(self, v) -> float:
        return float(sum(self.objectives(v).values()))

    __call__ = value

    def linearize(self, v) -> Linearization:
        """Objective, per-term objectives and gradient at ``v``, with a lazy Jacobian/GN operator."""
        v = self.at_precision(v)
        ncp = get_array_module(v)
        grad = ncp.zeros(v.shape, dtype=v.dtype)  # calloc'd: a variable's pages are resident once a term adds to it
        objectives: dict = {}
        validation: dict = {}
        for i, t in enumerate(self.terms):
            val, gu, held = t.linearize_input(self._term_input(i, v))
            objectives[t.name] = objectives.get(t.name, 0.0) + t.weight * val
            if held is not None:
                validation[t.name] = validation.get(t.name, 0.0) + t.weight * held
            gu = gu.ravel()
            if t.weight != 1.0:  # scaled in place when the gradient is a fresh array (not a view of the input)
                gu = gu * t.weight if ncp.may_share_memory(gu, v) or not getattr(gu.flags, "writeable", True) \
                    else _scale(gu, t.weight)
            self._restrictions[i].add_rmatvec(grad, gu)
            del gu  # nothing of a part is kept: memory holds one part's temporaries at a time
        if self.regularizers:
            arrays = self.space.unpack(v)
            for r in self.regularizers:
                if r.is_constraint:
                    continue
                if not r.is_smooth:
                    objectives[r.name] = r.value(arrays)
                    continue
                val, g = r.value_and_gradient(arrays)
                objectives[r.name] = val
                for name, gi in g.items():
                    self._add_packed(grad, name, gi)
        return Linearization(float(sum(objectives.values())), objectives, self._freeze(grad), v, self,
                             validation=validation)

    def _linear_parts(self, v) -> list:
        """Per-term ``(term, restriction, J, M^(1/2), sqrt(w), complex?, n_real_out)`` at ``v`` (Gauss-Newton)."""
        ncp = get_array_module(v)
        parts = []
        for i, t in enumerate(self.terms):
            u = self._term_input(i, v)
            cplx = t.operator.dtyped.kind == "c"
            n_out = int(np.prod(t.operator.dimsd)) * (2 if cplx else 1)
            if t.streamed:  # the state only: products go block by block (the whole prediction only if asked)
                state = _StreamState(t.operator, t.operator.stream_prepare(u))
                parts.append((t, self._restrictions[i], state, _LazyCurvature(t, state.forward), t.weight**0.5, cplx,
                              n_out))
                continue
            y, jac = t.operator.linearize(u)
            cplx = ncp.iscomplexobj(y)
            n_out = y.size * (2 if cplx else 1)
            parts.append((t, self._restrictions[i], jac, _LazyCurvature(t, y),
                          t.weight**0.5, cplx, n_out))
        return parts

    def curvature(self, v) -> Curvature | None:
        """The weighted sum of the data terms' curvature offers at ``v`` (``DataTerm.curvature``: a block-diagonal
        estimate of each term's Gauss-Newton matrix), frozen variables at one; ``None`` when no term offers one.
        Regularizers add nothing."""
        v = self.at_precision(v)
        offers = [(t.weight, t.curvature(self._term_input(i, v))) for i, t in enumerate(self.terms)
                  if t.curvature is not None]
        if not offers:
            return None
        return Curvature.combine(self.space, offers, self.frozen, complete=len(offers) == len(self.terms))

    def value_and_gradient(self, v):
        lin = self.linearize(v)
        return lin.objective, lin.gradient

    def gradient(self, v):
        return self.linearize(v).gradient

    def term_gradients(self, v) -> dict:
        """Gradient of each weighted data term alone (packed), by name."""
        return {name: self.with_terms([name]).with_regularizers(()).gradient(v) for name in self.term_names}

    def _reg_hvp(self, reg, v, dv):
        arrays = self.space.unpack(v)
        darrays = self.space.unpack(dv)
        hv = reg.hessian_vector(arrays, darrays)
        out = get_array_module(v).zeros_like(v)
        for name, h in hv.items():
            self._add_packed(out, name, h)
        return out

    def _add_packed(self, out, name, a) -> None:
        """``out[variable] += a`` in the packed real layout (complex variables as interleaved real pairs)."""
        part = out[self.space.slice(name)]
        if self.space[name].is_complex:
            part[0::2] += a.real.ravel()
            part[1::2] += a.imag.ravel()
        else:
            part += a.ravel()

    # ---- invariances -------------------------------------------------------------
    def align(self, v, steps=None):
        r"""``(v', {term: t})``: ``v`` moved along every term's :class:`Invariance` to the minimum of the *other*
        terms and the regularizers (:func:`align`, which see)."""
        return align(self, v, steps)

    def invariances(self) -> dict:
        """``{term: Invariance}`` of the terms that declare one (a split term's parts share their first part's)."""
        out: dict = {}
        for t in self.terms:
            if t.invariance is not None:
                out.setdefault(t.name, t.invariance)
        return out

    # ---- errors vs truth ---------------------------------------------------------
    def relative_errors(self, v) -> dict:
        r"""``{"total": ||v - v*|| / ||v*||, <var>: per variable}`` over the variables with a truth (the total
        leaves calibration unknowns out: their units differ)."""
        if not self.truth:
            return {}
        ncp = get_array_module(v)
        arrays = self.space.unpack(v)
        num = den = 0.0
        out = {}
        for name, t in self.truth.items():
            t = ncp.asarray(t)
            e = float(ncp.linalg.norm((arrays[name] - t).ravel()))
            n = float(ncp.linalg.norm(t.ravel()))
            out[name] = e / n if n else e
            if name not in self.calibration:
                num, den = num + e**2, den + n**2
        out["total"] = (num / den) ** 0.5 if den else num**0.5
        return out


def _scale(a, w):
    a *= w
    return a
