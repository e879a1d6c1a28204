"""softmax and log_softmax on NumPy arrays against an independent mpmath reference.

The expected values never come from softmax_dispatch itself: ``ref_softmax`` computes
every distribution at 50 significant digits from the exact values of the input.
"""

from __future__ import annotations

import math
import warnings

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import softmax_dispatch as sd

mpmath.mp.dps = 50

FLOATS = [np.float16, np.float32, np.float64]

#: (rtol, atol) of a float64 view of the result against the 50-digit reference. For
#: softmax the relative tolerance is scaled by ``1 + |log p|``: even a perfect kernel
#: rounds ``x - max`` once, and ``exp`` turns that absolute error into a relative one.
SOFTMAX_TOL = {
    np.float16: (1e-3, 1e-7),
    np.float32: (1e-6, 1e-44),
    np.float64: (1e-14, 1e-300),
}
#: For log_softmax a plain ``atol + rtol * |ref|`` bound has the same shape.
LOG_SOFTMAX_TOL = {
    np.float16: (1e-3, 2e-3),
    np.float32: (2e-6, 2e-6),
    np.float64: (1e-13, 1e-13),
}


# --------------------------------------------------------------------------- reference


def _axes_tuple(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, tuple):
        return tuple(a % ndim for a in axis)
    return (axis % ndim,) if ndim else ()


def _row_reference(values, keep, log):
    """One distribution at 50 digits; masked entries 0 (-inf for log)."""
    kept = [mpmath.mpf(float(v)) for v, k in zip(values, keep) if k]
    empty = -math.inf if log else 0.0
    if not kept:
        return [empty] * len(values)
    m = max(kept)
    lse = m + mpmath.log(mpmath.fsum(mpmath.exp(v - m) for v in kept))
    out = []
    for v, k in zip(values, keep):
        if not k:
            out.append(empty)
        elif log:
            out.append(float(mpmath.mpf(float(v)) - lse))
        else:
            out.append(float(mpmath.exp(mpmath.mpf(float(v)) - lse)))
    return out


def ref_softmax(x, axis=-1, where=None, log=False):
    """softmax (or log_softmax) of the finite array ``x`` over ``axis`` in float64,
    computed at 50 digits from the exact input values; ``where`` masks as in the spec."""
    x = np.asarray(x)
    if x.dtype.kind in "iu":
        x = x.astype(np.float64)
    nd = x.ndim
    axes = _axes_tuple(axis, nd)
    keep = np.ones(x.shape, bool) if where is None else np.broadcast_to(where, x.shape)
    dest = list(range(nd - len(axes), nd))
    xm = np.moveaxis(x, axes, dest)
    km = np.moveaxis(keep, axes, dest)
    n = math.prod(xm.shape[nd - len(axes) :])
    rows = xm.reshape(-1, n)
    krows = km.reshape(-1, n)
    res = np.array(
        [_row_reference(r, k, log) for r, k in zip(rows, krows)], dtype=np.float64
    ).reshape(xm.shape)
    return np.moveaxis(res, dest, axes)


def assert_close(actual, expected, dtype, log=False):
    actual = np.asarray(actual).astype(np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if log:
        rtol, atol = LOG_SOFTMAX_TOL[dtype]
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)
        return
    rtol, atol = SOFTMAX_TOL[dtype]
    with np.errstate(divide="ignore"):
        scale = 1.0 + np.where(expected > 0, np.abs(np.log(expected)), 0.0)
    err = np.abs(actual - expected)
    bad = ~(err <= atol + rtol * np.abs(expected) * scale)
    if bad.any():
        raise AssertionError(
            f"{bad.sum()} of {bad.size} entries off; worst: actual {actual[bad][:5]}, "
            f"expected {expected[bad][:5]}"
        )


def _random(shape, dtype, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale).astype(dtype)


# --------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("axis", [-1, 0, 1, (0, 2), None])
def test_softmax_matches_mpmath_reference_per_dtype(dtype, axis):
    x = _random((3, 4, 5), dtype, seed=1)
    y = sd.softmax(x, axis=axis)
    assert isinstance(y, np.ndarray)
    assert y.dtype == dtype
    assert y.shape == x.shape
    assert_close(y, ref_softmax(x, axis), dtype)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("axis", [-1, 0, 1, (0, 2), None])
