"""Large results reuse the memory of earlier results the caller has dropped.

A fresh large NumPy array is fresh memory from the operating system: glibc maps it anew
for every allocation above 32 MiB and unmaps it on free, so each page is zeroed by the
kernel on first touch. On a 2-core virtual machine a new 64 MiB array takes 2.4-3.4x as
long to fill as a reused one, and log_softmax 4096x4096 float32 into fresh memory 1.35x
as long as into ``out=`` (medians; it varies from call to call, up to 4.5x), as
``python benchmarks/profile_numpy.py`` measures. CuPy's
memory pool and PyTorch's CUDA caching allocator avoid the same cost by keeping freed
blocks; this module does it for the NumPy backend's own large results:

* Only results of at least `MIN_BYTES` that the kernels allocate are pooled; an
  ``out=`` array is never touched.
* A pooled array is reused only when nothing but the pool refers to it — no variable,
  view, memoryview, ``torch.from_numpy`` tensor or weak reference. A pooled array with a
  weak reference and no other referrer is released instead, so the weak reference dies
  as it would have.
* The result handed out is an ordinary array that owns its data (``base is None``); the
  pool's reference is the only difference a caller can see (``ndarray.resize`` with its
  default ``refcheck=True`` refuses to resize it, as for any array that has another
  referrer).
* At most ``SOFTMAX_DISPATCH_OUTPUT_CACHE_MB`` MiB (default `DEFAULT_MB`) is pooled,
  results in use included; beyond that, results are allocated as usual. ``0`` turns the
  pool off (and releases what it holds at the next large call); a lower limit releases
  down to it. An idle array not handed out during the last `AGE` pooled allocations is
  released at the next miss, so results of shapes that do not come back are not kept.
  `empty_cache` releases every pooled array nobody else refers to.
* Arrays are released after the pool's lock is let go, so a weakref callback or
  finalizer they trigger may call into the library; a call made while this thread holds
  the lock (a finalizer run by the garbage collector in there) allocates as usual.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import weakref
from collections.abc import Iterator
from contextvars import ContextVar
from typing import NamedTuple

import numpy as np

__all__ = [
    "AGE",
    "DEFAULT_MB",
    "ENV",
    "MIN_BYTES",
    "CacheInfo",
    "cache_info",
    "empty",
    "empty_cache",
    "limit_bytes",
    "no_output_cache",
]

ENV = "SOFTMAX_DISPATCH_OUTPUT_CACHE_MB"
#: The pool's size when ``SOFTMAX_DISPATCH_OUTPUT_CACHE_MB`` is not set.
DEFAULT_MB = 256
#: Smaller results come from malloc's heap, which already reuses memory.
MIN_BYTES = 4 << 20
#: An idle array not handed out during this many pooled allocations goes at the next miss.
AGE = 8

_lock = threading.Lock()
_owner: int | None = None  # the thread holding _lock
# Slot 0 holds a probe that nothing else refers to: its reference count, read through the
# same code as every other slot's, is what "only the pool refers to it" reads as on this
# interpreter (whatever temporaries a given CPython version keeps while calling).
_slots: list[np.ndarray] = [np.empty(0)]
_used: list[int] = [0]  # per slot: the allocation count when it was last handed out
_clock = 0
_off: ContextVar[bool] = ContextVar("softmax_dispatch_numpy_no_output_cache", default=False)


def _after_fork_in_child() -> None:
    """A child has none of the parent's threads: arrays they were using would look in use
    forever. Start with an empty pool and a lock nobody holds."""
    global _lock, _owner
    _lock, _owner = threading.Lock(), None
    del _slots[1:], _used[1:]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class CacheInfo(NamedTuple):
    """What the pool holds: arrays, their bytes, the bytes of those nobody else uses, and
    the limit in bytes."""

    arrays: int
    bytes: int
    idle_bytes: int
    limit_bytes: int


def limit_bytes() -> int:
    """The pool's size in bytes, from ``SOFTMAX_DISPATCH_OUTPUT_CACHE_MB``."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT_MB << 20
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not (mb >= 0 and math.isfinite(mb)):
        raise ValueError(f"{ENV} must be a number of MiB >= 0 (0 turns the pool off), got {raw!r}")
    return int(mb * (1 << 20))


def _refs(i: int) -> int:
    return sys.getrefcount(_slots[i])


def _idle(i: int) -> bool:
    """Nothing but the pool refers to slot ``i``, not even a weak reference (call with the
    lock held). Weak references are counted before and after the reference count: one
    that existed could have been turned into a strong reference in between."""
    if weakref.getweakrefcount(_slots[i]):
        return False
    return _refs(i) == _refs(0) and not weakref.getweakrefcount(_slots[i])


