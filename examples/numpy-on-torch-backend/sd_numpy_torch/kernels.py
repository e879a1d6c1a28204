"""The kernels: NumPy arrays viewed as tensors (``torch.from_numpy`` shares the memory),
PyTorch's fused softmax kernels, the result viewed back as a NumPy array."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

HALF = (torch.float16, torch.bfloat16)


def _tensor(a: np.ndarray) -> torch.Tensor:
    """``a`` as a tensor on the same memory where PyTorch can share it (a read-only or
    foreign-byte-order array is copied: PyTorch would warn, or cannot)."""
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if not a.flags.writeable:
        a = a.copy()
    if a.dtype == np.longdouble and np.finfo(np.longdouble).bits > 64:
        raise TypeError(
            "numpy_torch: long double arrays have no PyTorch dtype; "
            "use backend='numpy', which computes them at their own precision"
        )
    return torch.from_numpy(a)


def _finish(y: torch.Tensor, out: np.ndarray | None) -> np.ndarray:
    result = y.numpy()
    if out is None:
        return result
    np.copyto(out, result)
    return out


def _normalize(x: torch.Tensor, axes: tuple[int, ...], mask: Any, log: bool) -> torch.Tensor:
    compute = torch.float32 if x.dtype in HALF else x.dtype
    if mask is not None:
        x = x.masked_fill(~mask, float("-inf"))
    if not axes:  # each element its own distribution: 1 (0 for log), NaN for inf or NaN
        y = (x - x) if log else torch.exp(x - x)
    else:  # the softmax axes moved last and flattened: one torch call
        rest = [d for d in range(x.ndim) if d not in axes]
        perm = rest + list(axes)
        moved = x.permute(perm)
        flat = moved.reshape(*moved.shape[: len(rest)], -1)
        fn = torch.log_softmax if log else torch.softmax
        y = fn(flat, -1, dtype=compute).reshape(moved.shape)
        y = y.permute([perm.index(d) for d in range(x.ndim)])
    if mask is not None:  # masked entries, and rows with nothing unmasked: 0 (or -inf)
        y = y.masked_fill(~mask, float("-inf") if log else 0.0)
    return y.to(x.dtype)


def _mask(where: Any, shape: tuple[int, ...]) -> Any:
    return None if where is None else torch.from_numpy(np.broadcast_to(where, shape).copy())


def softmax(xp: Any, x: np.ndarray, axes: tuple[int, ...], where: Any = None, out: Any = None):
    return _finish(_normalize(_tensor(x), axes, _mask(where, x.shape), log=False), out)


def log_softmax(xp: Any, x: np.ndarray, axes: tuple[int, ...], where: Any = None, out: Any = None):
    return _finish(_normalize(_tensor(x), axes, _mask(where, x.shape), log=True), out)


def _backward(grad: np.ndarray, y: np.ndarray, axes: tuple[int, ...], where: Any, log: bool):
    yt = _tensor(y)
    compute = torch.float32 if yt.dtype in HALF else yt.dtype
    g, yc = _tensor(grad).to(compute), yt.to(compute)
    mask = _mask(where, y.shape)
    if mask is not None:
        g = g.masked_fill(~mask, 0.0)
    if not axes:
        dx = torch.zeros_like(g)
    elif log:
        dx = g - yc.exp() * g.sum(dim=axes, keepdim=True)
    else:
        dx = yc * (g - (g * yc).sum(dim=axes, keepdim=True))
    if mask is not None:
        dx = dx.masked_fill(~mask, 0.0)
    return dx.to(yt.dtype)


def softmax_backward(xp: Any, grad, y, axes: tuple[int, ...], where: Any = None, out: Any = None):
    return _finish(_backward(grad, y, axes, where, log=False), out)


def log_softmax_backward(xp: Any, grad, y, axes: tuple[int, ...], where: Any = None, out=None):
    return _finish(_backward(grad, y, axes, where, log=True), out)
