"""PyTorch tensors (CPU and CUDA): fused kernels on PyTorch's own (`torch_kernels`),
one autograd node per op saving only the output."""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from array_api_compat import is_torch_array

from softmax_dispatch import KERNEL_NAMES, Backend, hookimpl

from . import kernels_of, require


def _namespace() -> ModuleType:
    import array_api_compat.torch

    return array_api_compat.torch


def _devices() -> tuple[Any, ...]:
    torch = require("torch", "PyTorch", "pip install torch (see https://pytorch.org)")
    cuda = [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    return (torch.device("cpu"), *cuda)


def _device_of(x: Any) -> Any:
    """A tensor's device (torch.compile traces this, where array_api_compat's checks
    would make it warn)."""
    return x.device


def _cheap_reads(x: Any) -> bool:
    """On the CPU, outside torch.compile's tracing: reading values needs no sync."""
    import torch

    return x.device.type == "cpu" and not torch.compiler.is_compiling()


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
        kernels=kernels_of("torch_kernels", KERNEL_NAMES),
        device_of=_device_of,
        cheap_reads=_cheap_reads,
        synchronize=_synchronize,
        description="PyTorch tensors, on PyTorch's fused kernels and autograd",
    )