def test_log_softmax_matches_mpmath_reference_per_dtype(dtype, axis):
    x = _random((3, 4, 5), dtype, seed=2)
    y = sd.log_softmax(x, axis=axis)
    assert isinstance(y, np.ndarray)
    assert y.dtype == dtype
    assert y.shape == x.shape
    assert_close(y, ref_softmax(x, axis, log=True), dtype, log=True)


@pytest.mark.parametrize("dtype", FLOATS)
def test_log_softmax_keeps_precision_where_log_of_softmax_underflows(dtype):
    x = np.array([0.0, -30000.0 if dtype != np.float16 else -60000.0], dtype=dtype)
    y = sd.log_softmax(x)
    assert y.dtype == dtype
    assert y[0] == 0.0
    assert y[1] == x[1]  # exactly x - max; log(softmax) would be -inf


def test_float64_softmax_is_computed_in_float64_not_float32():
    # Differences of 1e-10 vanish in float32 but must show in float64.
    x = np.array([0.0, 1e-10, 2e-10])
    y = sd.softmax(x)
    assert y.dtype == np.float64
    assert_close(y, ref_softmax(x), np.float64)
    assert y[0] < y[1] < y[2]


# --------------------------------------------------------------------------- integers


def test_int8_extremes_are_cast_to_float64_before_the_max():
    x = np.array([-128, 127], dtype=np.int8)
    y = sd.softmax(x)
    assert y.dtype == np.float64
    assert y.shape == (2,)
    np.testing.assert_allclose(y, ref_softmax(x), rtol=1e-13, atol=0)
    np.testing.assert_allclose(y, [math.exp(-255.0), 1.0], rtol=1e-13, atol=0)
    ly = sd.log_softmax(x)
    assert ly.dtype == np.float64
    np.testing.assert_allclose(ly, [-255.0, 0.0], rtol=1e-13, atol=1e-13)


def test_scipy_wraps_int8_around_where_softmax_dispatch_does_not():
    special = pytest.importorskip("scipy.special")
    x = np.array([-128, 127], dtype=np.int8)
    wrong = special.softmax(x)
    # SciPy subtracts the max in int8: -128 - 127 wraps to 1, so it ranks -128 first.
    assert wrong[0] > wrong[1]
    ours = sd.softmax(x)
    assert ours[1] == pytest.approx(1.0)
    assert ours[0] < 1e-100


@pytest.mark.parametrize("int_dtype", [np.int8, np.uint8, np.int16, np.int32, np.int64])
def test_integer_input_returns_float64_matching_reference(int_dtype):
    info = np.iinfo(int_dtype)
    rng = np.random.default_rng(3)
    x = rng.integers(max(info.min, -20), min(info.max, 20), size=(4, 6), endpoint=True)
    x = x.astype(int_dtype)
    x[0, 0] = info.min
    x[0, 1] = info.max
    y = sd.softmax(x)
    assert y.dtype == np.float64
    assert y.shape == x.shape
    assert_close(y, ref_softmax(x), np.float64)
    ly = sd.log_softmax(x)
    assert ly.dtype == np.float64
    assert_close(ly, ref_softmax(x, log=True), np.float64, log=True)


# --------------------------------------------------------------------------- float16


def test_float16_row_of_70000_zeros_accumulates_in_float32():
    x = np.zeros(70_000, dtype=np.float16)
    y = sd.softmax(x)
    assert y.dtype == np.float16
    assert y.shape == (70_000,)
    expected = np.float16(1.0 / 70_000)
    assert expected != 0
    np.testing.assert_array_equal(y, np.full(70_000, expected, dtype=np.float16))
    ly = sd.log_softmax(x)
    assert ly.dtype == np.float16
    np.testing.assert_array_equal(ly, np.full(70_000, np.float16(-math.log(70_000))))


def test_float16_rows_of_70000_zeros_along_axis_0():
    x = np.zeros((70_000, 2), dtype=np.float16)
    y = sd.softmax(x, axis=0)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, np.full(x.shape, np.float16(1.0 / 70_000)))


# --------------------------------------------------------------------------- stability


