"""JAX arrays, also under ``jax.jit``, ``grad``, ``jvp``, ``vmap`` and ``checkpoint``: jitted
kernels (`jax_kernels`) whose derivatives come from the saved output."""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from array_api_compat import is_jax_array

from softmax_dispatch import Backend, hookimpl

from . import kernels_of, require

#: The ops with a jitted kernel of their own; cross-entropy stays generic (XLA fuses it).
_FUSED = ("softmax", "log_softmax", "softmax_backward", "log_softmax_backward")


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
        kernels=kernels_of("jax_kernels", _FUSED),
        synchronize=_synchronize,
        description="JAX arrays: jitted kernels, derivatives from the output (custom_jvp)",
    )
