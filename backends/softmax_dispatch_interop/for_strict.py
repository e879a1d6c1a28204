"""array-api-strict: the standard's reference namespace, with several fake devices."""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from softmax_dispatch import Backend, hookimpl

from . import require


def _owns(x: Any) -> bool:
    return type(x).__module__.startswith("array_api_strict")


def _namespace() -> ModuleType:
    return require("array_api_strict", "array-api-strict", "pip install array-api-strict")


def _devices() -> tuple[Any, ...]:
    return tuple(_namespace().__array_namespace_info__().devices())


@hookimpl
def softmax_dispatch_backends() -> Iterable[Backend]:
    yield Backend(
        name="array_api_strict",
        owns=_owns,
        namespace=_namespace,
        devices=_devices,
        description="array-api-strict on each of its devices, generic kernels",
    )
