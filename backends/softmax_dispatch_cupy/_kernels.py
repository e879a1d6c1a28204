"""Fused kernels for CuPy arrays, with the signatures of the written-once kernels in
``softmax_dispatch._ops`` (which they fall back to for what they do not cover).

Each op is one CUDA kernel (two for split rows: a partial (max, sum) per chunk, then the
normalisation), launched on the array's device and CuPy's current stream; the choice of
kernel and launch is ``_geometry``'s. Covered: float16 (computed in float32), float32 and
float64; one softmax axis, the last one or any other (read in place when the inner size
is at least 32, else moved last by one copy); ``where=``; ``out=`` (written directly when
it is C-contiguous and shares no memory with the inputs); cross-entropy with class
indices. Left to the written-once kernels: several axes at once, ``axis=()``, gradients
of another dtype than ``y``, probability targets.
"""

from __future__ import annotations

import math
from typing import Any

import cupy
import numpy as np

from softmax_dispatch import _ops as generic

from . import _geometry as geometry
from ._module import launch, limits

__all__ = [
    "cross_entropy",
    "cross_entropy_backward",
    "log_softmax",
    "log_softmax_backward",
    "softmax",
    "softmax_backward",
]


def _dtype_name(a: Any) -> str | None:
    """The dtype's name where the CUDA kernels take it, else None."""
    name = a.dtype.name
    return name if name in geometry.DTYPES else None


def _acc(dtype: str) -> type:
    """The computation's dtype: float32 for float16, the dtype itself otherwise."""
    return np.float64 if dtype == "float64" else np.float32


def _aligned(*arrays: Any) -> bool:
    return all(a.data.ptr % 16 == 0 for a in arrays)


def _output(out: Any, shape: tuple[int, ...], dtype: Any, *inputs: Any) -> Any:
    """Where a kernel writes: ``out`` itself when it is C-contiguous and shares no memory
    with an input (the public layer copies a fresh result into any other ``out``)."""
    if (
        out is not None
        and out.flags.c_contiguous
        and out.dtype == dtype
        and not any(a is not None and cupy.may_share_memory(out, a) for a in inputs)
    ):
        return out
    return cupy.empty(shape, dtype)


class _Layout:
    """``shape`` around softmax axis ``axis`` as ``(outer, n, inner)``."""

    def __init__(self, shape: tuple[int, ...], axis: int) -> None:
        self.axis = axis
        self.outer, self.n = math.prod(shape[:axis]), shape[axis]
        self.inner = math.prod(shape[axis + 1 :])

    @property
    def column(self) -> bool:
        return self.inner >= geometry.COLUMN_MIN_INNER

    def rows(self, a: Any) -> Any:
        """``a`` (this shape) C-contiguous with the softmax axis last."""
        if self.inner > 1:
            a = cupy.moveaxis(a, self.axis, -1)
        return cupy.ascontiguousarray(a)

    def back(self, a: Any) -> Any:
        """A result made by ``rows`` in this shape (a view)."""
        return cupy.moveaxis(a, -1, self.axis) if self.inner > 1 else a


def _flags(mask: Any, log: bool) -> tuple[Any, Any]:
    return np.int32(mask is not None), np.int32(log)


def _run_rows(
    op: str, inputs: tuple[Any, ...], mask: Any, result: Any, rows: int, cols: int, log: bool
) -> None:
    """``op`` ("forward" or "backward") over rows of ``cols`` (C-contiguous arrays)."""
    dtype = _dtype_name(result)
    dev = result.device.id
    lim = limits(dev)
    vec = geometry.vector_width(dtype, cols, _aligned(*inputs, result))
    plan_of = geometry.forward_plan if op == "forward" else geometry.backward_plan
    plan = plan_of(rows, cols, dtype, vec, lim)
    masked, log_flag = _flags(mask, log)
    m = inputs[0] if mask is None else mask
    size = (np.int64(rows), np.int64(cols))
    if plan.variant != "split":
        launch(dev, plan.launches[0], (*inputs, m, result, *size, masked, log_flag))
        return
    jobs, acc = rows * plan.splits, _acc(dtype)
    chunking = (np.int64(plan.chunk), np.int64(plan.splits))
    first, second = plan.launches
    if op == "forward":
        part_m, part_s = cupy.empty(jobs, acc), cupy.empty(jobs, acc)
        part_any = cupy.empty(jobs, np.int32)
        parts = (part_m, part_s, part_any)
        launch(dev, first, (*inputs, m, *parts, *size, *chunking, masked))
    else:
        parts = (cupy.empty(jobs, acc),)
        launch(dev, first, (*inputs, m, *parts, *size, *chunking, masked, log_flag))
    launch(dev, second, (*inputs, m, *parts, result, *size, *chunking, masked, log_flag))


