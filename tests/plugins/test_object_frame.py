"""``mmip_scanprobe.ObjectFrame.from_attrs``: the data file's object frame, read once for the ptychodus/CXI product
export, the XRF-Maps export and the product start reader. Its new edge for the exporters: a frame that is there
but not usable (not numbers, not finite, pixel not positive) is refused with their one-line message, as the start
reader already treated it (no frame), instead of a traceback or a product of NaN positions."""

from types import SimpleNamespace

import numpy as np
import pytest
from mmip_fluorescence.maps_export import _frame as maps_frame
from mmip_ptychography.product_export import _frame as product_frame
from mmip_scanprobe import ObjectFrame

from multimodal_ip.errors import DataError

GOOD = {"pixel_size_m": np.float64(2e-8), "origin_m": np.array([-1e-6, 3e-7])}
UNUSABLE = [{}, {"pixel_size_m": 2e-8}, {"origin_m": [0.0, 0.0]}, {**GOOD, "origin_m": [0.0, 0.0, 0.0]},
            {**GOOD, "pixel_size_m": [1e-8, 1e-8]}, {**GOOD, "pixel_size_m": "abc"},
            {**GOOD, "origin_m": np.array(["a", "b"])}, {**GOOD, "pixel_size_m": np.nan},
            {**GOOD, "origin_m": [0.0, np.inf]}, {**GOOD, "pixel_size_m": 0.0}, {**GOOD, "pixel_size_m": -1e-8}]


def test_frame_of_good_attributes():
    frame = ObjectFrame.from_attrs(GOOD)
    assert frame == (2e-8, (-1e-6, 3e-7))
    assert frame.pixel_size_m == 2e-8 and frame.origin_m == (-1e-6, 3e-7)
    assert all(type(v) is float for v in (frame.pixel_size_m, *frame.origin_m))


@pytest.mark.parametrize("attrs", [None, *UNUSABLE])
def test_no_frame(attrs):
    assert ObjectFrame.from_attrs(attrs) is None


@pytest.mark.parametrize("attrs", UNUSABLE)
def test_exporters_refuse_an_unusable_frame(attrs):
    context = {"dataset": SimpleNamespace(attrs=attrs), "data": "d.h5"}
    with pytest.raises(DataError, match=r"^d\.h5: no object frame .*pixel_size_m and origin_m"):
        product_frame(context)
    with pytest.raises(DataError, match=r"^r\.h5: XRF-Maps axes need the object frame.* of d\.h5"):
        maps_frame(context, "r.h5")
    assert product_frame({**context, "dataset": SimpleNamespace(attrs=GOOD)}) == maps_frame(
        {**context, "dataset": SimpleNamespace(attrs=GOOD)}, "r.h5") == ObjectFrame.from_attrs(GOOD)


@pytest.mark.parametrize("attrs", [None, *UNUSABLE])
def test_the_refusal_says_what_is_wrong(attrs):
    """The exporters' one line names what is wrong with the frame: missing, the count, or the value found."""
    why = ObjectFrame.why_not(attrs)
    assert why and ObjectFrame.why_not(GOOD) == ""
    attrs = attrs or {}
    if "pixel_size_m" not in attrs or "origin_m" not in attrs:
        assert "missing" in why
    elif np.size(attrs["pixel_size_m"]) == 1 and np.size(attrs["origin_m"]) == 2:
        assert any(repr(v) in why or str(v) in why for v in (attrs["pixel_size_m"],)), why
    context = {"dataset": SimpleNamespace(attrs=attrs), "data": "d.h5"}
    with pytest.raises(DataError) as err:
        product_frame(context)
    assert str(err.value).endswith(why) and len(str(err.value).splitlines()) == 1
