"""The NumPy backend's fused kernels: the same answers as the generic kernels on random
inputs, in every layout; threads; concurrency; memory."""

from __future__ import annotations

import os
import threading
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import softmax_dispatch as sd
from softmax_dispatch import _dispatch

OPS = ["softmax", "log_softmax", "softmax_backward", "log_softmax_backward"]
TOL = {np.float16: 2e-3, np.float32: 2e-6, np.float64: 1e-13}


def _run(op, x, g, axis, where, generic):
    fn = getattr(sd, op)
    if "backward" in op:
        y = (sd.softmax if op == "softmax_backward" else sd.log_softmax)(x, axis, where=where)
        args = (g, y)
    else:
        args = (x,)
    if generic:
        with _dispatch.generic_kernels():
            return fn(*args, axis, where=where)
    return fn(*args, axis, where=where)


def _compare(op, x, g, axis, where):
    fused = _run(op, x, g, axis, where, generic=False)
    generic = _run(op, x, g, axis, where, generic=True)
    assert fused.dtype == generic.dtype and fused.shape == generic.shape
    tol = TOL[x.dtype.type]
    # sums cancel in the backward passes: errors scale with the largest magnitude
    finite = np.abs(generic[np.isfinite(generic)].astype(np.float64))
    scale = 8 * (1 + (finite.max() if finite.size else 0.0))
    np.testing.assert_allclose(fused, generic, rtol=tol, atol=tol * scale, equal_nan=True)


@st.composite
def inputs(draw):
    ndim = draw(st.integers(1, 3))
    big = draw(st.booleans())  # big: past the small-input cut-off, into the blocked paths
    sizes = st.integers(20, 90) if big else st.integers(1, 7)
    shape = tuple(draw(st.lists(sizes, min_size=ndim, max_size=ndim)))
    axes = draw(
        st.one_of(
            st.integers(-ndim, ndim - 1),
            st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(tuple),
            st.none(),
        )
    )
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * draw(st.sampled_from([0.1, 3.0, 50.0]))).astype(dtype)
    if draw(st.booleans()):
        x = np.asfortranarray(x)  # a non-C-contiguous layout
    g = rng.standard_normal(shape).astype(dtype)
    where = rng.random(shape) < 0.8 if draw(st.booleans()) else None
    return x, g, axes, where


@settings(max_examples=60, deadline=None, derandomize=True)
@given(case=inputs(), op=st.sampled_from(OPS))
def test_fused_and_generic_kernels_agree(case, op):
    x, g, axis, where = case
    _compare(op, x, g, axis, where)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("axis", [-1, 0, 1, (0, 2), (1, 2), None])