def _run(op: str, inputs: tuple[Any, ...], axis: int, where: Any, out: Any, log: bool) -> Any:
    """``op`` over ``axis`` of same-shaped, same-dtype ``inputs``; the result."""
    shape, dtype = inputs[0].shape, inputs[0].dtype
    layout = _Layout(shape, axis)
    mask = None if where is None else cupy.broadcast_to(where, shape)
    if layout.column or layout.inner == 1:
        inputs = tuple(cupy.ascontiguousarray(a) for a in inputs)
        mask = None if mask is None else cupy.ascontiguousarray(mask)
        result = _output(out, shape, dtype, *inputs, mask)
        if layout.column:
            plan = geometry.column_plan(
                op,
                layout.outer,
                layout.n,
                layout.inner,
                _dtype_name(result),
                limits(result.device.id),
            )
            sizes = (np.int64(layout.outer), np.int64(layout.n), np.int64(layout.inner))
            m = inputs[0] if mask is None else mask
            launch(
                result.device.id, plan.launches[0], (*inputs, m, result, *sizes, *_flags(mask, log))
            )
        else:
            _run_rows(op, inputs, mask, result, layout.outer, layout.n, log)
        return result
    moved = tuple(layout.rows(a) for a in inputs)
    mask = None if mask is None else layout.rows(mask)
    result = cupy.empty(moved[0].shape, dtype)
    _run_rows(op, moved, mask, result, layout.outer * layout.inner, layout.n, log)
    return layout.back(result)


def _fused(x: Any, axes: tuple[int, ...]) -> bool:
    return len(axes) == 1 and _dtype_name(x) is not None


def _forward(xp: Any, x: Any, axes: tuple[int, ...], where: Any, out: Any, log: bool) -> Any:
    if not _fused(x, axes):
        fn = generic.log_softmax if log else generic.softmax
        return fn(xp, x, axes, where, out)
    with x.device:
        return _run("forward", (x,), axes[0], where, out, log)


def softmax(xp: Any, x: Any, axes: tuple[int, ...], where: Any = None, out: Any = None) -> Any:
    """softmax on one fused CUDA kernel (two for a few very long rows)."""
    return _forward(xp, x, axes, where, out, log=False)


def log_softmax(xp: Any, x: Any, axes: tuple[int, ...], where: Any = None, out: Any = None) -> Any:
    """log_softmax on one fused CUDA kernel (two for a few very long rows)."""
    return _forward(xp, x, axes, where, out, log=True)


def _backward(
    xp: Any, grad: Any, y: Any, axes: tuple[int, ...], where: Any, out: Any, log: bool
) -> Any:
    if not _fused(y, axes) or grad.dtype != y.dtype:
        fn = generic.log_softmax_backward if log else generic.softmax_backward
        return fn(xp, grad, y, axes, where, out)
    with y.device:
        grad = cupy.broadcast_to(grad, y.shape)
        return _run("backward", (grad, y), axes[0], where, out, log)


def softmax_backward(
    xp: Any, grad: Any, y: Any, axes: tuple[int, ...], where: Any = None, out: Any = None
) -> Any:
    """``y * (grad - sum(grad * y))`` in one pass over ``grad`` and ``y`` (rows on chip)."""
    return _backward(xp, grad, y, axes, where, out, log=False)


def log_softmax_backward(
    xp: Any, grad: Any, y: Any, axes: tuple[int, ...], where: Any = None, out: Any = None
) -> Any:
    """``grad - exp(y) * sum(grad)`` in one pass over ``grad`` and ``y`` (rows on chip)."""
    return _backward(xp, grad, y, axes, where, out, log=True)