def test_float32_huge_magnitudes_are_stable():
    x = np.array([1e30, -1e30, 0.0], dtype=np.float32)
    y = sd.softmax(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, np.array([1.0, 0.0, 0.0], dtype=np.float32))
    ly = sd.log_softmax(x)
    assert ly.dtype == np.float32
    np.testing.assert_array_equal(ly, np.array([0.0, -2e30, -1e30], dtype=np.float32))


def test_float16_near_max_magnitudes_are_stable():
    x = np.array([6e4, -6e4, 0.0], dtype=np.float16)
    y = sd.softmax(x)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, np.array([1.0, 0.0, 0.0], dtype=np.float16))
    ly = sd.log_softmax(x)
    assert ly.dtype == np.float16
    # -1.2e5 is beyond float16's range: correctly rounded, it is -inf.
    np.testing.assert_array_equal(ly, np.array([0.0, -np.inf, -6e4], dtype=np.float16))


@pytest.mark.parametrize("dtype", FLOATS)
def test_largest_finite_values_do_not_overflow(dtype):
    big = np.finfo(dtype).max
    x = np.array([[big, big], [big, -big]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # -big - big overflows to -inf
        y = sd.softmax(x)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, np.array([[0.5, 0.5], [1.0, 0.0]], dtype=dtype))


# --------------------------------------------------------------------------- NaN and inf


@pytest.mark.parametrize("fn", [sd.softmax, sd.log_softmax], ids=["softmax", "log_softmax"])
def test_nan_poisons_its_row_only(fn):
    x = np.array([[0.0, np.nan, 1.0], [0.0, 1.0, 2.0], [3.0, 2.0, 1.0]])
    y = fn(x)
    assert y.shape == x.shape
    assert y.dtype == np.float64
    assert np.isnan(y[0]).all()
    assert np.isfinite(y[1:]).all()
    log = fn is sd.log_softmax
    np.testing.assert_allclose(y[1:], ref_softmax(x[1:], log=log), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("fn", [sd.softmax, sd.log_softmax], ids=["softmax", "log_softmax"])
def test_nan_along_axis_0_poisons_that_column_only(fn):
    x = np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 3.0]])
    y = fn(x, axis=0)
    assert np.isnan(y[:, 0]).all()
    log = fn is sd.log_softmax
    np.testing.assert_allclose(y[:, 1], ref_softmax(x[:, 1], log=log), rtol=1e-13)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("fn", [sd.softmax, sd.log_softmax], ids=["softmax", "log_softmax"])
