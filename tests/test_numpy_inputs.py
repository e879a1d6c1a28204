"""What the NumPy backend accepts: ndarray subclasses (one rule, every op and size), the
dtype kinds (real floating and integer only; long double in every op), inputs that share
memory with ``out``, rows of length 1."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

import softmax_dispatch as sd
from softmax_dispatch._dispatch import generic_kernels

SIZES = {"small": (3, 5), "large": (300, 100)}  # under and over the fused kernels' cut-off
PATHS = ["fused", "generic"]


def _call(path, fn, *args, **kwargs):
    if path == "generic":
        with generic_kernels():
            return fn(*args, **kwargs)
    return fn(*args, **kwargs)


def _every_op(x, y, t, **extra):
    """(name, callable, args) for every public op; arrays may be subclasses."""
    return [
        ("softmax", sd.softmax, (x,)),
        ("log_softmax", sd.log_softmax, (x,)),
        ("softmax_backward", sd.softmax_backward, (x, y)),
        ("log_softmax_backward", sd.log_softmax_backward, (x, np.log(np.asarray(y)))),
        ("softmax_cross_entropy", sd.softmax_cross_entropy, (x, t)),
        ("softmax_cross_entropy_backward", sd.softmax_cross_entropy_backward, (x, t)),
    ]


def _data(size):
    rng = np.random.default_rng(0)
    x = rng.normal(size=SIZES[size])
    y = sd.softmax(x)
    t = rng.integers(0, x.shape[-1], size=x.shape[0])
    return x, y, t


# ---------------------------------------------------------------- array subclasses
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("size", sorted(SIZES))
def test_masked_arrays_are_refused_in_every_argument(path, size):
    """Their mask would be silently ignored: refuse, and say what to do instead."""
    x, y, t = _data(size)
    mx = np.ma.MaskedArray(x, mask=np.zeros(x.shape, bool))
    cases = [
        (sd.softmax, (mx,), {}),
        (sd.log_softmax, (mx,), {}),
        (sd.softmax, (x,), {"where": np.ma.MaskedArray(np.ones(x.shape, bool))}),
        (sd.softmax, (x,), {"out": np.ma.MaskedArray(np.zeros(x.shape))}),
        (sd.softmax_backward, (mx, y), {}),
        (sd.softmax_backward, (x, np.ma.MaskedArray(y)), {}),
        (sd.softmax_cross_entropy, (mx, t), {}),
        (sd.softmax_cross_entropy, (x, np.ma.MaskedArray(t)), {}),
        (sd.softmax_cross_entropy_backward, (x, t, np.ma.MaskedArray(1.0)), {}),
        (sd.softmax_cross_entropy, (x, t), {"weight": np.ma.MaskedArray(np.ones(x.shape[1]))}),
    ]
    for fn, args, kwargs in cases:
        with pytest.raises(TypeError, match=r"numpy\.ma\.MaskedArray.*where=") as info:
            _call(path, fn, *args, **kwargs)
        assert "mask" in str(info.value)


def test_masked_array_message_shows_the_where_spelling():
    mx = np.ma.MaskedArray([1.0, 2.0, 100.0], mask=[0, 0, 1])
    with pytest.raises(TypeError) as info:
        sd.softmax(mx)
    msg = str(info.value)
    assert "x is a numpy.ma.MaskedArray" in msg
    # the advice works: the masked entry gets 0, the others share the probability
    y = sd.softmax(mx.data, where=~np.ma.getmaskarray(mx))
    np.testing.assert_allclose(y, [1 / (1 + np.e), np.e / (1 + np.e), 0.0])


class Tagged(np.ndarray):
    """A user's ndarray subclass that carries metadata."""

    def __array_finalize__(self, obj):
        self.tag = getattr(obj, "tag", "none")


def _subclasses(x):
    tagged = x.view(Tagged)
    return {"matrix": np.asmatrix(x), "memmap-like": tagged}


MATRIX_WARNING = "ignore:the matrix subclass:PendingDeprecationWarning"  # np.asmatrix's own


