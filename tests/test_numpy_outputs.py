"""The NumPy backend's pool of large results (backends/softmax_dispatch_numpy/_outputs.py):
memory is reused only when nothing else refers to it, results stay ordinary owning
arrays, the pool stays within its limit, and concurrent callers never share a buffer."""

from __future__ import annotations

import ctypes
import gc
import threading
import weakref

import numpy as np
import pytest
import softmax_dispatch_numpy as sdn
from softmax_dispatch_numpy import _outputs

import softmax_dispatch as sd

SHAPE = (1024, 2048)  # 8 MiB of float32: pooled
NBYTES = 1024 * 2048 * 4


@pytest.fixture(autouse=True)
def _clean_pool(monkeypatch):
    monkeypatch.delenv(_outputs.ENV, raising=False)
    gc.collect()
    sdn.empty_cache()
    yield
    gc.collect()
    if not _outputs._lock.locked():  # a test that failed with the lock held
        sdn.empty_cache()


def _x(seed: int = 0, shape=SHAPE) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * 4).astype(np.float32)


def _ref(x: np.ndarray) -> np.ndarray:
    z = x.astype(np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _close(y: np.ndarray, x: np.ndarray) -> None:
    np.testing.assert_allclose(y, _ref(x), rtol=2e-6, atol=1e-30)


def test_a_dropped_result_is_reused_and_the_new_one_is_right():
    x1, x2 = _x(1), _x(2)
    y = sd.softmax(x1)
    address = y.ctypes.data
    y[...] = np.nan  # whatever the caller left in it must not matter
    del y
    y2 = sd.softmax(x2)
    assert y2.ctypes.data == address
    _close(y2, x2)


def test_a_result_in_use_is_never_reused():
    x = _x(3)
    y1 = sd.softmax(x)
    y2 = sd.softmax(x)
    assert not np.shares_memory(y1, y2)
    _close(y1, x)
    _close(y2, x)


def _holders():
    """Ways to keep a result's memory alive without the name it was returned under."""
    yield "view", lambda y: y[1:]
    yield "reshaped view", lambda y: y.reshape(-1)
    yield "memoryview", memoryview
    yield "ctypes pointer", lambda y: y.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    yield "array in a list", lambda y: [y]
    yield "np.asarray", np.asarray
    try:
        import torch
    except ImportError:
        return
    yield "torch.from_numpy", torch.from_numpy


@pytest.mark.parametrize("how", [h for h, _ in _holders()])
def test_memory_held_any_other_way_is_not_reused(how):
    hold = dict(_holders())[how]
    x = _x(4)
    y = sd.softmax(x)
    keep, snapshot, address = hold(y), y.copy(), y.ctypes.data
    del y
    others = [sd.softmax(_x(seed)) for seed in (5, 6)]  # two more of the same shape
    for other in others:
        assert not (other.ctypes.data <= address < other.ctypes.data + other.nbytes)
    if how == "view":
        np.testing.assert_array_equal(keep, snapshot[1:])
    elif how == "torch.from_numpy":
        np.testing.assert_array_equal(keep.numpy(), snapshot)
    elif how == "memoryview":
        np.testing.assert_array_equal(np.asarray(keep), snapshot)
    elif how == "ctypes pointer":
        np.testing.assert_array_equal(
            np.ctypeslib.as_array(keep, shape=(snapshot.size,)), snapshot.ravel()
        )


def test_a_weakly_referenced_result_dies_instead_of_being_reused():
    x = _x(7)
    y = sd.softmax(x)
    watcher = weakref.ref(y)
    del y
    assert watcher() is not None  # the pool still holds it: the one visible difference
    y2 = sd.softmax(_x(8))
    assert watcher() is None  # released at the next call, not handed out again
    _close(y2, _x(8))


def test_results_are_ordinary_owning_writeable_arrays():
    y = sd.softmax(_x(9))
    y.flags.writeable = False
    del y
    y2 = sd.softmax(_x(10))
    assert y2.base is None and y2.flags.owndata and y2.flags.c_contiguous
    assert y2.flags.writeable
    y2[0, 0] = 1.0  # writeable indeed


def test_resize_sees_the_pools_reference_as_documented():
    y = sd.softmax(_x(11))
    with pytest.raises(ValueError, match="referenced"):
        y.resize((10,))
    y.resize((10,), refcheck=False)  # the documented way still works
    assert y.shape == (10,)
    del y
    y2 = sd.softmax(_x(12))  # the resized array no longer matches and is not handed out
    assert y2.shape == SHAPE
    _close(y2, _x(12))


@pytest.mark.parametrize(
    "op",
    ["log_softmax", "softmax_backward", "log_softmax_backward", "cross_entropy_backward", "axis0"],
)
def test_every_large_result_is_pooled(op):
    x = _x(13)
    g = _x(14)
    y = sd.softmax(x)
    t = np.random.default_rng(0).integers(0, SHAPE[1], SHAPE[0])

    def call():
        if op == "log_softmax":
            return sd.log_softmax(x)
        if op == "softmax_backward":
            return sd.softmax_backward(g, y)
        if op == "log_softmax_backward":
            return sd.log_softmax_backward(g, np.log(y))
        if op == "cross_entropy_backward":
            return sd.softmax_cross_entropy_backward(x, t, np.float32(1.0))
        return sd.softmax(x, axis=0)

    first = call()
    expected, address = first.copy(), first.ctypes.data
    del first
    second = call()
    assert second.ctypes.data == address
    np.testing.assert_array_equal(second, expected)  # same inputs, same bits


def test_out_arrays_and_small_results_are_not_pooled():
    x = _x(15)
    out = np.empty_like(x)
    sd.softmax(x, out=out)
    small = sd.softmax(_x(16, (8, 1000)))
    assert small.nbytes < _outputs.MIN_BYTES
    assert sdn.cache_info().arrays == 0


def test_the_limit_holds_and_idle_arrays_make_room(monkeypatch):
    monkeypatch.setenv(_outputs.ENV, str(2.5 * NBYTES / 2**20))  # room for two results
    live = [sd.softmax(_x(s)) for s in range(4)]  # two pooled, two allocated as usual
    info = sdn.cache_info()
    assert info.arrays == 2 and info.bytes == 2 * NBYTES <= info.limit_bytes
    for x_seed, y in enumerate(live):
        _close(y, _x(x_seed))
    del live, y
    other = sd.softmax(_x(20, (2048, 2048)))  # 16 MiB: one idle 8 MiB array makes room
    info = sdn.cache_info()
    assert info.bytes <= info.limit_bytes
    assert info.arrays == 1 and info.bytes == other.nbytes == 2 * NBYTES
    too_big = sd.softmax(_x(21, (3072, 2048)))  # over the limit on its own: not pooled
    assert sdn.cache_info().arrays == 1
    _close(too_big, _x(21, (3072, 2048)))


def test_zero_turns_the_pool_off(monkeypatch):
    monkeypatch.setenv(_outputs.ENV, "0")
    y = sd.softmax(_x(22))
    assert sdn.cache_info() == (0, 0, 0, 0)
    del y
    y2 = sd.softmax(_x(23))
    assert sdn.cache_info() == (0, 0, 0, 0)
    _close(y2, _x(23))


@pytest.mark.parametrize("raw", ["-1", "lots", "nan", "inf"])
def test_a_bad_limit_names_the_variable_and_the_value(monkeypatch, raw):
    monkeypatch.setenv(_outputs.ENV, raw)
    with pytest.raises(ValueError, match=rf"SOFTMAX_DISPATCH_OUTPUT_CACHE_MB.*{raw!r}"):
        sd.softmax(_x(24))


def test_empty_cache_releases_only_what_nobody_uses():
    kept = sd.softmax(_x(25))
    dropped = sd.softmax(_x(26))
    del dropped
    assert sdn.cache_info().idle_bytes == NBYTES
    assert sdn.empty_cache() == NBYTES
    info = sdn.cache_info()
    assert info.arrays == 1 and info.idle_bytes == 0
    _close(kept, _x(25))


def test_no_output_cache_allocates_fresh_memory_and_keeps_the_pool():
    y = sd.softmax(_x(27))
    address = y.ctypes.data
    del y
    with sdn.no_output_cache():
        y2 = sd.softmax(_x(28))
    assert y2.ctypes.data != address
    assert sdn.cache_info().idle_bytes == NBYTES
    _close(y2, _x(28))


def test_a_finalizer_that_calls_the_library_does_not_deadlock():
    """Released arrays die after the pool's lock is let go: their finalizers may call us."""
    x = _x(29)
    seen = []
    y = sd.softmax(x)
    weakref.finalize(y, lambda: seen.append((sd.softmax(x), sdn.cache_info(), sdn.empty_cache())))
    del y
    done = threading.Event()
    result = []

    def call():
        result.append(sd.softmax(_x(30)))  # releases the watched array: runs the finalizer
        done.set()

    threading.Thread(target=call, daemon=True).start()
    assert done.wait(60), "deadlocked"
    assert len(seen) == 1
    _close(seen[0][0], x)
    _close(result[0], _x(30))


def test_a_call_from_inside_the_pool_lock_allocates_as_usual():
    """A finalizer the garbage collector runs while this thread holds the pool's lock."""
    x = _x(31)
    got: list = []

    def inside():
        with _outputs._lock:
            _outputs._owner = threading.get_ident()
            try:
                got.append(sd.softmax(x))  # would wait forever on the lock
                got.append(sdn.empty_cache())
                got.append(sdn.cache_info())
            finally:
                _outputs._owner = None

    t = threading.Thread(target=inside, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "deadlocked"
    y, released, info = got
    _close(y, x)
    assert released == 0 and info.arrays >= 0
    assert all(a is not y for a in _outputs._slots)


@pytest.mark.parametrize("change", ["unaligned", "dtype metadata"])
def test_what_a_caller_changed_on_a_dropped_result_does_not_come_back(change):
    y = sd.softmax(_x(32))
    address = y.ctypes.data
    if change == "unaligned":
        y.flags.aligned = False
    else:
        y.dtype = np.dtype(np.float32, metadata={"unit": "kg"})
    del y
    y2 = sd.softmax(_x(33))
    assert y2.flags.aligned and y2.dtype.metadata is None
    assert y2.ctypes.data != address or sdn.cache_info().arrays == 1
    _close(y2, _x(33))


def test_lowering_the_limit_at_run_time_releases_down_to_it(monkeypatch):
    y1, y2 = sd.softmax(_x(34)), sd.softmax(_x(35))
    del y1, y2
    assert sdn.cache_info().idle_bytes == 2 * NBYTES
    monkeypatch.setenv(_outputs.ENV, str(1.5 * NBYTES / 2**20))
    sd.softmax(_x(36, (2048, 2048)))  # over the new limit itself: allocated as usual
    info = sdn.cache_info()
    assert info.bytes <= info.limit_bytes and info.arrays == 1
    monkeypatch.setenv(_outputs.ENV, "0")
    sd.softmax(_x(37))
    assert sdn.cache_info() == (0, 0, 0, 0)


def test_shapes_that_do_not_come_back_are_not_kept():
    """A loop over ever new shapes keeps about AGE idle arrays, not the whole limit."""
    for k in range(3 * _outputs.AGE):
        sd.softmax(_x(k, (512 + 8 * k, 2048)))  # each 4 MiB and more, each shape new
    info = sdn.cache_info()
    assert info.arrays <= _outputs.AGE + 1
    same = [sd.softmax(_x(50, (1024, 2048))) for _ in range(2)]
    del same
    for _ in range(3 * _outputs.AGE):  # shapes that do come back stay pooled
        a = sd.softmax(_x(51))
        address = a.ctypes.data
        del a
        assert sd.softmax(_x(51)).ctypes.data == address


def test_many_threads_never_share_a_buffer():
    inputs = [_x(100 + i, (1024, 1024)) for i in range(6)]  # 4 MiB each
    refs = [_ref(x) for x in inputs]
    errors: list[str] = []
    barrier = threading.Barrier(6)

    def worker(k: int) -> None:
        barrier.wait()
        held = []
        for it in range(12):
            y = sd.softmax(inputs[k])
            held.append(y)
            if len(held) > 2:
                held.pop(0)
            for h in held:  # nothing another thread wrote may show up in ours
                if not np.allclose(h, refs[k], rtol=2e-6, atol=1e-30):
                    errors.append(f"thread {k} iteration {it}")
                    return

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sdn.cache_info().bytes <= sdn.cache_info().limit_bytes
