"""softmax and log_softmax: values against a high-precision reference, and where results
live."""

from __future__ import annotations

import math

import numpy as np
import pytest

import softmax_dispatch as sd
from softmax_dispatch.conformance import reference as ref
from softmax_dispatch.conformance._data import logits

FORWARD = {
    "softmax": (sd.softmax, ref.softmax_ref),
    "log_softmax": (sd.log_softmax, ref.log_softmax_ref),
}
BOUND = {"softmax": ref.softmax_bound, "log_softmax": ref.log_softmax_bound}


def check_forward(target, op, x_host, dtype, axis, axes, **kw):
    fn, reference = FORWARD[op]
    x, exact = target.exact(x_host, dtype)
    y = target.call(fn, x, axis, **kw)
    target.same_place(y, x)
    assert y.dtype == target.dtype(dtype), f"{op} returned {y.dtype} for {dtype} input"
    assert tuple(y.shape) == tuple(x.shape)
    expected = reference(exact, axes)
    ref.assert_within(target.to_numpy(y), expected, BOUND[op](exact, expected, axes, dtype), op)
    return y


@pytest.mark.parametrize("op", sorted(FORWARD))
@pytest.mark.parametrize(
    ("shape", "axis", "axes"),
    [((5, 17), -1, (1,)), ((6, 4), 0, (0,)), ((2, 3, 5), (0, 2), (0, 2)), ((3, 4), None, (0, 1))],
    ids=["last", "first", "tuple", "none"],
)
def test_matches_high_precision_reference(target, dtype, op, shape, axis, axes):
    check_forward(target, op, logits(shape, seed=1), dtype, axis, axes)


@pytest.mark.parametrize("op", sorted(FORWARD))
def test_long_rows_match_reference(target, dtype, op):
    check_forward(target, op, logits((2, 1000), seed=2, scale=3.0), dtype, -1, (1,))


def test_rows_sum_to_one(target, dtype):
    x = target.asarray(logits((7, 33), seed=3), dtype)
    total = target.to_numpy(target.call(sd.softmax, x, -1)).sum(axis=-1)
    tol = 64 * ref.UNIT_ROUNDOFF[dtype] * 33
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=tol)


@pytest.mark.parametrize("op", sorted(FORWARD))
def test_shift_invariance(target, dtype, op):
    fn = FORWARD[op][0]
    host = np.round(logits((4, 9), seed=4))  # integers: the shift is exact in every dtype
    x = target.asarray(host, dtype)
    shifted = target.asarray(host + 64.0, dtype)
    a = target.to_numpy(target.call(fn, x, -1))
    b = target.to_numpy(target.call(fn, shifted, -1))
    bound = ref.SLACK * ref.compute_eps(dtype) * 80 + ref.UNIT_ROUNDOFF[dtype] * 2
    np.testing.assert_allclose(a, b, rtol=bound, atol=bound)


def test_extreme_magnitudes_are_stable(target, dtype):
    big = float(np.finfo(np.float16).max if dtype == "float16" else 1e30)
    if dtype == "bfloat16":
        big = 1e30
    x, exact = target.exact([[big, -big, 0.0], [-big, -big, -big]], dtype)
    y = target.to_numpy(target.call(sd.softmax, x, -1))
    np.testing.assert_array_equal(y[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(y[1], [1 / 3] * 3, rtol=4 * ref.UNIT_ROUNDOFF[dtype])
    ly = target.to_numpy(target.call(sd.log_softmax, x, -1))
    # [0, -2 big, -big]: -2 big overflows to -inf in float16, and must do so cleanly
    host_dtype = np.float16 if dtype == "float16" else np.float32 if dtype == "bfloat16" else None
    expected = ref.log_softmax_ref(exact, (1,))
    if host_dtype is not None:
        with np.errstate(over="ignore"):
            expected = expected.astype(host_dtype).astype(np.float64)
    np.testing.assert_allclose(ly, expected, rtol=4 * ref.UNIT_ROUNDOFF[dtype])


def test_log_softmax_is_accurate_for_large_negative_logits(target, dtype):
    """log(softmax(x)) underflows to -inf; the stable formula keeps x - logsumexp."""
    gap = {"float16": 2e4, "bfloat16": 1e4, "float32": 1e4, "float64": 1e4}[dtype]
    x, exact = target.exact([[0.0, -gap, -gap / 2], [5.0, 5.0 - gap, 5.0]], dtype)
    y = target.to_numpy(target.call(sd.log_softmax, x, -1))
    expected = ref.log_softmax_ref(exact, (1,))
    assert np.isfinite(y).all(), f"log_softmax lost finite values: {y}"
    ref.assert_within(
        y, expected, ref.log_softmax_bound(exact, expected, (1,), dtype), "log_softmax"
    )


@pytest.mark.parametrize("op", sorted(FORWARD))
@pytest.mark.parametrize(
    ("axis", "axes"),
    [
        (2, (2,)),
        (-2, (1,)),
        (0, (0,)),
        ((0, -1), (0, 2)),
        ((2, 0, 1), (0, 1, 2)),
        (None, (0, 1, 2)),
        ((), ()),
    ],
    ids=["int", "negative", "zero", "tuple", "tuple-all", "none", "empty-tuple"],
)
def test_every_axis_form(target, dtype, op, axis, axes):
    check_forward(target, op, logits((3, 4, 5), seed=5), dtype, axis, axes)


@pytest.mark.parametrize("op", sorted(FORWARD))
def test_non_contiguous_and_transposed_inputs(target, dtype, op):
    fn, reference = FORWARD[op]
    x, exact = target.exact(logits((8, 6), seed=6), dtype)
    xp = target.xp
    for view, host in [
        (xp.permute_dims(x, (1, 0)), exact.T),
        (x[::2, ::3], exact[::2, ::3]),
        (x[:, 1:5], exact[:, 1:5]),
    ]:
        y = target.call(fn, view, -1)
        target.same_place(y, x)
        expected = reference(host, (1,))
        ref.assert_within(
            target.to_numpy(y), expected, BOUND[op](host, expected, (1,), dtype), f"{op} view"
        )


@pytest.mark.parametrize("op", sorted(FORWARD))
@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0), (2, 0, 4)])
def test_zero_size_inputs_give_empty_results(target, dtype, op, shape):
    x = target.asarray(np.zeros(shape), dtype)
    y = target.call(FORWARD[op][0], x, -1)
    target.same_place(y, x)
    assert tuple(y.shape) == shape and y.dtype == target.dtype(dtype)


