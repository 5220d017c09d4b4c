import numpy as np
import pytest
from hypothesis import given

from multimodal_ip import Variable, VariableSpace
from multimodal_ip.errors import DtypeError, ShapeError, UnknownVariableError
from multimodal_ip.testing import strategies as mmst


@given(space=mmst.variable_spaces(), seed=mmst.seeds())
def test_pack_unpack_roundtrip(space, seed):
    rng = np.random.default_rng(seed)
    values = {v.name: mmst.random_array(rng, v.shape, v.dtype) for v in space.variables}
    packed = space.pack(values)
    assert packed.shape == (space.size,) and packed.dtype.kind == "f"
    out = space.unpack(packed)
    for v in space.variables:
        np.testing.assert_array_equal(out[v.name], values[v.name])


def test_unpack_returns_views():
    space = VariableSpace([Variable("x", (2, 3)), Variable("z", (4,), "complex128")])
    vec = np.arange(space.size, dtype=float)
    arrays = space.unpack(vec)
    arrays["z"][0] = 100 + 200j
    arrays["x"][0, 0] = -1
    assert vec[6] == 100 and vec[7] == 200 and vec[0] == -1


def test_bounds_and_full():
    space = VariableSpace([Variable("x", (2,), lower=0.0), Variable("w", (3,), upper=5.0)])
    lo, hi = space.bounds()
    assert list(lo) == [0, 0, -np.inf, -np.inf, -np.inf] and list(hi[2:]) == [5, 5, 5]
    assert np.all(space.full(1.0) == 1)


def test_errors_are_specific():
    space = VariableSpace([Variable("x", (2, 2))])
    with pytest.raises(UnknownVariableError, match="unknown variable 'y'; this space has: x"):
        space["y"]
    with pytest.raises(ShapeError, match=r"expected shape \(2, 2\), got \(3,\)"):
        space.pack({"x": np.zeros(3)})
    with pytest.raises(DtypeError, match="is real"):
        space.pack({"x": np.zeros((2, 2), complex)})
    with pytest.raises(DtypeError, match="bounds"):
        Variable("z", (2,), "complex128", lower=0)
