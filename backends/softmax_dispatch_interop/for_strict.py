"""array-api-strict: the standard's reference namespace, with several fake devices."""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from softmax_dispatch import Backend, hookimpl


def _owns(x: Any) -> bool:
    return type(x).__module__.startswith("array_api_strict")


def _namespace() -> ModuleType:
    import array_api_strict

    return array_api_strict


@hookimpl
def softmax_dispatch_backends() -> Iterable[Backend]:
    yield Backend(
        name="array_api_strict",
        owns=_owns,
        namespace=_namespace,
        description="array-api-strict on each of its devices, generic kernels",
    )