@pytest.mark.filterwarnings(MATRIX_WARNING)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("size", sorted(SIZES))
@pytest.mark.parametrize("kind", ["matrix", "memmap-like"])
def test_ndarray_subclasses_are_computed_as_the_ndarray_they_hold(path, size, kind):
    """One rule for every op, size, axis and kernel path: the result is a plain ndarray,
    equal to the result on ``np.asarray(x)``."""
    x, y, t = _data(size)
    sub = _subclasses(x)[kind]
    ysub = _subclasses(np.asarray(y))[kind]
    for axis in (-1, 0):
        for name, fn, args in _every_op(sub, ysub, t):
            if "cross_entropy" in name and axis == 0:
                continue
            plain_args = tuple(np.asarray(a) for a in args)
            got = _call(path, fn, *args, axis=axis)
            want = _call(path, fn, *plain_args, axis=axis)
            assert type(got) is np.ndarray, f"{name}: {type(got).__name__}"
            np.testing.assert_array_equal(got, want, err_msg=f"{name} axis={axis}")


@pytest.mark.filterwarnings(MATRIX_WARNING)
def test_out_may_be_a_subclass_and_is_returned_as_given():
    x = np.random.default_rng(1).normal(size=(300, 100))
    for out in (np.asmatrix(np.zeros(x.shape)), np.zeros(x.shape).view(Tagged)):
        assert sd.softmax(x, out=out) is out
        np.testing.assert_array_equal(np.asarray(out), sd.softmax(x))


def test_a_real_memmap_works(tmp_path):
    m = np.memmap(tmp_path / "x.dat", dtype=np.float32, mode="w+", shape=(200, 100))
    m[:] = np.random.default_rng(2).normal(size=m.shape)
    y = sd.softmax(m)
    assert type(y) is np.ndarray
    np.testing.assert_array_equal(y, sd.softmax(np.array(m)))


