"""The CuPy backend: CuPy arrays on NVIDIA GPUs.

Importing this module never imports CuPy; ``devices()`` does, and turns a missing
library, a missing driver or the absence of a GPU into a reason shown by
``softmax-dispatch backends``.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from array_api_compat import is_cupy_array

from softmax_dispatch import Backend, BackendUnavailable, hookimpl

INSTALL_HINT = "pip install 'softmax-dispatch[cuda12]' (or [cuda13])"


def _namespace() -> ModuleType:
    import array_api_compat.cupy

    return array_api_compat.cupy


def _devices() -> tuple[Any, ...]:
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


@hookimpl
def softmax_dispatch_backends() -> Iterable[Backend]:
    yield Backend(
        name="cupy",
        owns=is_cupy_array,
        namespace=_namespace,
        devices=_devices,
        to_numpy=_to_numpy,
        synchronize=_synchronize,
        description="CuPy on NVIDIA GPUs",
    )
