"""``softmax-dispatch bench``: our NumPy kernels against SciPy, textbook NumPy, PyTorch and
JAX, timed in the same run, interleaved, as medians and ratios.

Every case times each implementation once per round, round after round, so that whatever
else the machine is doing falls on all of them alike. Before each sample the main thread
busy-waits a moment, so that the previous library's worker threads (PyTorch's OpenMP,
XLA's pool) have stopped spin-waiting; sleeping instead would let the virtual CPUs halt,
and waking them costs milliseconds that land on whoever runs next. It reports the median
per implementation, GB/s (bytes that must cross memory: one read and one write forward,
two reads and a write backward), that as a fraction of a same-run ``numpy.copyto`` of the
same size, and the ratios the performance targets are stated in. Peak extra memory is
measured with tracemalloc (which sees NumPy's allocations) as a multiple of the output.

The NumPy backend hands out large results from a pool of earlier results the caller has
dropped (``SOFTMAX_DISPATCH_OUTPUT_CACHE_MB``): "ours" is that default, which a loop like
this one (and a training loop) gets; "ours fresh" allocates fresh memory for the call
(``softmax_dispatch_numpy.no_output_cache()``), what a first call pays for fresh pages.
Peak memory is measured that way too: what a call allocates when the pool has nothing
for it.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import softmax_dispatch as sd

__all__ = ["CASES", "Case", "main", "run_case"]

#: Pause before each timed sample (see `run_case`).
SETTLE_S = 0.02
#: Cases with at least this many elements also time "ours fresh" and measure peak memory.
LARGE = 1 << 20


def _fresh(fn: Callable[[], Any]) -> Callable[[], Any] | None:
    """``fn`` with the NumPy backend's pool of large results off for the call (None when
    that backend is not the one installed here)."""
    try:
        from softmax_dispatch_numpy import no_output_cache
    except ImportError:
        return None

    def call() -> Any:
        with no_output_cache():
            return fn()

    return call


@dataclass
class Case:
    name: str
    shape: tuple[int, ...]
    dtype: str
    axis: int
    op: str  # softmax | log_softmax | softmax_backward
    rounds: int = 11
    inner: int = 1  # calls per timed sample (tiny inputs)
    results: dict[str, float] = field(default_factory=dict)
    copy_ms: float = 0.0
    peak_ratio: float | None = None


CASES = [
    Case("softmax 4096x4096 f32", (4096, 4096), "float32", -1, "softmax"),
    Case("log_softmax 4096x4096 f32", (4096, 4096), "float32", -1, "log_softmax"),
    Case("softmax axis=0 4096x4096 f32", (4096, 4096), "float32", 0, "softmax"),
    Case("softmax_backward 4096x4096 f32", (4096, 4096), "float32", -1, "softmax_backward"),
    Case("softmax 256x32000 f32", (256, 32000), "float32", -1, "softmax"),
    Case("softmax 1024x4096 f16", (1024, 4096), "float16", -1, "softmax"),
    Case("softmax 2048x2048 f64", (2048, 2048), "float64", -1, "softmax"),
    Case("softmax 64x1000 f32", (64, 1000), "float32", -1, "softmax", rounds=21, inner=20),
    Case("softmax 8x10 f64", (8, 10), "float64", -1, "softmax", rounds=21, inner=2000),
]


def _peers(case: Case, x: np.ndarray, g: np.ndarray, y: np.ndarray, threads: int):
    """name -> zero-argument callable, for every implementation installed here."""
    ax = case.axis
    out = np.empty_like(x)
    if case.op == "softmax_backward":

        def ours(**kw: Any) -> Any:
            return sd.softmax_backward(g, y, ax, **kw)

        def textbook() -> Any:
            return y * (g - (g * y).sum(axis=ax, keepdims=True))
    else:
        fn = getattr(sd, case.op)

        def ours(**kw: Any) -> Any:
            return fn(x, ax, **kw)

        if case.op == "softmax":

            def textbook() -> Any:
                e = np.exp(x - x.max(axis=ax, keepdims=True))
                return e / e.sum(axis=ax, keepdims=True)
        else:

            def textbook() -> Any:
                z = x - x.max(axis=ax, keepdims=True)
                return z - np.log(np.exp(z).sum(axis=ax, keepdims=True))

    impls: dict[str, Callable[[], Any]] = {"ours": ours}
    fresh = _fresh(ours) if x.size >= LARGE else None
    if fresh is not None:
        impls["ours fresh"] = fresh
    impls["ours out="] = lambda: ours(out=out)
    impls["textbook"] = textbook
    try:
        import scipy.special as ss

        if case.op != "softmax_backward":
            sfn = getattr(ss, case.op)
            impls["scipy"] = lambda: sfn(x, axis=ax)
    except ImportError:
        pass
    try:
        import torch

        torch.set_num_threads(threads)
        if not (case.dtype == "float16" and case.op != "softmax"):
            tx, tg, ty = (torch.from_numpy(a) for a in (x, g, y))
            tdt = tx.dtype
            if case.op == "softmax":
                impls["torch"] = lambda: torch.softmax(tx, ax)
            elif case.op == "log_softmax":
                impls["torch"] = lambda: torch.log_softmax(tx, ax)
            else:
                impls["torch"] = lambda: torch._softmax_backward_data(tg, ty, ax, tdt)
    except ImportError:
        pass
    try:
        import jax
        import jax.numpy as jnp

        if case.op != "softmax_backward":
            jx = jnp.asarray(x)
            jfn = jax.jit(getattr(jax.nn, case.op), static_argnums=1)
            impls["jax"] = lambda: jfn(jx, ax).block_until_ready()
    except ImportError:
        pass
    return impls


def _settle(seconds: float) -> None:
    """Busy-wait (see the module docstring for why not sleep)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _time(fn: Callable[[], Any], inner: int) -> float:
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner * 1e3