def test_all_minus_inf_row_is_nan_and_other_rows_unaffected(fn, dtype):
    x = np.array([[-np.inf, -np.inf, -np.inf], [0.0, 1.0, 2.0]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        y = fn(x)
    assert y.dtype == dtype
    assert np.isnan(y[0]).all()
    log = fn is sd.log_softmax
    assert_close(y[1], ref_softmax(x[1], log=log), dtype, log=log)


@pytest.mark.parametrize("fn", [sd.softmax, sd.log_softmax], ids=["softmax", "log_softmax"])
def test_plus_inf_in_a_row_makes_that_row_nan(fn):
    x = np.array([[0.0, np.inf, 1.0], [np.inf, np.inf, 0.0], [1.0, 2.0, -np.inf]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        y = fn(x)
    assert np.isnan(y[0]).all()
    assert np.isnan(y[1]).all()
    # A single -inf among finite values is just probability 0 (log: -inf).
    if fn is sd.softmax:
        np.testing.assert_allclose(y[2], [1 / (1 + math.e), math.e / (1 + math.e), 0.0])
    else:
        lse = math.log(math.e + math.e**2)
        np.testing.assert_allclose(y[2], [1.0 - lse, 2.0 - lse, -np.inf])


def test_minus_inf_entries_get_probability_zero():
    x = np.array([-np.inf, 0.0, -np.inf, 0.0])
    y = sd.softmax(x)
    np.testing.assert_array_equal(y, [0.0, 0.5, 0.0, 0.5])


# --------------------------------------------------------------------------- where=


def test_where_masks_entries_to_zero_and_renormalises():
    x = _random((4, 6), np.float64, seed=5)
    mask = np.random.default_rng(6).random((4, 6)) < 0.6
    mask[:, 0] = True
    y = sd.softmax(x, where=mask)
    assert y.dtype == np.float64
    assert y.shape == x.shape
    np.testing.assert_allclose(y, ref_softmax(x, where=mask), rtol=1e-13, atol=0)
    assert (y[~mask] == 0.0).all()
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-13)
    ly = sd.log_softmax(x, where=mask)
    assert np.isneginf(ly[~mask]).all()
    np.testing.assert_allclose(
        ly[mask], ref_softmax(x, where=mask, log=True)[mask], rtol=1e-13, atol=1e-13
    )


@pytest.mark.parametrize("masked_value", [0.0, -np.inf, np.nan, np.inf])
def test_fully_masked_row_is_zero_in_softmax_and_minus_inf_in_log_softmax(masked_value):
    x = np.array([[masked_value] * 3, [1.0, masked_value, 2.0]])
    mask = np.array([[False, False, False], [True, False, True]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        y = sd.softmax(x, where=mask)
        ly = sd.log_softmax(x, where=mask)
    assert y.dtype == ly.dtype == np.float64
    assert not np.isnan(y).any()
    assert not np.isnan(ly).any()
    np.testing.assert_array_equal(y[0], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(ly[0], [-np.inf, -np.inf, -np.inf])
    s = 1 / (1 + math.e)
    np.testing.assert_allclose(y[1], [s, 0.0, 1 - s], rtol=1e-14)
    np.testing.assert_allclose(ly[1], [math.log(s), -np.inf, math.log(1 - s)], rtol=1e-14)


def test_mask_broadcasts_from_row_and_column_shapes():
    x = _random((3, 4), np.float64, seed=7)
    col_mask = np.array([True, False, True, True])  # shape (4,)
    y = sd.softmax(x, where=col_mask)
    np.testing.assert_allclose(y, ref_softmax(x, where=col_mask), rtol=1e-13, atol=0)
    row_mask = np.array([[True], [False], [True]])  # shape (3, 1)
    y = sd.softmax(x, where=row_mask)
    assert y.shape == (3, 4)
    np.testing.assert_array_equal(y[1], 0.0)
    np.testing.assert_allclose(y, ref_softmax(x, where=row_mask), rtol=1e-13, atol=0)
    ly = sd.log_softmax(x, axis=0, where=col_mask)
    assert np.isneginf(ly[:, 1]).all()
    np.testing.assert_allclose(ly[:, [0, 2, 3]], ref_softmax(x[:, [0, 2, 3]], axis=0, log=True))


def test_mask_that_does_not_broadcast_is_rejected():
    with pytest.raises(ValueError, match=r"\(3,\)"):
        sd.softmax(np.zeros((2, 4)), where=np.ones(3, dtype=bool))


def test_non_boolean_mask_is_rejected():
    with pytest.raises(TypeError, match="bool"):
        sd.softmax(np.zeros((2, 4)), where=np.ones(4, dtype=np.int64))


@pytest.mark.parametrize("axis", [-1, 0])
def test_partially_masked_rows_match_jax(axis):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    x = _random((5, 6), np.float64, seed=8)
    mask = np.random.default_rng(9).random((5, 6)) < 0.5
    mask[0, :] = True
    mask[:, 0] = True
    expected = np.asarray(jax.nn.softmax(x, axis=axis, where=mask))
    expected_log = np.asarray(jax.nn.log_softmax(x, axis=axis, where=mask))
    assert expected.dtype == np.float64
    np.testing.assert_allclose(sd.softmax(x, axis=axis, where=mask), expected, rtol=1e-12)
    np.testing.assert_allclose(
        sd.log_softmax(x, axis=axis, where=mask), expected_log, rtol=1e-12, atol=1e-12
    )


def test_masked_float16_row_keeps_dtype():
    x = np.array([[1.0, 2.0, 3.0]], dtype=np.float16)
    mask = np.array([True, False, True])
    y = sd.softmax(x, where=mask)
    assert y.dtype == np.float16
    assert_close(y, ref_softmax(x, where=mask), np.float16)


# --------------------------------------------------------------------------- axis forms


@pytest.mark.parametrize(
    "axis", [0, 1, 2, -1, -2, -3, (0,), (1, 2), (2, 0), (-1, 0), (0, 1, 2), None]
)
def test_every_axis_form_matches_reference(axis):
    x = _random((2, 3, 4), np.float64, seed=10)
    y = sd.softmax(x, axis=axis)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, ref_softmax(x, axis), rtol=1e-13, atol=0)
    axes = _axes_tuple(axis, 3)
    np.testing.assert_allclose(y.sum(axis=axes), 1.0, rtol=1e-13)
    ly = sd.log_softmax(x, axis=axis)
    np.testing.assert_allclose(ly, ref_softmax(x, axis, log=True), rtol=1e-13, atol=1e-13)


def test_axis_none_is_one_distribution_over_everything():
    x = _random((3, 4), np.float64, seed=11)
    y = sd.softmax(x, axis=None)
    assert y.sum() == pytest.approx(1.0, rel=1e-13)
    np.testing.assert_allclose(y.ravel(), ref_softmax(x.ravel()), rtol=1e-13)


def test_empty_axis_tuple_makes_each_element_its_own_distribution():
    x = np.array([[-5.0, 0.0, 7.0], [1e300, -1e300, 3.0]])
    y = sd.softmax(x, axis=())
    assert y.shape == x.shape
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, np.ones_like(x))
    ly = sd.log_softmax(x, axis=())
    np.testing.assert_array_equal(ly, np.zeros_like(x))


def test_numpy_integer_axis_is_accepted():
    x = _random((3, 4), np.float64, seed=12)
    np.testing.assert_allclose(sd.softmax(x, axis=np.int64(0)), ref_softmax(x, 0), rtol=1e-13)


@pytest.mark.parametrize(
    ("shape", "axis", "fragments"),
    [
        ((2, 3), 2, ["2", "dimension 2"]),
        ((2, 3), -3, ["-3", "2"]),
        ((4,), 1, ["1", "1"]),
        ((2, 3), (0, 5), ["5", "2"]),
        ((2, 3, 4), (0, 0), ["(0, 0)", "3"]),
        ((2, 3, 4), (1, -2), ["(1, -2)", "3"]),
        ((), 1, ["1", "0"]),
    ],
)
def test_out_of_range_or_repeated_axis_names_axis_and_ndim(shape, axis, fragments):
    x = np.zeros(shape)
    for fn in (sd.softmax, sd.log_softmax):
        with pytest.raises((ValueError, IndexError)) as info:
            fn(x, axis=axis)
        message = str(info.value)
        assert "axis" in message
        for fragment in fragments:
            assert fragment in message


@pytest.mark.parametrize("axis", [1.0, "0", True, [[0]]])
def test_non_integer_axis_is_a_type_error(axis):
    with pytest.raises(TypeError, match="axis"):
        sd.softmax(np.zeros((2, 3)), axis=axis)


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0,), (2, 0, 4)])
@pytest.mark.parametrize("axis", [-1, 0, None])
@pytest.mark.parametrize("fn", [sd.softmax, sd.log_softmax], ids=["softmax", "log_softmax"])
def test_zero_size_arrays_give_empty_results_of_the_same_shape(fn, shape, axis):
    x = np.zeros(shape, dtype=np.float32)
    y = fn(x, axis=axis)
    assert isinstance(y, np.ndarray)
    assert y.shape == shape
    assert y.dtype == np.float32
    assert y.size == 0


def test_zero_size_integer_array_becomes_float64():
    y = sd.softmax(np.zeros((0, 3), dtype=np.int32))
    assert y.shape == (0, 3)
    assert y.dtype == np.float64


@pytest.mark.parametrize("axis", [-1, 0, None, ()])
def test_zero_d_input_gives_one_and_zero(axis):
    x = np.array(3.5, dtype=np.float32)
    y = sd.softmax(x, axis=axis)
    assert y.shape == ()
    assert y.dtype == np.float32
    assert y == 1.0
    ly = sd.log_softmax(x, axis=axis)
    assert ly.shape == ()
    assert ly.dtype == np.float32
    assert ly == 0.0


@pytest.mark.parametrize("fn", [sd.softmax, sd.log_softmax], ids=["softmax", "log_softmax"])
def test_zero_d_input_returns_a_0d_ndarray_not_a_numpy_scalar(fn):
    # Same kind of array as the input: a 0-d ndarray, not an np.float32 scalar.
    y = fn(np.array(3.5, dtype=np.float32))
    assert isinstance(y, np.ndarray)
    assert y.shape == ()
    assert y.dtype == np.float32


def test_zero_d_integer_input_gives_float64_one():
    y = sd.softmax(np.array(7))
    assert y.shape == ()
    assert y.dtype == np.float64
    assert y == 1.0


# --------------------------------------------------------------------------- dtype=


def test_dtype_argument_casts_the_input_first_like_torch():
    # 1000.25 rounds to 1000 in float16: cast first, the two logits are equal.
    x = np.array([1000.0, 1000.25])
    y = sd.softmax(x, dtype=np.float16)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, np.array([0.5, 0.5], dtype=np.float16))
    torch = pytest.importorskip("torch")
    t = torch.softmax(torch.from_numpy(x), dim=-1, dtype=torch.float16)
    np.testing.assert_array_equal(y, t.numpy())


