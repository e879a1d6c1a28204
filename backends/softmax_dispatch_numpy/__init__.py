"""The NumPy backend: NumPy arrays on the CPU, with fused, cache-blocked, multi-threaded
kernels (``_kernels``) that replace the generic ones for every op.

Registered through the ``softmax_dispatch`` entry-point group, exactly as a third-party
plugin would be. ``SOFTMAX_DISPATCH_NUM_THREADS`` sets the thread count;
``SOFTMAX_DISPATCH_OUTPUT_CACHE_MB`` the pool that large results reuse (`_outputs`),
which `empty_cache` empties and `cache_info` describes.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from array_api_compat import is_numpy_array

from softmax_dispatch import Backend, hookimpl

from ._outputs import CacheInfo, cache_info, empty_cache, no_output_cache

__all__ = [
    "CacheInfo",
    "cache_info",
    "empty_cache",
    "no_output_cache",
    "softmax_dispatch_backends",
]


def _fused_kernels() -> dict[str, Any]:
    from . import _kernels as k

    return {name: getattr(k, name) for name in k.__all__}


def _namespace() -> ModuleType:
    import array_api_compat.numpy

    return array_api_compat.numpy


def _to_numpy(x: Any) -> Any:
    import numpy

    return numpy.asarray(x)


def _synchronize(device: Any) -> None:
    """NumPy runs synchronously: nothing to wait for."""


@hookimpl
def softmax_dispatch_backends() -> Iterable[Backend]:
    yield Backend(
        name="numpy",
        owns=is_numpy_array,
        namespace=_namespace,
        to_numpy=_to_numpy,
        synchronize=_synchronize,
        kernels=_fused_kernels(),
        description="NumPy on the CPU, fused multi-threaded kernels",
    )
