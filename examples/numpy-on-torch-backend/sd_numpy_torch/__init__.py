"""softmax-dispatch backend ``numpy_torch``: NumPy arrays, computed by PyTorch's fused CPU
kernels on the same memory (``torch.from_numpy``: no copy), results handed back as NumPy
arrays.

It shows what the in-tree backends do not: a second backend for an array type another
backend already owns (NumPy arrays belong to the built-in ``numpy`` backend; this one has a
lower priority, so it runs only when chosen: ``backend="numpy_torch"`` or
``with softmax_dispatch.use_backend("numpy_torch"):``), kernels borrowed from another
library, and a bench kit that times it against the backend it stands beside.

The hook imports nothing heavy; torch is imported when the backend is first used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from array_api_compat import is_numpy_array

from softmax_dispatch import Backend, BackendUnavailable, BenchKit, BenchTarget, hookimpl


def _namespace() -> Any:
    import array_api_compat.numpy

    return array_api_compat.numpy


def _devices() -> tuple[str, ...]:
    # Raising says why the backend cannot run; `softmax-dispatch backends` shows it.
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailable(f"PyTorch is not installed ({exc}); pip install torch") from None
    return ("cpu",)


def _kernels() -> dict[str, Callable[..., Any]]:
    from . import kernels

    return {
        "softmax": kernels.softmax,
        "log_softmax": kernels.log_softmax,
        "softmax_backward": kernels.softmax_backward,
        "log_softmax_backward": kernels.log_softmax_backward,
    }


def _bench(device: Any) -> BenchKit:
    """Times ``numpy_torch`` against the built-in NumPy backend on the same arrays."""
    import softmax_dispatch as sd

    def peers(case: Any) -> dict[str, Callable[[], Any]]:
        a, ax = case.arrays, case.axis
        if case.kind == "forward":
            fn = getattr(sd, case.op)
            return {"numpy backend": lambda: fn(a["x"], ax, backend="numpy")}
        if case.kind == "backward":
            fn = getattr(sd, case.op)
            return {"numpy backend": lambda: fn(a["grad"], a["y"], ax, backend="numpy")}
        return {}

    big = "4096x4096 f32"
    return BenchKit(
        peers=peers,
        cases=(f"softmax {big}", f"log_softmax {big}", f"softmax_backward {big}"),
        targets=(BenchTarget(f"log_softmax {big}", "ours", "numpy backend", 1.0),),
    )


@hookimpl
def softmax_dispatch_backends() -> Iterable[Backend]:
    yield Backend(
        name="numpy_torch",
        owns=is_numpy_array,
        namespace=_namespace,
        priority=-10,  # below the built-in numpy backend: only when chosen by name
        devices=_devices,
        kernels=_kernels,  # a function: the kernels module (and torch) load on first use
        bench=_bench,
        description="NumPy arrays on PyTorch's fused CPU kernels, no copy (example plugin)",
    )
