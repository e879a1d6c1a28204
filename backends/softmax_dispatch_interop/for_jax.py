"""JAX arrays, also under ``jax.jit`` and ``jax.grad``."""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from array_api_compat import is_jax_array

from softmax_dispatch import Backend, hookimpl

from . import require


def _namespace() -> ModuleType:
    import jax.numpy

    return jax.numpy


def _devices() -> tuple[Any, ...]:
    jax = require("jax", "JAX", "pip install jax")
    return tuple(jax.devices())


def _to_numpy(x: Any) -> Any:
    import numpy

    return numpy.asarray(x)


def _synchronize(device: Any) -> None:
    """JAX work is waited for with ``block_until_ready`` on the result, not per device."""


def _bench(device: Any) -> Any:
    from .bench_kits import jax_kit

    return jax_kit(device)


@hookimpl
def softmax_dispatch_backends() -> Iterable[Backend]:
    yield Backend(
        name="jax",
        owns=is_jax_array,
        namespace=_namespace,
        devices=_devices,
        to_numpy=_to_numpy,
        bench=_bench,
        synchronize=_synchronize,
        description="JAX arrays (jit and grad pass through), generic kernels",
    )