@pytest.mark.parametrize("fn", [sd.softmax, sd.log_softmax], ids=["softmax", "log_softmax"])
def test_dtype_float32_on_float64_input_matches_torch(fn):
    torch = pytest.importorskip("torch")
    x = _random((3, 7), np.float64, seed=13)
    y = fn(x, dtype=np.float32)
    assert y.dtype == np.float32
    assert y.shape == x.shape
    tfn = torch.softmax if fn is sd.softmax else torch.log_softmax
    expected = tfn(torch.from_numpy(x), dim=-1, dtype=torch.float32).numpy()
    np.testing.assert_allclose(y, expected, rtol=2e-6, atol=2e-6)
    log = fn is sd.log_softmax
    assert_close(y, ref_softmax(x.astype(np.float32), log=log), np.float32, log=log)


def test_dtype_float64_on_float16_input_computes_in_float64():
    x = _random((2, 9), np.float16, seed=14)
    y = sd.softmax(x, dtype=np.float64)
    assert y.dtype == np.float64
    assert_close(y, ref_softmax(x), np.float64)


def test_dtype_argument_on_integer_input():
    x = np.array([[1, 2, 3]], dtype=np.int64)
    y = sd.softmax(x, dtype=np.float32)
    assert y.dtype == np.float32
    assert_close(y, ref_softmax(x), np.float32)


