"""The CUDA source, compiled with ``cupy.RawModule``: one module per template
instantiation and device, compiled by NVRTC when first launched and kept in CuPy's
on-disk kernel cache (keyed by the source, the options and the GPU architecture)."""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

from ._geometry import Launch, Limits

#: The kernels' source, shipped in the wheel next to this module.
SOURCE = Path(__file__).with_name("cuda") / "softmax.cu"
#: NVRTC options: C++17, and nothing that relaxes IEEE arithmetic (no fast-math).
OPTIONS = ("-std=c++17",)

_lock = threading.Lock()
_functions: dict[tuple[int, str], Any] = {}


@functools.cache
def source() -> str:
    """The CUDA source text."""
    return SOURCE.read_text(encoding="utf-8")


def function(device_id: int, kernel: str) -> Any:
    """The ``cupy.RawKernel`` for name expression ``kernel`` on device ``device_id``
    (compiled on first use; call with that device current)."""
    key = (device_id, kernel)
    fn = _functions.get(key)
    if fn is None:
        import cupy

        module = cupy.RawModule(code=source(), options=OPTIONS, name_expressions=(kernel,))
        fn = module.get_function(kernel)
        with _lock:
            fn = _functions.setdefault(key, fn)
    return fn


def launch(device_id: int, plan: Launch, args: tuple[Any, ...]) -> None:
    """Launch ``plan`` on the current device and stream with ``args``."""
    fn = function(device_id, plan.kernel)
    # The default allowance is 48 KiB less the kernel's static shared memory: ask for more
    # whenever the plan needs more than the kernel is allowed now.
    if plan.shared and fn.max_dynamic_shared_size_bytes < plan.shared:
        fn.max_dynamic_shared_size_bytes = plan.shared
    fn((plan.grid,), (plan.block,), args, shared_mem=plan.shared)


@functools.cache
def limits(device_id: int) -> Limits:
    """The device's SM count, opt-in shared memory per block and largest grid."""
    import cupy

    attributes = cupy.cuda.Device(device_id).attributes
    return Limits(
        sms=attributes["MultiProcessorCount"],
        max_shared=attributes["MaxSharedMemoryPerBlockOptin"],
        max_grid=attributes["MaxGridDimX"],
    )
