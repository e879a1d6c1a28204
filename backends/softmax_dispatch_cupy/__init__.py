"""The CuPy backend: CuPy arrays on NVIDIA GPUs.

Importing this module never imports CuPy; ``devices()`` does, and turns a missing
library, a missing driver or the absence of a GPU into a reason shown by
``softmax-dispatch backends``.

Kernels: the written-once (generic) kernels by default. The fused CUDA kernels
(``cuda/softmax.cu``, launched by ``_kernels``) are opt-in with
``SOFTMAX_DISPATCH_CUPY_KERNELS=fused`` until a run on a real GPU has passed the
conformance suite with them (``benchmarks/gpu_check.sh``); the variable is read when the
plugins load.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from array_api_compat import is_cupy_array

from softmax_dispatch import KERNEL_NAMES, Backend, BackendUnavailable, hookimpl

INSTALL_HINT = "pip install 'softmax-dispatch[cuda12]' (or [cuda13])"
#: Chooses the CuPy backend's kernels: "generic" (the default) or "fused".
KERNELS_VARIABLE = "SOFTMAX_DISPATCH_CUPY_KERNELS"
KERNEL_CHOICES = ("generic", "fused")


def kernel_choice() -> str:
    """``SOFTMAX_DISPATCH_CUPY_KERNELS``, checked: "generic" unless it says "fused"."""
    value = os.environ.get(KERNELS_VARIABLE, "").strip().lower() or "generic"
    if value not in KERNEL_CHOICES:
        raise BackendUnavailable(
            f"{KERNELS_VARIABLE}={os.environ[KERNELS_VARIABLE]!r} is not one of "
            f"{', '.join(map(repr, KERNEL_CHOICES))}"
        )
    return value


def _namespace() -> ModuleType:
    import array_api_compat.cupy

    return array_api_compat.cupy


def _devices() -> tuple[Any, ...]:
    kernel_choice()
    try:
        import cupy
    except ImportError as exc:
        raise BackendUnavailable(f"CuPy is not installed ({exc}); {INSTALL_HINT}") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError without a driver, and friends
        raise BackendUnavailable(
            f"CuPy {cupy.__version__} is installed but CUDA cannot be used: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if count == 0:
        raise BackendUnavailable(f"CuPy {cupy.__version__} found no CUDA device")
    return tuple(cupy.cuda.Device(i) for i in range(count))


def _to_numpy(x: Any) -> Any:
    return x.get()


def _synchronize(device: Any) -> None:
    import cupy

    with cupy.cuda.Device(device if isinstance(device, int) else device.id):
        cupy.cuda.get_current_stream().synchronize()


def _fused_kernels() -> dict[str, Any]:
    from . import _kernels

    return {name: getattr(_kernels, name) for name in KERNEL_NAMES}


def _bench_kit(device: Any) -> Any:
    from ._bench import cupy_kit

    return cupy_kit(device)


def _description(choice: str) -> str:
    if choice == "fused":
        return "CuPy on NVIDIA GPUs, on fused CUDA kernels (opt-in: not yet verified on a GPU)"
    return (
        f"CuPy on NVIDIA GPUs, on the generic kernels (fused CUDA kernels: "
        f"{KERNELS_VARIABLE}=fused, opt-in until verified on a GPU)"
    )


@hookimpl
def softmax_dispatch_backends() -> Iterable[Backend]:
    try:
        choice = kernel_choice()
    except BackendUnavailable:
        choice = "generic"  # devices() reports the bad value
    yield Backend(
        name="cupy",
        owns=is_cupy_array,
        namespace=_namespace,
        devices=_devices,
        to_numpy=_to_numpy,
        synchronize=_synchronize,
        bench=_bench_kit,
        kernels=_fused_kernels if choice == "fused" else {},
        description=_description(choice),
    )