@pytest.mark.parametrize("bad", [np.int32, np.bool_, np.complex128])
def test_non_floating_dtype_argument_is_a_type_error(bad):
    with pytest.raises(TypeError, match="dtype"):
        sd.softmax(np.zeros(3), dtype=bad)


@pytest.mark.parametrize(
    "x",
    [np.array([True, False]), np.array([1 + 1j, 0j]), np.array([1 + 1j], dtype=np.complex64)],
    ids=["bool", "complex128", "complex64"],
)
@pytest.mark.parametrize("fn", [sd.softmax, sd.log_softmax], ids=["softmax", "log_softmax"])
def test_bool_and_complex_input_is_a_type_error(fn, x):
    with pytest.raises(TypeError, match=str(x.dtype)):
        fn(x)


# --------------------------------------------------------------------------- no mutation


def _views():
    base = _random((6, 8), np.float64, seed=15)
    return {
        "contiguous": base,
        "transposed": base.T,
        "strided": base[::2, 1::3],
        "negative-stride": base[::-1, ::-1],
        "fortran": np.asfortranarray(base),
    }


@pytest.mark.parametrize("kind", list(_views()))
@pytest.mark.parametrize("axis", [-1, 0, None])
@pytest.mark.parametrize("fn", [sd.softmax, sd.log_softmax], ids=["softmax", "log_softmax"])
def test_input_is_never_mutated_and_layout_does_not_matter(fn, axis, kind):
    x = _views()[kind]
    before = x.copy()
    y = fn(x, axis=axis)
    np.testing.assert_array_equal(x, before)
    assert not np.shares_memory(x, y)
    assert y.shape == x.shape
    np.testing.assert_allclose(
        y, ref_softmax(before, axis, log=fn is sd.log_softmax), rtol=1e-13, atol=1e-13
    )


