"""softmax-dispatch backend: PyTorch tensors on torch's own fused softmax kernels.

The hook imports nothing heavy; torch is imported inside the kernels and ``devices()``.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from softmax_dispatch import Backend, hookimpl


def _owns(x: Any) -> bool:
    t = type(x)
    return t.__module__.startswith("torch") and any(
        c.__name__ == "Tensor" and c.__module__ == "torch" for c in t.__mro__
    )


def _namespace() -> ModuleType:
    import array_api_compat.torch

    return array_api_compat.torch


def _devices() -> tuple[Any, ...]:
    import torch

    cuda = [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    return (torch.device("cpu"), *cuda)


def _compute_dtype(x: Any) -> Any:
    import torch

    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _normalize(x: Any, axes: tuple[int, ...], where: Any, log: bool) -> Any:
    import torch

    dtype = x.dtype
    if where is not None:
        mask = where.broadcast_to(x.shape)
        valid = mask.amax(dim=axes, keepdim=True) if axes else mask
        # masked entries -inf; rows with nothing unmasked become zeros (finite: no NaN
        # in the forward pass nor in autograd), then are blanked below.
        x = x.masked_fill(~mask, float("-inf")).masked_fill(~valid, 0.0)
    if not axes:  # each element its own distribution
        y = (x - x) if log else (x - x) + 1
    elif len(axes) == 1:
        fn = torch.log_softmax if log else torch.softmax
        y = fn(x, axes[0], dtype=_compute_dtype(x))
    else:  # several axes: move them last, flatten, normalise, undo
        rest = [d for d in range(x.ndim) if d not in axes]
        perm = rest + list(axes)
        moved = x.permute(perm)
        flat = moved.reshape(*moved.shape[: len(rest)], -1)
        fn = torch.log_softmax if log else torch.softmax
        y = fn(flat, -1, dtype=_compute_dtype(x)).reshape(moved.shape)
        y = y.permute([perm.index(d) for d in range(x.ndim)])
    if where is not None:
        y = y.masked_fill(~mask, float("-inf") if log else 0.0)
    return y.to(dtype)


def _finish(y: Any, out: Any) -> Any:
    if out is None:
        return y
    out.copy_(y)
    return out


def softmax(xp: Any, x: Any, axes: tuple[int, ...], where: Any = None, out: Any = None) -> Any:
    return _finish(_normalize(x, axes, where, log=False), out)


def log_softmax(xp: Any, x: Any, axes: tuple[int, ...], where: Any = None, out: Any = None) -> Any:
    return _finish(_normalize(x, axes, where, log=True), out)


def _backward(grad: Any, y: Any, axes: tuple[int, ...], where: Any, log: bool) -> Any:
    dtype = y.dtype
    g, y = grad.to(_compute_dtype(y)), y.to(_compute_dtype(y))
    if where is not None:
        g = g.masked_fill(~where, 0.0)
    if not axes:
        dx = g * 0
    elif log:
        dx = g - y.exp() * g.sum(dim=axes, keepdim=True)
    else:
        dx = y * (g - (g * y).sum(dim=axes, keepdim=True))
    if where is not None:
        dx = dx.masked_fill(~where, 0.0)
    return dx.to(dtype)


def softmax_backward(
    xp: Any, grad: Any, y: Any, axes: tuple[int, ...], where: Any = None, out: Any = None
) -> Any:
    return _finish(_backward(grad, y, axes, where, log=False), out)


def log_softmax_backward(
    xp: Any, grad: Any, y: Any, axes: tuple[int, ...], where: Any = None, out: Any = None
) -> Any:
    return _finish(_backward(grad, y, axes, where, log=True), out)


def _to_numpy(x: Any) -> Any:
    return x.detach().cpu().numpy()


def _synchronize(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@hookimpl
def softmax_dispatch_backends() -> Iterable[Backend]:
    yield Backend(
        name="torch_native",
        owns=_owns,
        namespace=_namespace,
        priority=10,
        devices=_devices,
        to_numpy=_to_numpy,
        synchronize=_synchronize,
        kernels={
            "softmax": softmax,
            "log_softmax": log_softmax,
            "softmax_backward": softmax_backward,
            "log_softmax_backward": log_softmax_backward,
        },
        description="PyTorch tensors on torch's fused softmax kernels (example plugin)",
    )
