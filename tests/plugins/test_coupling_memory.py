"""The ptychography term's complex object without temporaries (issue 31): :class:`~mmip_scanprobe.ComplexCoupling`
forms ``x + i sum_e a_e w_e`` in one complex array and takes its adjoint from any view, the edge-extended object is
padded inside its own buffer, and the term's objective (+ gradient) allocates no object-sized array besides the
object and its accumulator (tracemalloc peaks in units of the object's bytes); results equal the plain formulas bit
for bit."""

import tracemalloc

import numpy as np
import pytest
from mmip_ptychography import PtychographyModel, raster_positions
from mmip_ptychography.band_limited_sampler import BandLimitedSampler
from mmip_scanprobe import ComplexCoupling, CubicPatches, complex_coupling

from multimodal_ip import DataTerm
from multimodal_ip.losses import Poisson

#: allowance for small allocations (a ufunc's buffers: 8192 elements; FFT plans, index arrays)
SLACK = 1 << 17


def _peak(fn, *args):
    """``(result, bytes allocated at the peak of fn(*args) beyond what was allocated before)``."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        out = fn(*args)
        return out, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("coefficients", [None, [0.7, -1.3, 2.1]])
def test_the_complex_object_is_formed_in_place(dtype, coefficients):
    shape, ne = (300, 340), 1 if coefficients is None else len(coefficients)
    op = ComplexCoupling(shape, ne, coefficients=coefficients, dtype=dtype)
    v = np.random.default_rng(0).standard_normal(op.shape[1]).astype(dtype)
    z, peak = _peak(op.matvec, v)
    x, w = v[: op.npix], v[op.npix :].reshape(ne, op.npix)
    assert np.array_equal(z.real, x) and np.array_equal(z.imag, op.coefficients @ w)  # the rounding of a @ w
    assert peak <= z.nbytes + SLACK  # the object alone (was 1.5 objects: a @ w, then copied in)
    r = (v[: op.npix] + 1j * v[-op.npix :]).astype(z.dtype).reshape(shape)
    padded = np.zeros((shape[0] + 6, shape[1] + 6), dtype=z.dtype)
    padded[3:-3, 3:-3] = r
    g, peak = _peak(op.adjoint, padded[3:-3, 3:-3])  # a cropped view, as the padded accumulator gives it
    assert np.array_equal(g, op.rmatvec(r.ravel()))
    assert peak <= g.nbytes + SLACK  # the gradient alone (no flattened copy of the view)


@pytest.mark.parametrize("sampler", [CubicPatches, BandLimitedSampler])
@pytest.mark.parametrize("shape", [(40, 37), (23, 64)])
def test_padding_in_place_equals_pad(sampler, shape):
    s = sampler(np.array([[2.3, 4.6]]), (8, 8), shape)
    z = np.random.default_rng(1).standard_normal((*shape, 2)).view(complex)[..., 0]
    zp = np.empty(s.padded_shape(), dtype=complex)
    zp.reshape(-1)[: z.size] = z.ravel()
    out, peak = _peak(s.pad_in_place, zp)
    assert out is zp and np.array_equal(zp, s.pad(z))
    assert peak <= 2 * shape[1] * z.itemsize + SLACK  # one row at a time


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("shape", "pad"), [((1, 1), 0), ((37, 41), 0), ((30, 29), 3), ((64, 64), 16)])
def test_the_adjoint_in_place_equals_the_adjoint(monkeypatch, dtype, shape, pad):
    monkeypatch.setattr(complex_coupling, "_BLOCK", 4)  # the recursion of the in-place unshuffle on small arrays
    op = ComplexCoupling(shape, 1, coefficients=[-0.3], dtype=dtype)
    rng = np.random.default_rng(4)
    acc = (rng.standard_normal((shape[0] + 2 * pad, shape[1] + 2 * pad)) * (1 + 1j)).astype(op.dtype)
    acc.imag[:, ::3] = -0.0
    inner = acc[pad : acc.shape[0] - pad, pad : acc.shape[1] - pad]
    expected = op.adjoint(inner)
    got = op.adjoint_in_place(acc, pad=pad)
    assert np.shares_memory(got, acc) and got.tobytes() == expected.tobytes()  # bit for bit, signed zeros too
    with pytest.raises(ValueError, match="one map only"):
        ComplexCoupling(shape, 2).adjoint_in_place(acc)


def _term(kind, dtype, n=128, npx=8, step=8, coefficients=(0.3,)):
    rng = np.random.default_rng(2)
    probe = rng.standard_normal((npx, npx)) + 1j * rng.standard_normal((npx, npx))
    pos = raster_positions(n, npx, step_px=step).astype(float)
    kw = {"refine": ("probe",)} if kind == "probe" else {}
    if kind == "cubic":
        pos = np.clip(pos + rng.uniform(-0.4, 0.4, pos.shape), 0, n - npx)
        kw["windows"] = "cubic"
    op = PtychographyModel(probe, pos, (n, n), len(coefficients), coefficients=coefficients, dtype=dtype, block=4,
                           **kw)
    v = (0.5 + rng.random(op.dims[0])).astype(dtype)
    v[::7] = -0.0
    data = np.abs(op.forward(v)) ** 2 * (1 + 0.1 * rng.random(op.dimsd))
    term = DataTerm(op, data.astype(np.float32), loss=Poisson())
    obj = (np.prod(op.coupling.dimsd) if kind != "cubic" else np.prod(np.add(op.object_shape, 6))) * \
        op.coupling.dtype.itemsize
    block = 4 * npx * npx * op.dtyped.itemsize  # one block's output array
    return term, v, obj, block


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_terms_objective_holds_no_object(dtype):
    term, v, obj, block = _term("whole", dtype, n=320)
    assert term.operator.windows_from_input
    term.objective_input(v)  # warm (FFT plans)
    _, peak = _peak(term.objective_input, v)
    assert peak <= 4 * block + SLACK, peak / obj  # each block's windows from x and w (was 1.5 objects)


@pytest.mark.parametrize(("kind", "objects"), [("whole", 1), ("cubic", 2), ("probe", 2)])
def test_the_terms_objective_and_gradient_peak(monkeypatch, kind, objects):
    monkeypatch.setattr(complex_coupling, "_BLOCK", 1024)  # the in-place unshuffle's block, small beside the object
    term, v, obj, block = _term(kind, "float64")
    term.linearize_input(v)  # warm (FFT plans)
    _, peak = _peak(term.linearize_input, v)
    # whole pixels: the accumulator alone, the gradient written over it (was 2 objects: the complex object beside
    # it, then a new gradient); sampled: the edge-extended object and the accumulator (was 3 objects: a flattened
    # copy of the cropped accumulator); refined probe: the object's adjoint written into the joined gradient (was 3)
    assert peak <= objects * obj + 4 * block + SLACK, peak / obj


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["whole", "cubic", "probe"])
def test_one_evaluation_equals_the_prepared_state_bit_for_bit(kind, dtype):
    term, v, _, _ = _term(kind, dtype, n=64)
    op = term.operator
    val, grad, _ = term.linearize_input(v)  # the transient state (whole pixels: no complex object)
    state = op.stream_prepare(v)  # the object formed, as a Jacobian keeps it
    acc = op.stream_accumulator(state)
    total = 0.0
    for rows in op.blocks():
        y = op.stream_forward(state, rows)
        assert y.tobytes() == op.stream_forward(op.stream_prepare_transient(v), rows).tobytes()
        value, g, _ = term._block(y, rows)
        total += value
        op.stream_vjp(state, rows, g, acc)
    z = op.sampler_class.unpad_adjoint(acc["z"]) if op.sampled else acc["z"]
    expected = op.coupling.adjoint(z)  # the allocating adjoint of the same accumulator
    if op.refine:
        expected = op.layout.join(expected, acc["probe"], acc["positions"])
    assert val == total and grad.tobytes() == expected.tobytes()


def test_two_maps_form_the_object_and_keep_the_values():
    term, v, _, _ = _term("whole", "float32", n=64, coefficients=(1.0, 0.3))
    op = term.operator
    assert not op.windows_from_input  # two maps: the object formed once (one BLAS product per pixel)
    val, grad, _ = term.linearize_input(v)
    z = op.coupling.matvec(v)
    n = op.coupling.npix
    assert z.real.tobytes() == v[:n].tobytes()
    assert z.imag.tobytes() == (op.coupling.coefficients @ v[n:].reshape(2, n)).tobytes()
    assert grad.shape == v.shape and np.isfinite(val)


def test_a_composed_model_passes_the_one_evaluation_on():
    from pylops import Identity

    from multimodal_ip.operators import Linear, StreamedAfter

    term, v, _, _ = _term("whole", "float64", n=64)
    op = StreamedAfter(term.operator, Linear(Identity(v.size, dtype="float64")))
    transient, kept = op.stream_prepare_transient(v), op.stream_prepare(v)
    assert transient[2]["z"] is None and kept[2]["z"] is not None  # the inner model's windows from the input
    for rows in op.blocks():
        assert op.stream_forward(transient, rows).tobytes() == op.stream_forward(kept, rows).tobytes()
