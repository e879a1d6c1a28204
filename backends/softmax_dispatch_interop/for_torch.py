"""PyTorch tensors (CPU and CUDA), autograd flowing through the generic kernels."""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from array_api_compat import is_torch_array

from softmax_dispatch import Backend, hookimpl

from . import require


def _namespace() -> ModuleType:
    import array_api_compat.torch

    return array_api_compat.torch


def _devices() -> tuple[Any, ...]:
    torch = require("torch", "PyTorch", "pip install torch (see https://pytorch.org)")
    cuda = [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    return (torch.device("cpu"), *cuda)


def _to_numpy(x: Any) -> Any:
    return x.detach().cpu().numpy()


def _synchronize(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _bench(device: Any) -> Any:
    from .bench_kits import torch_kit

    return torch_kit(device)


@hookimpl
def softmax_dispatch_backends() -> Iterable[Backend]:
    yield Backend(
        name="torch",
        owns=is_torch_array,
        namespace=_namespace,
        devices=_devices,
        to_numpy=_to_numpy,
        bench=_bench,
        synchronize=_synchronize,
        description="PyTorch tensors, through the generic kernels",
    )