def test_zero_d_input(target, dtype):
    x = target.asarray(np.asarray(3.5), dtype)
    y = target.call(sd.softmax, x)
    ly = target.call(sd.log_softmax, x)
    assert tuple(y.shape) == () and y.dtype == target.dtype(dtype)
    assert float(target.to_numpy(y)) == 1.0 and float(target.to_numpy(ly)) == 0.0


def test_integer_input_is_cast_before_the_max(target):
    xp = target.xp
    if not hasattr(xp, "int8"):
        pytest.skip("namespace has no int8")
    x = target.asarray(np.array([-128, 127], dtype=np.int8), xp.int8)
    y = target.call(sd.softmax, x)
    assert y.dtype == target.dtype(target.default_float)
    got = target.to_numpy(y)
    # exp(-255) = 1.8e-111: itself in float64, 0 in float32 (never ~1 from wraparound)
    tiny = ref.TINY[target.default_float]
    np.testing.assert_allclose(got, [math.exp(-255), 1.0], rtol=1e-5, atol=tiny)


def test_dtype_argument_casts_first(target, dtype):
    x = target.asarray(logits((3, 5), seed=7), "float32")
    y = target.call(sd.softmax, x, -1, dtype=target.dtype(dtype))
    assert y.dtype == target.dtype(dtype)
    _, exact = target.exact(target.to_numpy(x), dtype)
    expected = ref.softmax_ref(exact, (1,))
    ref.assert_within(
        target.to_numpy(y),
        expected,
        ref.softmax_bound(exact, expected, (1,), dtype),
        "softmax dtype=",
    )


def test_dtype_by_name_is_the_libraries_own_dtype(target, dtype):
    """``dtype="float32"`` means the array's own library's float32; a name that is no
    real floating dtype there is a TypeError naming the name."""
    x = target.asarray(logits((3, 5), seed=7), "float32")
    by_name = target.call(sd.log_softmax, x, -1, dtype=dtype)
    by_object = target.call(sd.log_softmax, x, -1, dtype=target.dtype(dtype))
    assert by_name.dtype == target.dtype(dtype)
    np.testing.assert_array_equal(target.to_numpy(by_name), target.to_numpy(by_object))
    with pytest.raises(TypeError, match="'int32'"):
        target.call(sd.softmax, x, -1, dtype="int32")


def test_float16_long_row_accumulates_in_float32(target):
    if "float16" not in target.dtypes:
        pytest.skip("device has no float16")
    x = target.asarray(np.zeros(70_000), "float16")
    y = target.to_numpy(target.call(sd.softmax, x))
    ly = target.to_numpy(target.call(sd.log_softmax, x))
    np.testing.assert_allclose(y, np.float64(np.float16(1 / 70_000)), rtol=1e-3)
    np.testing.assert_allclose(ly, float(np.float16(-math.log(70_000))), rtol=1e-3)


@pytest.mark.parametrize(
    "op", ["softmax", "log_softmax", "softmax_backward", "log_softmax_backward"]
)
def test_same_input_same_bits(target, dtype, op):
    x = target.asarray(logits((16, 40), seed=8), dtype)
    fn = getattr(sd, op)
    args = (x, target.call(sd.softmax, x)) if "backward" in op else (x,)
    first = target.to_numpy(target.call(fn, *args))
    second = target.to_numpy(target.call(fn, *args))
    np.testing.assert_array_equal(first, second)
