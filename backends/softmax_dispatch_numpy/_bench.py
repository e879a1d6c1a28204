"""What ``softmax-dispatch bench --backend numpy`` times ours against: SciPy's softmax and
log_softmax, PyTorch's CPU kernels on the same memory (``torch.from_numpy``, no copy;
``F.cross_entropy`` and its backward for cross-entropy), textbook NumPy, and our own
kernel called without the public function (``kernel``: what the call path costs is
ours minus it); the thread knob; the targets this backend holds itself to.

PyTorch is imported before SciPy, as PyTorch's users do: the other order loads a second
OpenMP runtime that slowed ``torch.softmax`` 1.6x on 4096x4096 and 400x on 64x1000 on a
2-core VM (the bench refuses a peer in that state anyway).
"""

from __future__ import annotations

import importlib
import os
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from softmax_dispatch import BenchCase, BenchKit, BenchTarget

from ._threads import ENV

__all__ = ["kit"]

CASES = (
    "softmax 4096x4096 f32",
    "log_softmax 4096x4096 f32",
    "softmax axis=0 4096x4096 f32",
    "softmax out= 4096x4096 f32",
    "softmax_backward 4096x4096 f32",
    "softmax 256x32000 f32",
    "softmax 1024x4096 f16",
    "softmax 2048x2048 f64",
    "softmax 64x1000 f32",
    "softmax 8x10 f32",
    "cross_entropy 4096x32000 f32",
)

_BIG = "4096x4096 f32"
#: The compiled kernels' targets (issue 20); the pure-NumPy kernels are held to none.
TARGETS = (
    BenchTarget(f"softmax {_BIG}", "ours", "floor", 1.10),
    BenchTarget(f"log_softmax {_BIG}", "ours", "floor", 1.15),
    BenchTarget(f"softmax axis=0 {_BIG}", "ours", "floor", 1.30),
    BenchTarget(f"softmax_backward {_BIG}", "ours", "floor", 1.05),
    BenchTarget(f"softmax out= {_BIG}", "ours out=", "floor out=", 1.10),
    BenchTarget("softmax 1024x4096 f16", "ours", "floor", 1.50),
    BenchTarget("softmax 2048x2048 f64", "ours", "floor", 1.15),
    BenchTarget("softmax 256x32000 f32", "ours", "floor", 1.15),
    BenchTarget(f"softmax {_BIG}", "ours", "torch", 1.0),
    BenchTarget(f"log_softmax {_BIG}", "ours", "torch", 1.0),
    BenchTarget(f"softmax axis=0 {_BIG}", "ours", "torch", 1.0),
    BenchTarget(f"softmax_backward {_BIG}", "ours", "torch", 1.0),
    BenchTarget(f"softmax out= {_BIG}", "ours out=", "torch out=", 1.0),
    BenchTarget("softmax 1024x4096 f16", "ours", "torch", 1.0),
    BenchTarget("softmax 2048x2048 f64", "ours", "torch", 1.0),
    BenchTarget("softmax 256x32000 f32", "ours", "torch", 1.0),
    BenchTarget("softmax 8x10 f32", "ours", "textbook", 1.0),
    BenchTarget("softmax 8x10 f32", "ours", "torch", 1.0),
    BenchTarget("softmax 64x1000 f32", "ours", "textbook", 1.0),
    BenchTarget("softmax 64x1000 f32", "ours", "torch", 1.0),
    BenchTarget("cross_entropy 4096x32000 f32", "ours", "torch", 0.8),
    BenchTarget(f"softmax {_BIG}", "peak memory", "result", 1.1),
    BenchTarget(f"softmax_backward {_BIG}", "peak memory", "result", 1.1),
)

_state: dict[str, Any] = {"threads": None}


