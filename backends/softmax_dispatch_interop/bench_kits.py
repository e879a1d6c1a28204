"""What ``softmax-dispatch bench`` times ours against on PyTorch, JAX and Dask arrays: each
library's own softmax family, the way its users call it."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from softmax_dispatch import BenchCase, BenchKit, BenchTarget
from softmax_dispatch import softmax_cross_entropy as _ce

__all__ = ["dask_kit", "jax_kit", "torch_kit"]

Impls = dict[str, Callable[[], Any]]


def _version(module: str) -> dict[str, str]:
    return {module: importlib.import_module(module).__version__}


# ------------------------------------------------------------------------------ torch
TORCH_CASES = (
    "softmax 4096x4096 f32",
    "log_softmax 4096x4096 f32",
    "softmax 256x32000 f32",
    "log_softmax 256x32000 f32",
    "softmax 64x1000 f32",
    "log_softmax 64x1000 f32",
    "softmax 8x10 f32",
    "log_softmax 8x10 f32",
    "softmax_backward 4096x4096 f32",
    "autograd softmax 2048x8192 f32",
    "autograd log_softmax 2048x8192 f32",
    "cross_entropy 4096x32000 f32",
)
TORCH_TARGETS = (
    *(
        BenchTarget(f"{op} {shape} f32", "ours", "torch", 1.10)
        for op in ("softmax", "log_softmax")
        for shape in ("4096x4096", "256x32000", "64x1000")
    ),
    BenchTarget("softmax 8x10 f32", "ours", "torch", 2.0),
    BenchTarget("log_softmax 8x10 f32", "ours", "torch", 2.0),
    BenchTarget("autograd softmax 2048x8192 f32", "ours", "torch", 1.15),
    BenchTarget("autograd log_softmax 2048x8192 f32", "ours", "torch", 1.15),
    BenchTarget("cross_entropy 4096x32000 f32", "ours", "torch", 1.15),
)


def _torch_peers(case: BenchCase) -> Impls:
    import torch
    import torch.nn.functional as F

    import softmax_dispatch as sd

    a, ax = case.arrays, case.axis
    if case.kind == "forward":
        fn, x = getattr(torch, case.op), a["x"]
        return {"torch": lambda: fn(x, ax)}
    if case.kind == "out":
        fn = torch._softmax if case.op == "softmax" else torch._log_softmax
        x, out = a["x"], a["out"]
        return {"torch out=": lambda: fn(x, ax, False, out=out)}
    if case.kind == "backward":
        g, y = a["grad"], a["y"]
        bwd = (
            torch._softmax_backward_data
            if case.op == "softmax_backward"
            else torch._log_softmax_backward_data
        )
        return {"torch": lambda: bwd(g, y, ax, y.dtype)}
    if case.kind == "autograd":
        x, g = a["x"], a["grad"]
        ours_fn, theirs_fn = getattr(sd, case.op), getattr(torch, case.op)

        def through(fn: Callable[..., Any]) -> Callable[[], Any]:
            def run() -> Any:
                leaf = x.detach().requires_grad_(True)
                fn(leaf, ax).backward(g)
                return leaf.grad

            return run

        return {"ours": through(ours_fn), "torch": through(theirs_fn)}
    if case.kind == "cross_entropy":
        logits, target = a["logits"], a["target"]

        def theirs() -> Any:
            leaf = logits.detach().requires_grad_(True)
            F.cross_entropy(leaf, target).backward()
            return leaf.grad

        def ours() -> Any:
            leaf = logits.detach().requires_grad_(True)
            _ce(leaf, target).backward()
            return leaf.grad

        return {"ours": ours, "torch": theirs}
    return {}


def _torch_timer(device: Any) -> Callable[[Callable[[], Any], int], float] | None:
    import torch

    if torch.device(device).type != "cuda":
        return None

    def timer(fn: Callable[[], Any], inner: int) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / inner

    return timer


def torch_kit(device: Any) -> BenchKit:
    import torch

    return BenchKit(
        peers=_torch_peers,
        threads=torch.set_num_threads,
        timer=_torch_timer(device),
        cases=TORCH_CASES,
        targets=TORCH_TARGETS,
        versions=lambda: _version("torch"),
    )


# -------------------------------------------------------------------------------- jax
JAX_CASES = (
    "softmax 4096x4096 f32",
    "log_softmax 4096x4096 f32",
    "softmax 64x1000 f32",
    "softmax 8x10 f32",
    "autograd softmax 2048x8192 f32",
    "autograd log_softmax 2048x8192 f32",
)
JAX_TARGETS = (
    BenchTarget("softmax 4096x4096 f32", "ours", "jax.nn", 1.10),
    BenchTarget("softmax 64x1000 f32", "ours", "jax.nn", 1.10),
    BenchTarget("softmax 4096x4096 f32", "ours jit", "jax.nn jit", 1.05),
    BenchTarget("log_softmax 4096x4096 f32", "ours jit", "jax.nn jit", 1.05),
    BenchTarget("autograd softmax 2048x8192 f32", "ours", "jax.nn", 1.05),
    BenchTarget("autograd log_softmax 2048x8192 f32", "ours", "jax.nn", 1.05),
)


def _jax_peers(case: BenchCase) -> Impls:
    import jax

    import softmax_dispatch as sd

    a, ax = case.arrays, case.axis
    if case.kind == "forward":
        x = a["x"]
        theirs, ours = getattr(jax.nn, case.op), getattr(sd, case.op)
        theirs_jit = jax.jit(lambda v: theirs(v, axis=ax))
        ours_jit = jax.jit(lambda v: ours(v, ax))
        return {
            "ours jit": lambda: ours_jit(x),
            "jax.nn": lambda: theirs(x, axis=ax),
            "jax.nn jit": lambda: theirs_jit(x),
        }
    if case.kind == "autograd":  # a jitted VJP: the output and the input's gradient
        x, g = a["x"], a["grad"]
        theirs, ours = getattr(jax.nn, case.op), getattr(sd, case.op)

        def vjp(fn: Callable[..., Any]) -> Callable[[], Any]:
            def both(v: Any, w: Any) -> Any:
                out, pullback = jax.vjp(lambda u: fn(u, axis=ax), v)
                return out, pullback(w)[0]

            step = jax.jit(both)
            return lambda: step(x, g)

        return {"ours": vjp(lambda u, axis: ours(u, axis)), "jax.nn": vjp(theirs)}
    return {}


def jax_kit(device: Any) -> BenchKit:
    import jax

    return BenchKit(
        peers=_jax_peers,
        finish=jax.block_until_ready,
        cases=JAX_CASES,
        targets=JAX_TARGETS,
        versions=lambda: _version("jax"),
    )


# ------------------------------------------------------------------------------- dask
DASK_CASES = (
    "softmax 400000x500 f32",
    "log_softmax 400000x500 f32",
    "softmax 4096x4096 f32",
    "softmax_backward 4096x4096 f32",
    "softmax 256x32000 f32",
)
DASK_TARGETS = tuple(
    target
    for case in ("softmax 400000x500 f32", "log_softmax 400000x500 f32")
    for target in (
        BenchTarget(case, "ours", "dask textbook", 0.5),  # at least 2x faster
        BenchTarget(case, "ours", "map_blocks", 1.1),  # the floor: the chunk kernel itself
    )
)
#: Bytes per chunk: whole-row slabs of about 32 MiB (24 chunks for 400000x500 float32).
CHUNK_BYTES = 32 * 2**20


def _dask_prepare(arrays: Mapping[str, Any]) -> dict[str, Any]:
    """Row-chunked and persisted, as data loaded by Dask is held."""
    out = {}
    for name, arr in arrays.items():
        if arr.ndim >= 1:
            row_bytes = max(1, arr.nbytes // max(1, arr.shape[0]))
            rows = max(1, CHUNK_BYTES // row_bytes)
            arr = arr.rechunk({0: rows, **{d: -1 for d in range(1, arr.ndim)}})
        out[name] = arr.persist()
    return out


def _dask_peers(case: BenchCase) -> Impls:
    import dask.array as da

    import softmax_dispatch as sd
    from softmax_dispatch._dispatch import generic_kernels

    a, ax = case.arrays, case.axis
    if case.kind == "forward":
        x = a["x"]
        op = getattr(sd, case.op)
        if case.op == "softmax":

            def textbook() -> Any:
                e = da.exp(x - x.max(axis=ax, keepdims=True))
                return e / e.sum(axis=ax, keepdims=True)
        else:

            def textbook() -> Any:
                z = x - x.max(axis=ax, keepdims=True)
                return z - da.log(da.exp(z).sum(axis=ax, keepdims=True))

        def generic() -> Any:
            with generic_kernels():
                return op(x, ax)

        return {
            "dask textbook": textbook,
            "generic": generic,
            # the floor: the chunk backend's kernel on each (whole-row) block, by hand
            "map_blocks": lambda: x.map_blocks(op, axis=ax, dtype=x.dtype),
        }
    if case.kind == "backward":
        g, y = a["grad"], a["y"]
        return {"dask textbook": lambda: y * (g - (g * y).sum(axis=ax, keepdims=True))}
    return {}


def dask_kit(device: Any) -> BenchKit:
    return BenchKit(
        peers=_dask_peers,
        finish=lambda result: result.compute(),
        cases=DASK_CASES,
        targets=DASK_TARGETS,
        versions=lambda: _version("dask"),
        prepare=_dask_prepare,
    )
