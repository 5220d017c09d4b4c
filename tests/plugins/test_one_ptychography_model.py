"""One ptychography model (issue 29): ``PtychographyModel`` serves whole-pixel and sub-pixel scans, fixed or refined;
whole-pixel fixed positions take its plain-window path, equal to ``FarField``; each position is validated once;
``dtype`` is the input's dtype in both public operators."""

from dataclasses import replace

import numpy as np
import pytest
from mmip_paper import simulate
from mmip_ptychography import FarField, PtychographyModel, far_field, ptychography_operator, raster_positions
from mmip_scanprobe import ComplexCoupling

from multimodal_ip.errors import DataError, ShapeError
from multimodal_ip.io import build_problem
from multimodal_ip.operators import Linear, compose
from multimodal_ip.testing import check_adjoint


def _case(rng, n=20, npx=8, step=4, ne=2):
    probe = rng.standard_normal((npx, npx)) + 1j * rng.standard_normal((npx, npx))
    return probe, raster_positions(n, npx, step_px=step).astype(float), (n, n), ne


@pytest.mark.parametrize("npx", [8, 7])  # even windows fold the fftshift into the probe; odd ones shift
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_whole_pixel_path_equals_far_field(npx, dtype):
    rng = np.random.default_rng(npx)
    probe, pos, shape, ne = _case(rng, npx=npx)
    op = ptychography_operator(probe, pos, shape, ne, dtype=dtype, coefficients=[1.0, 0.3], block=5)
    assert isinstance(op, PtychographyModel) and not op.sampled and op.refine == ()
    cdtype = np.result_type(dtype, np.complex64)
    assert (op.dtype, op.dtyped) == (np.dtype(dtype), cdtype)  # dtype: the real input, dtyped: the complex output
    reference = FarField(probe, pos, shape, dtype=cdtype)
    assert reference.dtype == cdtype  # FarField's input is the complex object: dtype is the input's there too
    batch = compose(Linear(reference), Linear(ComplexCoupling(shape, ne, coefficients=[1.0, 0.3], dtype=dtype)))
    v = (1 + rng.random(op.dims[0])).astype(dtype)
    tol = 2e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(op.forward(v), batch.forward(v).reshape(op.dimsd), rtol=tol, atol=tol)
    r = (rng.standard_normal(op.dimsd) + 1j * rng.standard_normal(op.dimsd)).astype(cdtype)
    np.testing.assert_allclose(op.jacobian(v).rmatvec(r.ravel()), batch.jacobian(v).rmatvec(r.ravel()),
                               rtol=tol, atol=tol * 10)
    check_adjoint(op.jacobian(v), dtype=dtype, rng=rng)


def test_fixed_whole_pixel_windows_must_lie_inside_the_object():
    rng = np.random.default_rng(1)
    probe, pos, shape, ne = _case(rng)
    pos[3] = (-1.0, 4.0)  # one pixel beyond the edge
    with pytest.raises(ShapeError, match=r"positions\[3\] = \(-1, 4\) puts the \(8, 8\) window outside the \(20, 20\) "
                                         r"object \(allowed top-left rows 0\.\.12, cols 0\.\.12\)"):
        PtychographyModel(probe, pos, shape, ne)
    # refined positions may wander a pixel beyond the edge (clipped and sampled), fractional ones too
    assert PtychographyModel(probe, pos, shape, ne, refine=("positions",)).sampled
    assert PtychographyModel(probe, pos + 0.25, shape, ne).sampled
    with pytest.raises(ShapeError, match="NaN or Inf"):
        PtychographyModel(probe, np.where(pos == 4.0, np.nan, pos), shape, ne)


def test_the_modality_builds_the_one_model_for_every_scan():
    ds = simulate("phantom", seed=0, n=40, probe_size=16, step=8)
    td = ds.terms["ptychography"]
    op = build_problem(ds).terms[0].operator
    assert isinstance(op, PtychographyModel) and not op.sampled
    jittered = replace(ds, terms={**ds.terms, "ptychography": replace(td, arrays={
        **td.arrays, "positions": td.arrays["positions"] + 0.3})})
    assert build_problem(jittered).terms[0].operator.sampled
    assert build_problem(ds, refine=("probe",)).terms[0].operator.refine == ("probe",)
    outside = np.array(td.arrays["positions"], dtype=float)
    outside[0] = (-2.0, 0.0)
    bad = replace(ds, terms={**ds.terms, "ptychography": replace(td, arrays={**td.arrays, "positions": outside})})
    with pytest.raises(DataError, match=r"positions.*positions\[0\] = \(-2, 0\) puts the \(16, 16\) window outside"):
        build_problem(bad)
    assert not hasattr(far_field, "StreamedFarField")
