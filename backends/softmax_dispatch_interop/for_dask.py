"""Dask arrays: results stay lazy until computed; each op one ``map_blocks`` of the
chunk backend's fused kernels over whole-row chunks (``dask_kernels``)."""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from array_api_compat import is_dask_array, is_numpy_array

from softmax_dispatch import KERNEL_NAMES, Backend, hookimpl

from . import kernels_of, never, require


def _namespace() -> ModuleType:
    import array_api_compat.dask.array

    return array_api_compat.dask.array


def _devices() -> tuple[Any, ...]:
    require("dask.array", "Dask's array module", "pip install 'dask[array]'")
    return ("cpu",)


def _to_numpy(x: Any) -> Any:
    import numpy

    return numpy.asarray(x.compute())


def _bench(device: Any) -> Any:
    from .bench_kits import dask_kit

    return dask_kit(device)


@hookimpl
def softmax_dispatch_backends() -> Iterable[Backend]:
    yield Backend(
        name="dask",
        owns=is_dask_array,
        namespace=_namespace,
        devices=_devices,
        to_numpy=_to_numpy,
        bench=_bench,
        kernels=kernels_of("dask_kernels", KERNEL_NAMES),
        accepts=is_numpy_array,  # NumPy masks, targets, gradients: wrapped lazily
        cheap_reads=never,
        description="Dask arrays, lazily: one task per block on the chunks' fused kernels",
    )