def test_masked_call_does_not_mutate_input_or_mask():
    x = np.array([[1.0, np.nan, 3.0]])
    mask = np.array([True, False, True])
    x0, m0 = x.copy(), mask.copy()
    sd.softmax(x, where=mask)
    sd.log_softmax(x, where=mask)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(mask, m0)


def test_float16_and_integer_inputs_are_not_mutated():
    x16 = _random((3, 5), np.float16, seed=16)
    xi = np.arange(15, dtype=np.int16).reshape(3, 5)
    c16, ci = x16.copy(), xi.copy()
    sd.softmax(x16)
    sd.log_softmax(xi)
    assert x16.dtype == np.float16
    assert xi.dtype == np.int16
    np.testing.assert_array_equal(x16, c16)
    np.testing.assert_array_equal(xi, ci)


# --------------------------------------------------------------------------- out=


@pytest.mark.parametrize("fn", [sd.softmax, sd.log_softmax], ids=["softmax", "log_softmax"])
def test_out_receives_the_result_and_is_returned(fn):
    x = _random((3, 5), np.float64, seed=17)
    out = np.full((3, 5), -7.0)
    got = fn(x, out=out)
    assert got is out
    np.testing.assert_allclose(
        out, ref_softmax(x, log=fn is sd.log_softmax), rtol=1e-13, atol=1e-13
    )


@pytest.mark.parametrize("fn", [sd.softmax, sd.log_softmax], ids=["softmax", "log_softmax"])
def test_out_is_x_works_in_place(fn):
    x = _random((4, 3), np.float32, seed=18)
    expected = ref_softmax(x, 0, log=fn is sd.log_softmax)
    got = fn(x, axis=0, out=x)
    assert got is x
    assert x.dtype == np.float32
    assert_close(x, expected, np.float32, log=fn is sd.log_softmax)


def test_out_may_be_a_non_contiguous_view():
    x = _random((3, 4), np.float64, seed=19)
    buf = np.zeros((3, 8))
    view = buf[:, ::2]
    got = sd.softmax(x, out=view)
    assert got is view
    np.testing.assert_allclose(buf[:, ::2], ref_softmax(x), rtol=1e-13)
    np.testing.assert_array_equal(buf[:, 1::2], 0.0)


def test_out_with_integer_input_must_be_float64():
    x = np.array([[1, 2, 3]])
    out = np.empty((1, 3))
    assert sd.softmax(x, out=out) is out
    np.testing.assert_allclose(out, ref_softmax(x), rtol=1e-13)
    with pytest.raises(ValueError, match="float64"):
        sd.softmax(x, out=np.empty((1, 3), dtype=np.float32))


def test_out_with_dtype_argument_uses_the_requested_dtype():
    x = _random((2, 3), np.float64, seed=20)
    out = np.empty((2, 3), dtype=np.float32)
    assert sd.softmax(x, dtype=np.float32, out=out) is out
    assert_close(out, ref_softmax(x.astype(np.float32)), np.float32)


@pytest.mark.parametrize(
    ("out", "fragment"),
    [
        (np.empty((3, 4)), r"\(3, 4\)"),
        (np.empty((4, 3)), r"\(4, 3\)"),
        (np.empty((3, 5), dtype=np.float32), "float32"),
        (np.empty(15), r"\(15,\)"),
    ],
)
@pytest.mark.parametrize("fn", [sd.softmax, sd.log_softmax], ids=["softmax", "log_softmax"])
def test_out_of_wrong_shape_or_dtype_is_a_value_error(fn, out, fragment):
    x = _random((3, 5), np.float64, seed=21)
    before = out.copy()
    with pytest.raises(ValueError, match=fragment):
        fn(x, out=out)
    np.testing.assert_array_equal(out, before)


def test_read_only_out_is_a_type_error():
    x = _random((2, 3), np.float64, seed=22)
    out = np.zeros((2, 3))
    out.flags.writeable = False
    with pytest.raises(TypeError, match="out"):
        sd.softmax(x, out=out)
    np.testing.assert_array_equal(out, 0.0)


def test_read_only_input_is_fine_without_out():
    x = _random((2, 3), np.float64, seed=23)
    x.flags.writeable = False
    np.testing.assert_allclose(sd.softmax(x), ref_softmax(x), rtol=1e-13)


