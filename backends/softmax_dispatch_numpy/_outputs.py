"""Large results reuse the memory of earlier results the caller has dropped.

A fresh large NumPy array is fresh memory from the operating system: glibc maps it anew
for every allocation above 32 MiB and unmaps it on free, so each page is zeroed by the
kernel on first touch. For a 64 MiB softmax result that costs 3-10 ms on a 2-core
virtual machine — as much as the arithmetic — and it varies from call to call. CuPy's
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
  pool off. `empty_cache` releases every pooled array nobody else refers to.
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
    "DEFAULT_MB",
    "ENV",
    "MIN_BYTES",
    "CacheInfo",
    "bypass",
    "cache_info",
    "empty",
    "empty_cache",
    "limit_bytes",
]

ENV = "SOFTMAX_DISPATCH_OUTPUT_CACHE_MB"
#: The pool's size when ``SOFTMAX_DISPATCH_OUTPUT_CACHE_MB`` is not set.
DEFAULT_MB = 256
#: Smaller results come from malloc's heap, which already reuses memory.
MIN_BYTES = 4 << 20

_lock = threading.Lock()
# Slot 0 holds a probe that nothing else refers to: its reference count, read through the
# same code as every other slot's, is what "only the pool refers to it" reads as on this
# interpreter (whatever temporaries a given CPython version keeps while calling).
_slots: list[np.ndarray] = [np.empty(0)]
_bypass: ContextVar[bool] = ContextVar("softmax_dispatch_numpy_bypass_pool", default=False)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # one held by another thread at the fork would stay held


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
    """Nothing but the pool refers to slot ``i`` (call with the lock held)."""
    return _refs(i) == _refs(0)


def _release_idle(keep: int) -> int:
    """Drop idle arrays, least recently used first, until at most ``keep`` bytes are
    pooled; returns the bytes released. Call with the lock held."""
    held = sum(a.nbytes for a in _slots[1:])
    released = 0
    i = 1
    while i < len(_slots) and held > keep:
        if _idle(i):
            n = _slots.pop(i).nbytes
            held -= n
            released += n
        else:
            i += 1
    return released


def empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``np.empty(shape, dtype)``, C-contiguous, from the pool where it can be."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < MIN_BYTES or _bypass.get():
        return np.empty(shape, dtype=dtype)
    limit = limit_bytes()
    if nbytes > limit:
        return np.empty(shape, dtype=dtype)
    with _lock:
        i = 1
        while i < len(_slots):
            if not _idle(i):
                i += 1
                continue
            a = _slots[i]
            if weakref.getweakrefcount(a):  # watched: let it die as the watcher expects
                del _slots[i], a
                continue
            if a.shape == shape and a.dtype == dtype and a.flags.c_contiguous:
                _slots.append(_slots.pop(i))  # most recently used last
                a.flags.writeable = True
                return a
            del a
            i += 1
        _release_idle(limit - nbytes)
        a = np.empty(shape, dtype=dtype)
        if sum(s.nbytes for s in _slots[1:]) + nbytes <= limit:
            _slots.append(a)
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
    with _lock:
        return _release_idle(0)


def cache_info() -> CacheInfo:
    """What the pool holds now (see `CacheInfo`)."""
    with _lock:
        held = sum(a.nbytes for a in _slots[1:])
        idle = sum(_slots[i].nbytes for i in range(1, len(_slots)) if _idle(i))
        return CacheInfo(len(_slots) - 1, held, idle, limit_bytes())


@contextlib.contextmanager
def bypass() -> Iterator[None]:
    """Allocate fresh memory for every result inside the block (this thread or task): what
    a first call costs. Used by ``softmax-dispatch bench`` to show both."""
    token = _bypass.set(True)
    try:
        yield
    finally:
        _bypass.reset(token)
