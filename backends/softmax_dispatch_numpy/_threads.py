"""The thread pool the fused NumPy kernels spread blocks over.

NumPy releases the GIL inside ufunc loops, so blocks run in parallel on plain Python
threads. The count comes from ``SOFTMAX_DISPATCH_NUM_THREADS`` (read on every large call,
so it can be changed at run time), defaulting to the cores this process may use. Small
inputs run on the calling thread.

Blocks are handed out dynamically, in runs of consecutive blocks (each participant takes
the next run until none is left), rather than split up front: a worker that wakes late —
a halted vCPU on a virtual machine can take milliseconds — then costs nothing, the caller
just takes more runs. Results are returned in block order, so the answer never depends on
who computed which block.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

__all__ = ["ENV", "ERRSTATE", "num_threads", "quiet", "run_blocks", "unquiet"]

ENV = "SOFTMAX_DISPATCH_NUM_THREADS"
#: Below this many bytes of input a call is not worth handing to other threads.
PARALLEL_MIN_BYTES = 1 << 19
#: Threads take blocks in runs of consecutive blocks covering this many bytes of input.
#: NumPy asks for transparent huge pages on large arrays: a 2 MiB page of a fresh result
#: that two threads write at once is zeroed by one while the other waits. Measured
#: (/tmp-free: ``python benchmarks/profile_numpy.py``, "block runs"): 4096x4096 float32
#: softmax into fresh memory, 2 threads, took 1.28x np.copy with single 1 MiB blocks
#: handed out in turn and 1.11x with runs of 4 MiB.
RUN_BYTES = 4 << 20
#: NumPy floating-point errors are the documented NaN/-inf policies here, not news.
ERRSTATE = dict(over="ignore", under="ignore", invalid="ignore", divide="ignore")

try:  # np.errstate costs ~1 us, a fifth of an 8x10 softmax: set its context var directly
    from numpy._core.umath import _extobj_contextvar, _make_extobj

    _QUIET = _make_extobj(**ERRSTATE)

    def quiet() -> Any:
        """Silence floating-point warnings in this thread until `unquiet` (fast path)."""
        return _extobj_contextvar.set(_QUIET)

    def unquiet(token: Any) -> None:
        _extobj_contextvar.reset(token)

except (ImportError, TypeError):  # another NumPy layout: the public, slower way

    def quiet() -> Any:
        state = np.errstate(**ERRSTATE)
        state.__enter__()
        return state

    def unquiet(token: Any) -> None:
        token.__exit__(None, None, None)


T = TypeVar("T")

_lock = threading.Lock()
#: Set on a thread while it builds the pool or submits to it (see `run_blocks`).
_handing_out = threading.local()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's threads: a pool inherited from it would
    never run the blocks handed to it (and a lock held at the fork stays held). Start
    over with a new lock and no pool."""
    global _lock, _pool, _pool_size
    _lock = threading.Lock()
    _pool, _pool_size = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def num_threads() -> int:
    """Threads to use: ``SOFTMAX_DISPATCH_NUM_THREADS`` or the cores available."""
    raw = os.environ.get(ENV, "").strip()
    if raw:
        try:
            n = int(raw)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"{ENV} must be a positive integer, got {raw!r}")
        return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _get_pool(n: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < n:
            # The old pool is not shut down: a call on another thread may be about to
            # submit to it. Dropped here, it winds down once nobody refers to it.
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="softmax_dispatch")
            _pool_size = n
        return _pool


def run_blocks(
    body: Callable[[int, Any], T],
    count: int,
    nbytes: int,
    state: Callable[[], Any] = lambda: None,
) -> list[T]:
    """``[body(i, s) for i in range(count)]``, the blocks shared among threads; ``s`` is
    one ``state()`` per participating thread (its scratch buffers). Exceptions propagate."""
    results: list[Any] = [None] * count
    n = 1 if nbytes < PARALLEL_MIN_BYTES else min(num_threads(), count)
    if n <= 1 or getattr(_handing_out, "active", False):
        s = state()
        with np.errstate(**ERRSTATE):
            for i in range(count):
                results[i] = body(i, s)
        return results
    counter = itertools.count()  # next() is atomic under the GIL
    # runs of consecutive blocks covering RUN_BYTES, but at least one run per thread
    run = max(1, min(-(-RUN_BYTES * count // nbytes), count // n))

    def participant() -> None:
        s = state()
        with np.errstate(**ERRSTATE):  # errstate is per thread
            for r in iter(counter.__next__, None):
                if r * run >= count:
                    return
                for i in range(r * run, min(count, (r + 1) * run)):
                    results[i] = body(i, s)

    # Any allocation may run a finalizer, on this thread, that calls softmax: if that
    # happens while the pool is being built or handed work, its locks (ours, and the
    # executor's own, which are not re-entrant) are held by this very thread. Such a
    # nested call runs its blocks itself.
    futures = []
    _handing_out.active = True
    try:
        pool = _get_pool(n)
        for _ in range(n - 1):
            futures.append(pool.submit(participant))
    except RuntimeError:  # at interpreter exit no new work is taken: this thread does it
        pass
    finally:
        _handing_out.active = False
    try:
        participant()
    finally:
        for f in futures:
            f.result()
    return results
