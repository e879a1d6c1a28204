"""Cubed arrays (bounded-memory, Array-API-native distributed arrays): the written-once
generic kernels, lazily, every array of a call on the input's own spec."""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from softmax_dispatch import Backend, hookimpl

from . import never, require


def _owns(x: Any) -> bool:
    t = type(x)
    return t.__name__ == "Array" and t.__module__.startswith("cubed.")


def _namespace() -> ModuleType:
    return require("cubed", "Cubed", "pip install cubed")


def _devices() -> tuple[Any, ...]:
    return tuple(_namespace().__array_namespace_info__().devices())


def _to_numpy(x: Any) -> Any:
    import numpy

    return numpy.asarray(x.compute())


def _from_numpy(host: Any, device: Any) -> Any:
    # from_array, not asarray: Cubed refuses in-memory arrays over 1 MB in asarray
    return _namespace().from_array(host)


@hookimpl
def softmax_dispatch_backends() -> Iterable[Backend]:
    yield Backend(
        name="cubed",
        owns=_owns,
        namespace=_namespace,
        devices=_devices,
        to_numpy=_to_numpy,
        from_numpy=_from_numpy,
        cheap_reads=never,
        description="Cubed arrays, lazily, on the generic kernels",
    )