def _maybe(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _threads(n: int) -> None:
    os.environ[ENV] = str(n)  # this backend's knob, read at each large call
    _state["threads"] = n


def _torch() -> Any:
    torch = _maybe("torch")  # first: see the module docstring
    if torch is not None and _state["threads"]:
        torch.set_num_threads(_state["threads"])
    return torch


def _textbook(case: BenchCase) -> Callable[[], Any] | None:
    a, ax = case.arrays, case.axis
    if case.kind == "forward" and case.op == "softmax":
        x = a["x"]

        def softmax() -> Any:
            e = np.exp(x - x.max(axis=ax, keepdims=True))
            return e / e.sum(axis=ax, keepdims=True)

        return softmax
    if case.kind == "forward":
        x = a["x"]

        def log_softmax() -> Any:
            z = x - x.max(axis=ax, keepdims=True)
            return z - np.log(np.exp(z).sum(axis=ax, keepdims=True))

        return log_softmax
    if case.kind == "backward" and case.op == "softmax_backward":
        g, y = a["grad"], a["y"]
        return lambda: y * (g - (g * y).sum(axis=ax, keepdims=True))
    return None


def _torch_peer(torch: Any, case: BenchCase) -> dict[str, Callable[[], Any]]:
    a, ax = case.arrays, case.axis
    if case.kind == "forward":
        tx = torch.from_numpy(a["x"])
        fn = getattr(torch, case.op)
        return {"torch": lambda: fn(tx, ax)}
    if case.kind == "out":
        tx, tout = torch.from_numpy(a["x"]), torch.from_numpy(a["out"])
        fn = torch._softmax if case.op == "softmax" else torch._log_softmax
        return {"torch out=": lambda: fn(tx, ax, False, out=tout)}
    if case.kind == "backward":
        tg, ty = torch.from_numpy(a["grad"]), torch.from_numpy(a["y"])
        fn = (
            torch._softmax_backward_data
            if case.op == "softmax_backward"
            else torch._log_softmax_backward_data
        )
        return {"torch": lambda: fn(tg, ty, ax, ty.dtype)}
    if case.kind == "cross_entropy":
        functional = importlib.import_module("torch.nn.functional")
        tx = torch.from_numpy(case.arrays["logits"]).requires_grad_(True)
        tt = torch.from_numpy(case.arrays["target"])

        def fwd_bwd() -> Any:  # as a training step runs it: the loss, then its gradient
            tx.grad = None
            functional.cross_entropy(tx, tt).backward()
            return tx.grad

        return {"torch": fwd_bwd}
    return {}


def _kernel(case: BenchCase) -> dict[str, Callable[[], Any]]:
    """Our fused kernel called directly, past the public function (small cases: what
    the call path costs is ours minus this)."""
    if case.kind != "forward" or np.prod(case.shape) > 1 << 16:
        return {}
    import array_api_compat.numpy as xp

    import softmax_dispatch as sd

    fn = sd.get_backend("numpy").backend.kernel_table()[case.op]
    x, axes = case.arrays["x"], (case.axis % len(case.shape),)
    return {"kernel": lambda: fn(xp, x, axes)}


def _peers(case: BenchCase) -> dict[str, Callable[[], Any]]:
    peers: dict[str, Callable[[], Any]] = {}
    torch = _torch()
    special = _maybe("scipy.special")
    if special is not None and case.kind == "forward":
        fn, x, ax = getattr(special, case.op), case.arrays["x"], case.axis
        peers["scipy"] = lambda: fn(x, axis=ax)
    if torch is not None:
        peers.update(_torch_peer(torch, case))
    textbook = _textbook(case)
    if textbook is not None:
        peers["textbook"] = textbook
    peers.update(_kernel(case))
    return peers


def _peak_memory(fn: Callable[[], Any]) -> int:
    """Peak bytes a call allocates through NumPy (tracemalloc sees NumPy's allocations)."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
        del result
    finally:
        tracemalloc.stop()
    return peak


def _versions() -> dict[str, str]:
    out = {"numpy": np.__version__}
    for name in ("torch", "scipy"):
        mod = _maybe(name)
        if mod is not None:
            out[name] = mod.__version__
    return out


def kit(device: Any = None) -> BenchKit:
    return BenchKit(
        peers=_peers,
        threads=_threads,
        peak_memory=_peak_memory,
        cases=CASES,
        targets=TARGETS,
        versions=_versions,
    )