def _peak_ratio(fn: Callable[[], Any], out_bytes: int) -> float:
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    result = fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del result
    return (peak - base) / out_bytes


def run_case(case: Case, threads: int) -> Case:
    rng = np.random.default_rng(0)
    dt = np.dtype(case.dtype)
    x = (rng.standard_normal(case.shape) * 3).astype(dt)
    y = sd.softmax(x, case.axis).astype(dt) if case.op == "softmax_backward" else x
    g = rng.standard_normal(case.shape).astype(dt) if case.op == "softmax_backward" else x
    impls = _peers(case, x, g, y, threads)
    src, dst = x.copy(), np.zeros_like(x)  # touched memory: untouched pages read as free
    impls["copy"] = lambda: np.copyto(dst, src)
    for fn in impls.values():  # warm up: JIT, thread pools, first-touch
        fn()
    samples: dict[str, list[float]] = {k: [] for k in impls}
    for _ in range(case.rounds):
        for name, fn in impls.items():
            _settle(SETTLE_S)
            samples[name].append(_time(fn, case.inner))
    case.results = {k: statistics.median(v) for k, v in samples.items()}
    case.copy_ms = case.results.pop("copy")
    if x.size >= LARGE:
        case.peak_ratio = _peak_ratio(impls.get("ours fresh", impls["ours"]), x.nbytes)
    return case


#: (case name, description, numerator, denominator, bound, "<=" or ">=")
TARGETS = [
    ("softmax 4096x4096 f32", "SciPy / ours", "scipy", "ours", 2.5, ">="),
    ("softmax 4096x4096 f32", "ours / PyTorch", "ours", "torch", 1.15, "<="),
    ("softmax 4096x4096 f32", "ours out= / PyTorch", "ours out=", "torch", 0.95, "<="),
    ("log_softmax 4096x4096 f32", "SciPy / ours", "scipy", "ours", 2.5, ">="),
    ("log_softmax 4096x4096 f32", "ours / PyTorch", "ours", "torch", 1.3, "<="),
    ("softmax axis=0 4096x4096 f32", "SciPy / ours", "scipy", "ours", 2.0, ">="),
    ("softmax axis=0 4096x4096 f32", "ours / PyTorch", "ours", "torch", 0.8, "<="),
    ("softmax_backward 4096x4096 f32", "textbook / ours", "textbook", "ours", 2.0, ">="),
    ("softmax_backward 4096x4096 f32", "ours / PyTorch", "ours", "torch", 1.0, "<="),
    ("softmax 256x32000 f32", "SciPy / ours", "scipy", "ours", 2.5, ">="),
    ("softmax 1024x4096 f16", "SciPy / ours", "scipy", "ours", 3.0, ">="),
    ("softmax 8x10 f64", "ours / SciPy", "ours", "scipy", 0.8, "<="),
]


def _bytes_moved(case: Case) -> int:
    n = int(np.prod(case.shape)) * np.dtype(case.dtype).itemsize
    return 3 * n if case.op == "softmax_backward" else 2 * n


