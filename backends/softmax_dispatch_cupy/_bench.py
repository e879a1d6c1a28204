"""What ``softmax-dispatch bench --backend cupy`` times ours against: CuPy's own softmax
(``cupyx.scipy.special``) and PyTorch's CUDA kernels on the same device memory (through
DLPack, no copy), timed with CUDA events on the current stream. The targets are the CUDA
issue's: ours against a same-run copy of the same bytes (the floor) and against PyTorch.

CuPy has no bfloat16 dtype: the 16-bit cases are float16.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from softmax_dispatch import BenchCase, BenchKit, BenchTarget

__all__ = ["CUPY_CASES", "CUPY_TARGETS", "cupy_kit"]

Impls = dict[str, Callable[[], Any]]

_SHORT = ("softmax 16384x256 f32", "softmax 16384x1024 f32", "log_softmax 16384x1024 f32")
_MID = (
    "softmax 16384x4096 f32",
    "log_softmax 16384x4096 f32",
    "softmax 8192x16384 f32",
    "softmax 4096x32768 f32",
    "log_softmax 4096x32768 f32",
)
_LONG = ("softmax 2048x65536 f32", "softmax 512x262144 f32")
_HALF = (
    "softmax 16384x1024 f16",
    "softmax 65536x4096 f16",
    "softmax 8192x32768 f16",
    "softmax 2048x131072 f16",
)
_BACKWARD = ("softmax_backward 16384x4096 f32", "log_softmax_backward 16384x4096 f32")
_CE = ("cross_entropy 4096x32000 f32", "cross_entropy 4096x128000 f32")
CUPY_CASES = (*_SHORT, *_MID, *_LONG, *_HALF, *_BACKWARD, *_CE)

#: "useful bytes/s over same-run copy bytes/s >= r" is "ours / floor <= 1 / r".
CUPY_TARGETS = (
    *(BenchTarget(c, "ours", "floor", round(1 / 0.65, 3)) for c in _SHORT),
    *(BenchTarget(c, "ours", "floor", round(1 / 0.85, 3)) for c in _MID),
    *(BenchTarget(c, "ours", "floor", round(1 / 0.60, 3)) for c in _LONG),
    *(BenchTarget(c, "ours", "torch", 1.0) for c in (*_SHORT, *_MID, *_LONG, *_HALF)),
    BenchTarget("softmax_backward 16384x4096 f32", "ours", "torch", 0.60),
    *(BenchTarget(c, "ours", "torch", 0.50) for c in _CE),
)


def _torch() -> Any:
    try:
        return importlib.import_module("torch")
    except ImportError:
        return None


def _peers(case: BenchCase) -> Impls:
    torch = _torch()  # imported before anything that may import SciPy
    import cupyx.scipy.special as cupyx_special

    a, ax = case.arrays, case.axis
    impls: Impls = {}
    tensor = (lambda arr: torch.from_dlpack(arr)) if torch is not None else None
    if case.kind == "forward":
        x = a["x"]
        impls["cupyx"] = lambda: getattr(cupyx_special, case.op)(x, axis=ax)
        if tensor is not None:
            fn, t = getattr(torch, case.op), tensor(x)
            impls["torch"] = lambda: fn(t, ax)
    elif case.kind == "backward" and tensor is not None:
        g, y = tensor(a["grad"]), tensor(a["y"])
        bwd = (
            torch._softmax_backward_data
            if case.op == "softmax_backward"
            else torch._log_softmax_backward_data
        )
        impls["torch"] = lambda: bwd(g, y, ax, y.dtype)
    elif case.kind == "cross_entropy" and tensor is not None:
        import torch.nn.functional as F

        logits, target = tensor(a["logits"]), tensor(a["target"])

        def theirs() -> Any:
            leaf = logits.detach().requires_grad_(True)
            F.cross_entropy(leaf, target).backward()
            return leaf.grad

        impls["torch"] = theirs
    return impls


def _timer(fn: Callable[[], Any], inner: int) -> float:
    """Milliseconds per call, from CUDA events around ``inner`` calls on the current
    stream (PyTorch's default stream synchronises with it)."""
    import cupy

    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    for _ in range(inner):
        fn()
    end.record()
    end.synchronize()
    return cupy.cuda.get_elapsed_time(start, end) / inner


def _versions() -> dict[str, str]:
    import cupy

    found = {"cupy": cupy.__version__, "cuda runtime": str(cupy.cuda.runtime.runtimeGetVersion())}
    torch = _torch()
    if torch is not None:
        found["torch"] = torch.__version__
    return found


def cupy_kit(device: Any) -> BenchKit:
    """The CuPy backend's `BenchKit` (device: a ``cupy.cuda.Device``)."""
    return BenchKit(
        peers=_peers,
        timer=_timer,
        cases=CUPY_CASES,
        targets=CUPY_TARGETS,
        versions=_versions,
    )
