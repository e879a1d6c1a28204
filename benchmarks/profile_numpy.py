"""Where the NumPy backend's time goes: the figures quoted in docs/performance.md ("Where
the time goes") and in the comments of backends/softmax_dispatch_numpy/_kernels.py.

    python benchmarks/profile_numpy.py

Each figure is a median over repeated runs, with the peer it is compared with timed in
the same run:

1. fresh memory: filling a new 64 MiB array against filling a reused one (1 and 2
   threads), and log_softmax 4096x4096 float32 with fresh memory for the result against
   ``out=`` (min-max over the calls: fresh pages cost a different amount each time);
2. per element and core, with a 4x32000 float32 block in cache: exp, the max, the
   scaling, NumPy's pairwise row sum and the kernels' two-stage row sum, each also as a
   multiple of a same-run ``numpy.copyto`` of the block;
3. block sizes: the kernels into ``out=`` with 512 KiB and 1 MiB blocks.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from softmax_dispatch_numpy import _kernels, no_output_cache

import softmax_dispatch as sd


def _times(fn: Callable[[], Any], repeat: int, inner: int = 1) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        out.append((time.perf_counter() - t0) / inner * 1e3)
    return out


def _median(fn: Callable[[], Any], repeat: int = 15, inner: int = 1) -> float:
    return statistics.median(_times(fn, repeat, inner))


def fresh_memory() -> None:
    n = 4096 * 4096
    reused = np.empty(n, np.float32)
    pool = ThreadPoolExecutor(2)

    def fill2(a: np.ndarray) -> None:
        half = a.size // 2
        list(pool.map(lambda s: a[s].fill(1), [slice(0, half), slice(half, None)]))

    rows = [
        ("fill 64 MiB, 1 thread", lambda: np.empty(n, np.float32).fill(1), lambda: reused.fill(1)),
        ("fill 64 MiB, 2 threads", lambda: fill2(np.empty(n, np.float32)), lambda: fill2(reused)),
    ]
    print("1. fresh memory (ms, medians of 15)")
    for name, fresh, again in rows:
        a, b = _median(fresh), _median(again)
        print(f"   {name:28} fresh {a:6.2f}  reused {b:6.2f}  fresh/reused {a / b:4.2f}")
    x = (np.random.default_rng(0).standard_normal((4096, 4096)) * 3).astype(np.float32)
    out = np.empty_like(x)

    def fresh_call() -> None:
        with no_output_cache():
            sd.log_softmax(x)

    f, o = _times(fresh_call, 25), _times(lambda: sd.log_softmax(x, out=out), 25)
    print(
        f"   log_softmax 4096x4096 f32      fresh {min(f):.1f}-{max(f):.1f} "
        f"(median {statistics.median(f):.1f})  out= {min(o):.1f}-{max(o):.1f} "
        f"(median {statistics.median(o):.1f})"
    )


def per_element() -> None:
    k, n = 4, 32000
    x = (np.random.default_rng(1).standard_normal((k, n)) * 3).astype(np.float32)
    y = np.exp(x)
    dst = np.empty_like(x)
    r = np.full((k, 1), 0.5, np.float32)
    ops = {
        "copyto (the peer)": lambda: np.copyto(dst, x),
        "exp": lambda: np.exp(x, out=dst),
        "max": lambda: np.maximum.reduce(x, axis=1, keepdims=True),
        "scale": lambda: np.multiply(y, r, out=dst),
        "row sum, NumPy pairwise": lambda: np.add.reduce(y, axis=1, keepdims=True),
        "row sum, two-stage": lambda: _kernels._row_sum(y),
    }
    print("2. per element and core, 4x32000 float32 block in cache (ns)")
    base = None
    for name, fn in ops.items():
        ns = _median(fn, repeat=9, inner=300) * 1e6 / x.size
        base = base or ns
        print(f"   {name:28} {ns:6.3f}  x copy {ns / base:5.2f}")


def block_sizes() -> None:
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((4096, 4096)) * 3).astype(np.float32)
    wide = (rng.standard_normal((256, 32000)) * 3).astype(np.float32)
    y, g = sd.softmax(x), rng.standard_normal((4096, 4096)).astype(np.float32)
    out, out_wide = np.empty_like(x), np.empty_like(wide)
    cases = {
        "softmax 4096x4096": ("FORWARD_BLOCK_BYTES", lambda: sd.softmax(x, out=out)),
        "log_softmax 4096x4096": ("FORWARD_BLOCK_BYTES", lambda: sd.log_softmax(x, out=out)),
        "softmax 256x32000": ("FORWARD_BLOCK_BYTES", lambda: sd.softmax(wide, out=out_wide)),
        "softmax_backward 4096x4096": ("BLOCK_BYTES", lambda: sd.softmax_backward(g, y, out=out)),
    }
    print("3. block size, into out= (ms, medians of 15, sizes interleaved)")
    for name, (knob, fn) in cases.items():
        saved = getattr(_kernels, knob)
        samples: dict[int, list[float]] = {1 << 19: [], 1 << 20: []}
        try:
            for _ in range(15):
                for size, got in samples.items():
                    setattr(_kernels, knob, size)
                    got.extend(_times(fn, 1))
        finally:
            setattr(_kernels, knob, saved)
        a, b = (statistics.median(v) for v in samples.values())
        print(f"   {name:28} 512 KiB {a:6.2f}  1 MiB {b:6.2f}  1 MiB/512 KiB {b / a:4.2f}")


if __name__ == "__main__":
    fresh_memory()
    per_element()
    block_sizes()