# ---------------------------------------------------------------------- dtype kinds
ODD = {
    "datetime64": np.array(["NaT", "2021-01-01", "2021-01-02"], dtype="datetime64[D]"),
    "timedelta64": np.array([1, 2, 3], dtype="timedelta64[s]"),
    "object": np.array([1.0, 2.0, 3.0], dtype=object),
    "structured": np.zeros(3, dtype=[("a", "f4")]),
    "str": np.array(["1", "2", "3"]),
    "bytes": np.array([b"1", b"2", b"3"]),
    "void": np.zeros(3, dtype="V8"),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", sorted(ODD))
def test_non_numeric_dtypes_are_refused_naming_the_dtype(path, kind):
    bad = ODD[kind]
    ok = np.full(3, 1 / 3)
    t = np.array([0, 1, 2])
    calls = [
        ("x", sd.softmax, (bad,), {}),
        ("x", sd.log_softmax, (bad,), {}),
        ("grad", sd.softmax_backward, (bad, ok), {}),
        ("y", sd.softmax_backward, (ok, bad), {}),
        ("grad", sd.log_softmax_backward, (bad, np.log(ok)), {}),
        ("logits", sd.softmax_cross_entropy, (bad.reshape(1, 3), t[:1]), {}),
        ("target", sd.softmax_cross_entropy, (ok.reshape(3, 1), bad), {}),
        ("weight", sd.softmax_cross_entropy, (ok.reshape(1, 3), t[:1]), {"weight": bad}),
    ]
    for label, fn, args, kwargs in calls:
        with pytest.raises(TypeError, match=label) as info:
            _call(path, fn, *args, **kwargs)
        assert str(bad.dtype) in str(info.value), f"{fn.__name__}: {info.value}"


LD = np.dtype(np.longdouble)


def _mp_softmax_rows(x, log):
    out = np.empty(x.shape, dtype=LD)
    with mpmath.workdps(40):
        for i, row in enumerate(x):
            vals = [mpmath.mpf(str(v)) for v in row]  # str keeps every long double digit
            m = max(vals)
            s = mpmath.fsum(mpmath.exp(v - m) for v in vals)
            for j, v in enumerate(vals):
                r = (v - m) - mpmath.log(s) if log else mpmath.exp(v - m) / s
                out[i, j] = np.longdouble(mpmath.nstr(r, 30))
    return out


@pytest.mark.skipif(
    np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps,
    reason="long double is float64 on this platform",
)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape", [(4, 7), (200, 90)], ids=["small", "large"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_long_double_is_supported_in_every_op_at_its_own_precision(path, shape, axis):
    x = np.random.default_rng(3).normal(0, 4, size=shape).astype(LD)
    eps = float(np.finfo(LD).eps)
    rows = np.moveaxis(x, axis, -1)
    for log in (False, True):
        fn = sd.log_softmax if log else sd.softmax
        y = _call(path, fn, x, axis=axis)
        assert y.dtype == LD
        expected = np.moveaxis(_mp_softmax_rows(rows[:8], log), -1, axis) if axis == -1 else None
        if expected is not None:
            err = np.abs(y[:8] - expected) / np.maximum(np.abs(expected), 1)
            assert float(err.max()) < 64 * eps, float(err.max())
        else:  # float64 cannot tell: the rows must sum to 1 at long double precision
            total = np.sum(np.exp(y) if log else y, axis=axis, dtype=LD)
            assert float(np.abs(total - 1).max()) < 64 * eps * np.sqrt(shape[axis])
    y = _call(path, sd.softmax, x, axis=axis)
    g = np.random.default_rng(4).normal(size=shape).astype(LD)
    for fn in (sd.softmax_backward, sd.log_softmax_backward):
        assert _call(path, fn, g, y, axis=axis).dtype == LD
    if axis == -1:
        t = np.arange(shape[0]) % shape[1]
        loss = _call(path, sd.softmax_cross_entropy, x, t)
        d = _call(path, sd.softmax_cross_entropy_backward, x, t)
        assert loss.dtype == LD and d.dtype == LD
        logp = _call(path, sd.log_softmax, x)
        want = -np.mean(logp[np.arange(shape[0]), t])
        assert abs(float(loss - want)) < 64 * eps * max(1.0, abs(float(want)))


# ------------------------------------------------------------- sharing memory with out
def _mask_in(out, values):
    """A boolean mask of ``out``'s shape living in the first quarter of ``out``'s bytes:
    the mask of row r is in row r/4, overwritten before row r is computed."""
    where = out.view(np.uint8).reshape(-1)[: out.size].reshape(out.shape).view(np.bool_)
    where[...] = values
    return where


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape", [(8, 16), (1024, 2048)], ids=["small", "large"])
def test_a_mask_sharing_memory_with_out_gives_the_result_of_a_copy(path, op, shape):
    fn = getattr(sd, op)
    rng = np.random.default_rng(5)
    x = rng.normal(size=shape).astype(np.float32)
    out = np.zeros(shape, dtype=np.float32)
    where = _mask_in(out, rng.random(shape) < 0.7)
    expected = _call(path, fn, x, where=where.copy())
    assert _call(path, fn, x, where=where, out=out) is out
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("op", ["softmax_backward", "log_softmax_backward"])
def test_a_backward_mask_sharing_memory_with_out_gives_the_result_of_a_copy(op):
    rng = np.random.default_rng(6)
    shape = (1024, 2048)
    y = sd.softmax(rng.normal(size=shape).astype(np.float32))
    if op == "log_softmax_backward":
        y = np.log(y)
    g = rng.normal(size=shape).astype(np.float32)
    out = np.zeros(shape, dtype=np.float32)
    where = _mask_in(out, rng.random(shape) < 0.7)
    expected = getattr(sd, op)(g, y, where=where.copy())
    getattr(sd, op)(g, y, where=where, out=out)
    np.testing.assert_array_equal(out, expected)


# ------------------------------------------------------------------ rows of length 1
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("rows", [3, 100_000])
def test_rows_of_length_one_are_exactly_one(path, dtype, rows):
    x = (np.random.default_rng(7).normal(0, 30, size=(rows, 1))).astype(dtype)
    y = _call(path, sd.softmax, x)
    assert np.all(y == 1), f"{int(np.sum(y != 1))} of {rows} rows differ from 1"
    assert np.all(_call(path, sd.log_softmax, x) == 0)
    x3 = x.reshape(1, rows, 1)
    assert np.all(_call(path, sd.softmax, x3, axis=(0, 2)) == 1)