# ---------------------------------------------------------------------- cross-entropy
class _Samples:
    """A cross-entropy call as the CUDA kernels take it: logits ``(rows, classes)``
    C-contiguous, int64 targets ``(rows,)``, weights in the computation's dtype."""

    def __init__(self, logits: Any, target: Any, axis: int, opts: dict[str, Any]) -> None:
        self.dtype = _dtype_name(logits)
        self.acc = _acc(self.dtype)
        self.classes = logits.shape[axis]
        moved = cupy.moveaxis(logits, axis, -1)
        self.moved_shape = moved.shape
        self.sample_shape = moved.shape[:-1]
        self.rows = math.prod(self.sample_shape)
        self.logits = cupy.ascontiguousarray(moved).reshape(self.rows, self.classes)
        self.target = cupy.ascontiguousarray(target.reshape(self.rows), dtype=np.int64)
        weight = opts["weight"]
        self.weight = None if weight is None else cupy.ascontiguousarray(weight, dtype=self.acc)
        self.ignore = opts["ignore_index"]
        self.eps = self.acc(opts["label_smoothing"])
        self.vec = geometry.vector_width(self.dtype, self.classes, _aligned(self.logits))
        self.plan = geometry.cross_entropy_plan(
            self.rows, self.classes, self.dtype, self.vec, limits(logits.device.id)
        )

    def options(self) -> tuple[Any, ...]:
        """The kernels' trailing arguments."""
        return (
            np.int64(self.rows),
            np.int64(self.classes),
            np.int32(self.weight is not None),
            np.int32(self.ignore is not None),
            np.int64(0 if self.ignore is None else self.ignore),
            self.eps,
        )

    def denominator(self) -> Any:
        """reduction="mean"'s divisor: the summed weight of the counted samples."""
        t = self.target
        counted = (t >= 0) & (t < self.classes)
        if self.ignore is not None:
            counted &= t != self.ignore
        if self.weight is None:
            return cupy.count_nonzero(counted).astype(self.acc)
        w_t = self.weight[cupy.where(counted, t, 0)]
        return cupy.where(counted, w_t, 0).sum(dtype=self.acc)


def _ce_fused(logits: Any, opts: dict[str, Any]) -> bool:
    return bool(opts["index_target"]) and _dtype_name(logits) is not None


def cross_entropy(xp: Any, logits: Any, target: Any, axis: int, **opts: Any) -> Any:
    """Cross-entropy with class indices: a block per sample reads its logits once (twice
    with label smoothing) and writes its loss; the reduction is CuPy's."""
    if not _ce_fused(logits, opts):
        return generic.cross_entropy(xp, logits, target, axis, **opts)
    with logits.device:
        s = _Samples(logits, target, axis, opts)
        per = cupy.empty(s.rows, s.acc)
        weight = s.logits if s.weight is None else s.weight
        launch(
            logits.device.id, s.plan.launches[0], (s.logits, s.target, weight, per, *s.options())
        )
        reduction = opts["reduction"]
        if reduction == "none":
            return per.reshape(s.sample_shape).astype(logits.dtype, copy=False)
        total = per.sum()
        if reduction == "mean":
            denom = s.denominator()
            total = cupy.where(denom == 0, 0, total / cupy.where(denom == 0, 1, denom))
        return total.astype(logits.dtype, copy=False)


def cross_entropy_backward(
    xp: Any, logits: Any, target: Any, grad: Any, axis: int, **opts: Any
) -> Any:
    """``grad * (softmax(logits) * sum(a) - a)``: a block per sample reads its logits
    once into shared memory where they fit (else twice: its statistics, then the
    gradient) and writes the gradient once."""
    if not _ce_fused(logits, opts):
        return generic.cross_entropy_backward(xp, logits, target, grad, axis, **opts)
    with logits.device:
        s = _Samples(logits, target, axis, opts)
        scale = cupy.asarray(grad, dtype=s.acc)
        if opts["reduction"] == "mean":
            denom = s.denominator()
            nothing = cupy.ascontiguousarray((denom == 0).reshape(1), dtype=np.int32)
            scale = scale / cupy.where(nothing[0] != 0, 1, denom)
        else:
            nothing = cupy.zeros(1, np.int32)
        scale = cupy.ascontiguousarray(
            cupy.broadcast_to(scale, s.sample_shape).reshape(s.rows), dtype=s.acc
        )
        weight = s.logits if s.weight is None else s.weight
        weight_sum = s.logits if s.weight is None else s.weight.sum(keepdims=True)
        dx = cupy.empty((s.rows, s.classes), logits.dtype)
        launch(
            logits.device.id,
            s.plan.launches[1],
            (s.logits, s.target, weight, weight_sum, scale, nothing, dx, *s.options()),
        )
        dx = cupy.moveaxis(dx.reshape(s.moved_shape), -1, axis)
        return dx if axis == logits.ndim - 1 else cupy.ascontiguousarray(dx)
