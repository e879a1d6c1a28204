"""Where the NumPy backend's time goes: the figures quoted in docs/performance.md ("Where
the time goes") and in the comments of backends/softmax_dispatch_numpy/.

    python benchmarks/profile_numpy.py [--quick]

Each figure is a median of interleaved rounds against a peer timed in the same run:

1. fresh memory: softmax 4096x4096 float32 into a fresh result against into ``out=``,
   and ``np.copy`` against ``np.copyto`` (the price of fresh pages);
2. row sum: ``einsum`` against NumPy's pairwise ``add.reduce`` on a block in cache;
3. block runs: handing threads single 1 MiB blocks in turn against runs of 4 MiB;
4. block sizes: softmax, log_softmax and the backward with 256 KiB, 512 KiB and 1 MiB
   blocks, each as a multiple of a same-run ``np.copy``.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("SOFTMAX_DISPATCH_NUM_THREADS", "2")

import numpy as np
from softmax_dispatch_numpy import _rows, _threads

import softmax_dispatch as sd

QUICK = "--quick" in sys.argv
ROUNDS = 3 if QUICK else 11
SHAPE = (1024, 4096) if QUICK else (4096, 4096)


def _settle(seconds: float = 0.02) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def medians(impls: dict[str, Callable[[], Any]], inner: int = 1) -> dict[str, float]:
    for fn in impls.values():
        fn()
    samples: dict[str, list[float]] = {k: [] for k in impls}
    for _ in range(ROUNDS):
        for name, fn in impls.items():
            _settle()
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[name].append((time.perf_counter() - t0) / inner * 1e3)
    return {k: statistics.median(v) for k, v in samples.items()}


def with_setting(module: Any, name: str, value: Any, fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        old = getattr(module, name)
        setattr(module, name, value)
        try:
            return fn()
        finally:
            setattr(module, name, old)

    return run


def main() -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(SHAPE) * 3).astype(np.float32)
    g = rng.standard_normal(SHAPE).astype(np.float32)
    y = sd.softmax(x)
    out = np.empty_like(x)
    label = "x".join(map(str, SHAPE))

    print(f"1. fresh memory, {label} float32 (ms, medians)")
    t = medians(
        {
            "softmax": lambda: sd.softmax(x),
            "softmax out=": lambda: sd.softmax(x, out=out),
            "np.copy": lambda: np.copy(x),
            "np.copyto": lambda: np.copyto(out, x),
        }
    )
    print(
        f"   softmax fresh / out= {t['softmax'] / t['softmax out=']:.2f}"
        f" ({t['softmax']:.2f} / {t['softmax out=']:.2f})"
    )
    print(
        f"   np.copy / np.copyto  {t['np.copy'] / t['np.copyto']:.2f}"
        f" ({t['np.copy']:.2f} / {t['np.copyto']:.2f})"
    )

    block = (rng.random((64, 4096)) + 0.5).astype(np.float32)  # 1 MiB, in cache
    t = medians(
        {
            "einsum": lambda: np.einsum("ij->i", block),
            "add.reduce": lambda: np.add.reduce(block, axis=1),
        },
        inner=50,
    )
    print(
        f"\n2. row sum of a 64x4096 float32 block: einsum / add.reduce "
        f"{t['einsum'] / t['add.reduce']:.2f} ({t['einsum'] * 1e3:.0f} / "
        f"{t['add.reduce'] * 1e3:.0f} us)"
    )

    soft = lambda: sd.softmax(x)  # noqa: E731
    t = medians(
        {
            "single blocks": with_setting(_threads, "RUN_BYTES", 1, soft),
            "runs of 4 MiB": with_setting(_threads, "RUN_BYTES", 4 << 20, soft),
            "np.copy": lambda: np.copy(x),
        }
    )
    print(
        f"\n3. block runs, softmax {label} / np.copy: single 1 MiB blocks "
        f"{t['single blocks'] / t['np.copy']:.2f}, runs of 4 MiB "
        f"{t['runs of 4 MiB'] / t['np.copy']:.2f}"
    )

    print(f"\n4. block sizes, {label} float32, as a multiple of np.copy")
    impls: dict[str, Callable[[], Any]] = {"np.copy": lambda: np.copy(x)}
    calls = {
        "softmax": lambda: sd.softmax(x),
        "log_softmax": lambda: sd.log_softmax(x),
        "backward": lambda: sd.softmax_backward(g, y),
    }
    for kib in (256, 512, 1024):
        for name, fn in calls.items():
            run = with_setting(_rows, "BLOCK_BYTES", kib << 10, fn)
            impls[f"{name} {kib}"] = with_setting(_rows, "FORWARD_BLOCK_BYTES", kib << 10, run)
    t = medians(impls)
    for name in calls:
        cells = ", ".join(
            f"{kib} KiB {t[f'{name} {kib}'] / t['np.copy']:.2f}" for kib in (256, 512, 1024)
        )
        print(f"   {name:12} {cells}")


if __name__ == "__main__":
    main()