# --------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("dtype", FLOATS)
def test_rows_sum_to_one(dtype):
    x = _random((16, 33), dtype, seed=24, scale=5.0)
    y = sd.softmax(x)
    tol = {np.float16: 2e-2, np.float32: 1e-5, np.float64: 1e-13}[dtype]
    np.testing.assert_allclose(y.astype(np.float64).sum(-1), 1.0, rtol=tol)
    assert (y >= 0).all()
    assert (y <= 1).all()


def test_shift_invariance_per_row_is_exact_for_integral_values():
    rng = np.random.default_rng(25)
    x = rng.integers(-40, 40, size=(5, 7)).astype(np.float64)
    shift = rng.integers(-(10**6), 10**6, size=(5, 1)).astype(np.float64)
    # x + shift is exact, so x - max is the same: the results must agree closely.
    np.testing.assert_allclose(sd.softmax(x + shift), sd.softmax(x), rtol=1e-15, atol=0)
    np.testing.assert_allclose(sd.log_softmax(x + shift), sd.log_softmax(x), rtol=1e-15)
    np.testing.assert_allclose(sd.softmax(x), ref_softmax(x), rtol=1e-13)


def test_log_softmax_is_log_of_softmax_for_moderate_inputs():
    x = _random((4, 6), np.float64, seed=26)
    np.testing.assert_allclose(
        np.exp(sd.log_softmax(x, axis=0)), ref_softmax(x, 0), rtol=1e-13, atol=0
    )


# --------------------------------------------------------------------------- properties


@st.composite
def arrays_and_axes(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5))
    magnitude = draw(st.sampled_from([1.0, 30.0, 1e3, 1e6]))
    x = draw(
        hnp.arrays(
            dtype,
            shape,
            elements=st.floats(-magnitude, magnitude, allow_nan=False, width=32),
        )
    )
    nd = len(shape)
    axis = draw(
        st.one_of(
            st.integers(-nd, nd - 1),
            st.none(),
            st.lists(st.integers(0, nd - 1), unique=True, max_size=nd).map(tuple),
        )
    )
    return x, axis


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays_and_axes())
def test_property_softmax_matches_reference_and_sums_to_one(data):
    x, axis = data
    before = x.copy()
    y = sd.softmax(x, axis=axis)
    assert y.dtype == x.dtype
    assert y.shape == x.shape
    np.testing.assert_array_equal(x, before)
    assert_close(y, ref_softmax(x, axis), x.dtype.type)
    axes = _axes_tuple(axis, x.ndim)
    if axes:
        tol = 1e-5 if x.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(y.astype(np.float64).sum(axis=axes), 1.0, rtol=tol)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays_and_axes())
def test_property_log_softmax_matches_reference(data):
    x, axis = data
    y = sd.log_softmax(x, axis=axis)
    assert y.dtype == x.dtype
    assert y.shape == x.shape
    expected = ref_softmax(x, axis, log=True)
    eps = np.finfo(x.dtype).eps
    # Absolute error scales with the size of the shifted logits.
    atol = 16 * eps * (1.0 + np.abs(expected))
    assert (np.abs(y.astype(np.float64) - expected) <= atol).all()
    assert (y <= 0).all()


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
        elements=st.floats(-50, 50),
    ),
    st.data(),
)
def test_property_masked_softmax_matches_reference(x, data):
    mask = data.draw(hnp.arrays(np.bool_, x.shape))
    y = sd.softmax(x, where=mask)
    ly = sd.log_softmax(x, where=mask)
    assert y.dtype == ly.dtype == np.float64
    assert not np.isnan(y).any()
    assert not np.isnan(ly).any()
    np.testing.assert_allclose(y, ref_softmax(x, where=mask), rtol=1e-12, atol=0)
    np.testing.assert_allclose(ly, ref_softmax(x, where=mask, log=True), rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5),
        elements=st.floats(-100, 100),
    ),
    st.floats(-1e3, 1e3),
)
def test_property_shift_invariance(x, c):
    np.testing.assert_allclose(sd.softmax(x + c), sd.softmax(x), rtol=1e-9, atol=1e-300)