def _take(i: int) -> np.ndarray:
    """Slot ``i``'s array, out of the pool (with its last-used count)."""
    del _used[i]
    return _slots.pop(i)


def _put(a: np.ndarray) -> None:
    """``a`` into the pool as the most recently used."""
    _slots.append(a)
    _used.append(_clock)


@contextlib.contextmanager
def _locked() -> Iterator[bool]:
    """The pool's lock for this thread; yields False without waiting when this thread holds
    it already (a finalizer the garbage collector runs inside the pool)."""
    global _owner
    me = threading.get_ident()
    if _owner == me:
        yield False
        return
    with _lock:
        _owner = me
        try:
            yield True
        finally:
            _owner = None


def _held() -> int:
    return sum(a.nbytes for a in _slots[1:])


def _release(keep: int, dropped: list[np.ndarray], older_than: int | None = None) -> None:
    """Drop idle arrays, least recently used first, until at most ``keep`` bytes are
    pooled, and (``older_than``) every idle array last handed out before that count; also
    arrays watched by weak references and nobody else (let them die as expected)."""
    held = _held()
    i = 1
    while i < len(_slots):
        watched = weakref.getweakrefcount(_slots[i]) and _refs(i) == _refs(0)
        stale = older_than is not None and _used[i] < older_than
        if watched or ((held > keep or stale) and _idle(i)):
            held -= _slots[i].nbytes
            dropped.append(_take(i))  # released once the lock is let go
        else:
            i += 1


def _fits(a: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """An idle array can stand for a new ``np.empty(shape, dtype)``: nothing a caller could
    have changed on it (shape, dtype and its metadata, alignment) differs."""
    return (
        a.shape == shape
        and a.dtype == dtype
        and a.dtype.metadata is None
        and a.flags.c_contiguous
        and a.flags.aligned
    )


def empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``np.empty(shape, dtype)``, C-contiguous, from the pool where it can be."""
    global _clock
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < MIN_BYTES or _off.get():
        return np.empty(shape, dtype=dtype)
    limit = limit_bytes()
    dropped: list[np.ndarray] = []  # released after the lock (their finalizers may call us)
    with _locked() as mine:
        if not mine or nbytes > limit:
            if mine:
                _release(limit, dropped)
            return np.empty(shape, dtype=dtype)
        _clock += 1
        for i in range(len(_slots) - 1, 0, -1):  # the most recently used first: warm
            if _idle(i) and _fits(_slots[i], shape, dtype):
                a = _take(i)
                _put(a)
                a.flags.writeable = True
                return a
        _release(limit - nbytes, dropped, older_than=_clock - AGE)
        a = np.empty(shape, dtype=dtype)
        if _held() + nbytes <= limit:
            _put(a)
        return a


def empty_cache() -> int:
    """Release every pooled array nobody else refers to; returns the bytes released.

    >>> import numpy as np, softmax_dispatch as sd, softmax_dispatch_numpy as sdn
    >>> y = sd.softmax(np.zeros((1024, 2048), dtype=np.float32))
    >>> del y
    >>> sdn.empty_cache() >= 8 << 20
    True
    >>> sdn.cache_info().idle_bytes
    0
    """
    dropped: list[np.ndarray] = []
    with _locked() as mine:
        if mine:
            _release(0, dropped)
    return sum(a.nbytes for a in dropped)


def cache_info() -> CacheInfo:
    """What the pool holds now (see `CacheInfo`)."""
    with _locked() as mine:  # not mine: from a finalizer run inside the pool, idle unknown
        idle = sum(_slots[i].nbytes for i in range(1, len(_slots)) if mine and _idle(i))
        return CacheInfo(len(_slots) - 1, _held(), idle, limit_bytes())


@contextlib.contextmanager
def no_output_cache() -> Iterator[None]:
    """Allocate fresh memory for every result inside the block (this thread or asyncio
    task), leaving the pool as it is: what a first call costs. ``softmax-dispatch bench``
    times "ours fresh" this way.

    >>> import numpy as np, softmax_dispatch as sd, softmax_dispatch_numpy as sdn
    >>> with sdn.no_output_cache():
    ...     y = sd.softmax(np.zeros((1024, 2048), dtype=np.float32))
    >>> sum(a is y for a in sdn._outputs._slots)
    0
    """
    token = _off.set(True)
    try:
        yield
    finally:
        _off.reset(token)