def test_fused_and_generic_agree_on_large_3d(op, axis):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((30, 70, 50)).astype(np.float32) * 4
    g = rng.standard_normal(x.shape).astype(np.float32)
    _compare(op, x, g, axis, None)
    _compare(op, x, g, axis, rng.random(x.shape) < 0.5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_fused_and_generic_cross_entropy_agree(reduction, axis):
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((400, 33) if axis == -1 else (33, 400)) * 3
    target = rng.integers(0, 33, size=400)
    target[::9] = -1
    kw = dict(reduction=reduction, label_smoothing=0.05, ignore_index=-1, weight=rng.random(33))
    grad = rng.random(400) if reduction == "none" else 0.7
    fused = sd.softmax_cross_entropy(logits, target, axis, **kw)
    dfused = sd.softmax_cross_entropy_backward(logits, target, grad, axis, **kw)
    with _dispatch.generic_kernels():
        generic = sd.softmax_cross_entropy(logits, target, axis, **kw)
        dgeneric = sd.softmax_cross_entropy_backward(logits, target, grad, axis, **kw)
    np.testing.assert_allclose(fused, generic, rtol=1e-12)
    np.testing.assert_allclose(dfused, dgeneric, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("threads", ["1", "2", "3", "7"])
def test_any_thread_count_gives_the_same_bits(monkeypatch, threads):
    x = np.random.default_rng(3).standard_normal((300, 1000)).astype(np.float32)
    monkeypatch.setenv("SOFTMAX_DISPATCH_NUM_THREADS", "1")
    serial = sd.softmax(x), sd.softmax(x, 0), sd.log_softmax(x)
    monkeypatch.setenv("SOFTMAX_DISPATCH_NUM_THREADS", threads)
    parallel = sd.softmax(x), sd.softmax(x, 0), sd.log_softmax(x)
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad", ["0", "-2", "many"])
def test_bad_thread_count_is_a_clear_error(monkeypatch, bad):
    monkeypatch.setenv("SOFTMAX_DISPATCH_NUM_THREADS", bad)
    with pytest.raises(ValueError, match="SOFTMAX_DISPATCH_NUM_THREADS must be a positive"):
        sd.softmax(np.zeros((600, 600)))


def test_concurrent_calls_from_many_threads_are_correct():
    rng = np.random.default_rng(4)
    inputs = [rng.standard_normal((200 + 7 * i, 500)).astype(np.float32) for i in range(12)]
    with _dispatch.generic_kernels():
        expected = [sd.softmax(x) for x in inputs]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(inputs))

    def worker(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(5):
                results[i] = sd.softmax(inputs[i])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, x in enumerate(expected):
        np.testing.assert_allclose(results[i], x, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("op", "axis"),
    [("softmax", -1), ("softmax", 0), ("log_softmax", -1), ("softmax_backward", -1)],
)
def test_peak_extra_memory_is_about_the_output(monkeypatch, op, axis):
    """Only the output (and a few cache-sized blocks) is allocated: no input-sized
    temporaries. tracemalloc sees NumPy's allocations, deterministically; the result is
    allocated fresh by every call (no memory of an earlier result is handed back), so
    the peak is at least the output."""
    x = np.random.default_rng(5).standard_normal((2048, 4096)).astype(np.float32)
    args = (x, sd.softmax(x)) if "backward" in op else (x,)
    fn = getattr(sd, op)
    fn(*args, axis)  # first use: plugin loading, imports, the thread pool
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    y = fn(*args, axis)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    assert y.nbytes <= peak <= 1.1 * y.nbytes, f"peak {peak / y.nbytes:.2f}x the output"


@pytest.mark.parametrize("shape", [(1024, 2048), (4096, 2048)])
def test_out_and_in_place_allocate_almost_nothing(monkeypatch, shape):
    """With out= nothing input-sized is allocated; in place, exp(x) goes to one block of
    scratch per thread (the rows it does not suit are redone from x), whatever the size."""
    from softmax_dispatch_numpy import _rows

    monkeypatch.setenv("SOFTMAX_DISPATCH_NUM_THREADS", "2")
    x = np.random.default_rng(6).standard_normal(shape).astype(np.float32)
    out = np.empty_like(x)
    sd.softmax(x[:8], out=out[:8])  # first use: imports, the thread pool

    def peak_of(call) -> int:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        call()
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        return peak

    assert peak_of(lambda: sd.softmax(x, out=out)) <= 128 << 10
    assert peak_of(lambda: sd.softmax(x, out=x)) <= 2 * _rows.FORWARD_BLOCK_BYTES + (128 << 10)
    np.testing.assert_array_equal(x, out)  # and in place gives the same bits


def test_float16_rounding_matches_numpy_bit_for_bit():
    """The vectorized float32 -> float16 conversion agrees with NumPy's cast on every
    float16 value, the float32 values either side of each, the midpoints between
    neighbours (ties to even), subnormals, overflow, infinities and NaN."""
    from softmax_dispatch_numpy._half import store

    halves = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    as32 = halves.astype(np.float32)
    finite = as32[np.isfinite(as32)]
    with np.errstate(all="ignore"):
        mids = ((finite[:-1].astype(np.float64) + finite[1:]) / 2).astype(np.float32)
        values = np.concatenate(
            [
                as32,
                np.nextafter(finite, np.float32(np.inf)),
                np.nextafter(finite, np.float32(-np.inf)),
                mids,
                np.array([65519.99, 65520.0, 1e9, -1e9, 2.0**-25, 2.0**-26], np.float32),
                np.random.default_rng(7).standard_normal(50_000).astype(np.float32) * 1e-5,
            ]
        )
        values = values[: values.size // 7 * 7].reshape(-1, 7)  # 2-D: the chunked path
        expected = values.astype(np.float16)
    got = np.empty(values.shape, np.float16)
    store(got, values)
    same = (got.view(np.uint16) == expected.view(np.uint16)) | (np.isnan(got) & np.isnan(expected))
    assert same.all(), f"{int((~same).sum())} values differ, e.g. {values[~same][:5]}"


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_out_partly_overlapping_the_input(dtype, op):
    """``out`` one row further into the same buffer as ``x``: blocks written early must
    not be read later as input."""
    rows, n = 1000, 1000
    x0 = np.random.default_rng(8).standard_normal((rows, n)).astype(dtype)
    expected = getattr(sd, op)(x0)
    buf = np.zeros((rows + 1) * n, dtype)
    x = buf[: rows * n].reshape(rows, n)
    x[...] = x0
    out = buf[n:].reshape(rows, n)
    assert getattr(sd, op)(x, out=out) is out
    np.testing.assert_array_equal(out, expected)


def test_backward_out_partly_overlapping_grad():
    rng = np.random.default_rng(9)
    y = sd.softmax(rng.standard_normal((800, 900)).astype(np.float32))
    g0 = rng.standard_normal((800, 900)).astype(np.float32)
    expected = sd.softmax_backward(g0, y)
    buf = np.zeros(801 * 900, np.float32)
    g = buf[: 800 * 900].reshape(800, 900)
    g[...] = g0
    out = buf[900:].reshape(800, 900)
    sd.softmax_backward(g, y, out=out)
    np.testing.assert_array_equal(out, expected)


def test_float16_cross_entropy_gradient_scales_in_float32():
    x = np.array([[0.0, 0.0], [1.0, -1.0]], np.float16)
    t = np.array([0, 1])
    got = sd.softmax_cross_entropy_backward(x, t, 1e5)
    p = np.exp(x.astype(np.float64))
    p /= p.sum(1, keepdims=True)
    expected = (p - np.eye(2)[t]) * 1e5 / 2
    assert got.dtype == np.float16 and np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=2e-3)


def test_column_path_keeps_floating_point_errors_quiet():
    x = np.zeros((300, 100))
    x[:, 0] = -np.inf  # one column of only -inf: NaN by policy, not an exception
    with np.errstate(all="raise"):
        y = sd.softmax(x, axis=0)
    assert np.isnan(y[:, 0]).all() and np.isfinite(y[:, 1:]).all()


def test_growing_the_thread_pool_while_other_threads_use_it():
    """Calls that need more threads than the pool has replace it; calls already holding
    the old pool must still be able to submit to it."""
    code = """
import os, sys, threading
os.environ["SOFTMAX_DISPATCH_NUM_THREADS"] = "16"
sys.setswitchinterval(1e-6)
import numpy as np, softmax_dispatch as sd
errors = []
for attempt in range(3):
    xs = [np.ones((65 * k, 1000), np.float32) for k in range(2, 17)]
    bar = threading.Barrier(len(xs))
    def work(x):
        bar.wait()
        try:
            sd.softmax(x)
        except Exception as e:
            errors.append(repr(e))
    ts = [threading.Thread(target=work, args=(x,)) for x in xs]
    [t.start() for t in ts]
    [t.join() for t in ts]
print(errors)
"""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    ).stdout
    assert out.strip() == "[]"


def _hard_rows(n: int, dtype) -> dict[str, np.ndarray]:
    """Rows that softmax cannot take as exp(x) without the shift, each for its own reason."""
    tiny_log = float(np.log(1 / np.finfo(dtype).tiny))
    gone = float(np.log(np.finfo(dtype).smallest_subnormal)) - 5  # exp() of it is 0
    return {
        "exp(x) underflows, exp(x - max) does not": np.where(
            np.arange(n) == 0, gone + 50, gone
        ).astype(dtype),
        "overflows": np.full(n, 3.0, dtype=dtype) + np.arange(n, dtype=dtype) % 7 * 100,
        "max below 0": np.linspace(-60, -0.25, n).astype(dtype),
        "sum past 1/tiny": np.full(n, tiny_log - 0.5, dtype=dtype),
        "NaN": np.where(np.arange(n) == 3, np.nan, 0.5).astype(dtype),
        "+inf": np.where(np.arange(n) == 5, np.inf, 0.5).astype(dtype),
        "all -inf": np.full(n, -np.inf, dtype=dtype),
    }


def _layouts():
    """(name, rows, n, call) for each kernel path softmax takes; call(x2d) -> result where
    row r of x2d is one softmax row (a column for the columns path)."""
    yield "rows", 96, 1024, lambda x: sd.softmax(x)
    yield "rows, out=", 96, 1024, lambda x: sd.softmax(x, out=np.empty_like(x))
    yield "rows, in place", 96, 1024, lambda x: sd.softmax(x, out=x)
    yield "rows, masked", 96, 1024, lambda x: sd.softmax(x, where=np.ones(x.shape, bool))
    yield "columns", 96, 1024, lambda x: sd.softmax(np.ascontiguousarray(x.T), axis=0).T
    yield "tiny", 12, 1000, lambda x: sd.softmax(x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reason", list(_hard_rows(8, np.float32)))
@pytest.mark.parametrize("layout", [name for name, *_ in _layouts()])
def test_each_row_depends_on_that_row_alone(monkeypatch, dtype, reason, layout):
    """softmax skips the max shift for a row only when that row allows it (`_shift`), so a
    hard row next to ordinary ones changes nothing in them, in any block, any layout and
    any thread count; and every row matches a float64 reference."""
    from softmax_dispatch_numpy import _rows

    _, rows, n, call = next(t for t in _layouts() if t[0] == layout)
    monkeypatch.setattr(_rows, "FORWARD_BLOCK_BYTES", 8 * n * np.dtype(dtype).itemsize)
    x = (np.random.default_rng(11).standard_normal((rows, n)) * 3).astype(dtype)
    clean = call(x.copy())
    for row in (0, rows // 2, rows - 1):
        for threads in ("1", "2"):
            monkeypatch.setenv("SOFTMAX_DISPATCH_NUM_THREADS", threads)
            xh = x.copy()
            xh[row] = _hard_rows(n, dtype)[reason]
            got = call(xh.copy())
            others = np.arange(rows) != row
            np.testing.assert_array_equal(got[others], clean[others])
            with _dispatch.generic_kernels():
                generic = sd.softmax(xh)
            # the generic kernels always round x - max: a few ulp apart where we need not
            np.testing.assert_allclose(
                got, generic, rtol=4 * TOL[dtype], atol=1e-300, equal_nan=True
            )
            ok = np.isfinite(xh).all(axis=1)  # an independent float64 reference there
            x64 = xh[ok].astype(np.float64)
            e = np.exp(x64 - x64.max(axis=1, keepdims=True))
            ref = (e / e.sum(axis=1, keepdims=True)).astype(dtype)  # float32 underflows
            # column sums accumulate down the column (as NumPy's axis-0 sums do)
            rtol = TOL[dtype] * (8 if layout == "columns" else 1)
            np.testing.assert_allclose(got[ok], ref, rtol=rtol, atol=np.finfo(dtype).tiny)


def _softmax_in_child(x, queue) -> None:
    queue.put(sd.softmax(x))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:os.fork.. was called:RuntimeWarning")
def test_a_forked_child_computes_with_its_own_threads():
    """A child forked after the parent's thread pool started (multiprocessing's default on
    Linux before Python 3.14, PyTorch's DataLoader workers) has none of those threads: it
    must start its own pool instead of waiting forever on the inherited one."""
    import multiprocessing

    x = np.random.default_rng(12).standard_normal((2048, 1024)).astype(np.float32)
    expected = sd.softmax(x)  # the parent's pool is running now
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_softmax_in_child, args=(x, queue))
    child.start()
    try:
        got = queue.get(timeout=60)
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("shape", [(6, 50), (300, 400)])  # the small and the blocked kernels
def test_the_other_byte_order_gives_the_same_numbers_in_its_own_dtype(shape):
    """A big-endian float32 is float32: the same bits as the native array, in its dtype."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    t = rng.integers(0, shape[1], shape[0])
    xs, gs = (a.astype(a.dtype.newbyteorder()) for a in (x, g))
    y, ys = sd.softmax(x), sd.softmax(xs)
    cases = [
        (y, ys),
        (sd.log_softmax(x), sd.log_softmax(xs)),
        (sd.softmax_backward(g, y), sd.softmax_backward(gs, ys)),
        (
            sd.log_softmax_backward(g, sd.log_softmax(x)),
            sd.log_softmax_backward(gs, sd.log_softmax(xs)),
        ),
        (sd.softmax_cross_entropy(x, t), sd.softmax_cross_entropy(xs, t)),
        (sd.softmax_cross_entropy_backward(x, t), sd.softmax_cross_entropy_backward(xs, t)),
    ]
    for native, other in cases:
        assert other.dtype == xs.dtype
        np.testing.assert_array_equal(other, native)
    out = np.empty_like(xs)
    assert sd.softmax(xs, out=out) is out
    np.testing.assert_array_equal(out, y)
    assert sd.softmax(xs, out=xs) is xs  # in place
    np.testing.assert_array_equal(xs, y)


@pytest.mark.parametrize("n", [1000, 4097, 100_001, 1_000_000])
def test_a_row_has_the_same_bits_in_any_batch_and_any_thread_count(monkeypatch, n):
    """Batch invariance (the conformance suite checks it per op and dtype) holds across
    thread counts too: a batch on two threads against each row alone on one."""
    rows = 9 if n < 100_000 else 3
    rng = np.random.default_rng(12)
    x = (rng.standard_normal((rows, n)) * 3).astype(np.float32)
    g = rng.standard_normal((rows, n)).astype(np.float32)
    calls = {
        "softmax": lambda a, b: sd.softmax(a),
        "log_softmax": lambda a, b: sd.log_softmax(a),
        "softmax_backward": lambda a, b: sd.softmax_backward(b, sd.softmax(a)),
        "log_softmax_backward": lambda a, b: sd.log_softmax_backward(b, sd.log_softmax(a)),
    }
    for name, call in calls.items():
        monkeypatch.setenv("SOFTMAX_DISPATCH_NUM_THREADS", "2")
        batch = call(x, g)
        monkeypatch.setenv("SOFTMAX_DISPATCH_NUM_THREADS", "1")
        for i in range(rows):
            np.testing.assert_array_equal(batch[i], call(x[i : i + 1], g[i : i + 1])[0], name)