def report(cases: list[Case], threads: int) -> dict[str, Any]:
    by_name = {c.name: c for c in cases}
    rows = []
    for c in cases:
        moved = _bytes_moved(c)
        copy_gbs = 2 * int(np.prod(c.shape)) * np.dtype(c.dtype).itemsize / c.copy_ms / 1e6
        for impl, ms in c.results.items():
            gbs = moved / ms / 1e6
            rows.append(dict(case=c.name, impl=impl, ms=ms, gbs=gbs, copy_fraction=gbs / copy_gbs))
    checks = []
    for name, desc, num, den, bound, sense in TARGETS:
        c = by_name.get(name)
        if c is None or num not in c.results or den not in c.results:
            continue
        ratio = c.results[num] / c.results[den]
        ok = ratio >= bound if sense == ">=" else ratio <= bound
        checks.append(dict(case=name, what=desc, ratio=ratio, target=f"{sense} {bound}", ok=ok))
    for c in cases:
        if c.peak_ratio is not None and c.op in ("softmax", "softmax_backward"):
            checks.append(
                dict(
                    case=c.name,
                    what="peak extra memory / output",
                    ratio=c.peak_ratio,
                    target="<= 1.1",
                    ok=c.peak_ratio <= 1.1,
                )
            )
    machine = dict(
        dispatch_us=_dispatch_cost_us(),
        python=platform.python_version(),
        numpy=np.__version__,
        cpu=platform.processor() or platform.machine(),
        cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        threads=threads,
    )
    return dict(machine=machine, rows=rows, targets=checks)


def _dispatch_cost_us() -> float:
    """Median cost of choosing the backend for a NumPy array (cached per type)."""
    from ._dispatch import resolve

    x = np.zeros(3)
    resolve(x, (), None)
    runs = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(10_000):
            resolve(x, (), None)
        runs.append((time.perf_counter() - t0) / 10_000 * 1e6)
    return statistics.median(runs)


def _print(data: dict[str, Any]) -> None:
    m = data["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, threads={m['threads']}, numpy {m['numpy']}")
    print(f"dispatch (backend choice for a NumPy array): {m['dispatch_us']:.2f} us")
    print(f"\n{'case':34} {'impl':10} {'median ms':>10} {'GB/s':>7} {'of copy':>8}")
    for r in data["rows"]:
        print(
            f"{r['case']:34} {r['impl']:10} {r['ms']:10.3f} {r['gbs']:7.2f} "
            f"{r['copy_fraction']:7.0%}"
        )
    print(f"\n{'case':34} {'ratio':28} {'value':>7} {'target':>8}  ok")
    for t in data["targets"]:
        print(
            f"{t['case']:34} {t['what']:28} {t['ratio']:7.2f} {t['target']:>8}  "
            f"{'yes' if t['ok'] else 'NO'}"
        )


def _plot(data: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(dict.fromkeys(r["case"] for r in data["rows"]))
    impls = list(dict.fromkeys(r["impl"] for r in data["rows"]))
    fig, ax = plt.subplots(figsize=(11, 5))
    width = 0.8 / len(impls)
    for i, impl in enumerate(impls):
        vals = []
        for c in cases:
            ours = next(r["ms"] for r in data["rows"] if r["case"] == c and r["impl"] == "ours")
            hit = [r["ms"] for r in data["rows"] if r["case"] == c and r["impl"] == impl]
            vals.append(hit[0] / ours if hit else np.nan)
        ax.bar(np.arange(len(cases)) + i * width, vals, width, label=impl)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(cases)) + 0.4 - width / 2)
    ax.set_xticklabels(cases, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("time / ours (median; higher = slower than ours)")
    ax.set_yscale("log")
    m = data["machine"]
    ax.set_title(f"softmax-dispatch bench: {m['cores']} cores, {m['threads']} threads")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(
    only: list[str] | None = None,
    threads: int | None = None,
    as_json: bool = False,
    plot: str | None = None,
) -> int:
    if threads is None:
        raw = os.environ.get("SOFTMAX_DISPATCH_NUM_THREADS", "").strip()
        threads = int(raw) if raw else len(os.sched_getaffinity(0))
    os.environ["SOFTMAX_DISPATCH_NUM_THREADS"] = str(threads)
    cases = [c for c in CASES if not only or any(o in c.name for o in only)]
    done = [run_case(c, threads) for c in cases]
    data = report(done, threads)
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        _print(data)
    if plot:
        _plot(data, plot)
    return 0
