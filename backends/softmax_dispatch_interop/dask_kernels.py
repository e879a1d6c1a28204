"""Fused kernels for Dask arrays: rechunk so that each softmax row is whole in one chunk,
then one ``map_blocks`` task per block that runs the fused kernel of the backend owning
the chunks (NumPy's for NumPy chunks, CuPy's for CuPy chunks) through the public
functions. Row-chunked input gets exactly one task per block per op.

Nothing is computed while the graph is built: no value is read, no branch depends on
one. Where a whole row of the softmax axes would be larger than Dask's
``array.chunk-size`` (or its size is not known), the op stays on the generic kernels,
whose tree reductions need no whole row in memory.

Every block function is module-level (picklable), so the same graphs run on a
``dask.distributed`` cluster whose workers have this package installed.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import dask
import dask.array as da
from dask.utils import parse_bytes

import softmax_dispatch as sd
from softmax_dispatch import _ops

__all__ = [
    "cross_entropy",
    "cross_entropy_backward",
    "log_softmax",
    "log_softmax_backward",
    "softmax",
    "softmax_backward",
]

Array = Any


# ----------------------------------------------------------------------------- chunks
def _known(chunks: tuple[float, ...]) -> bool:
    return not any(math.isnan(c) for c in chunks)


def _whole_rows(x: Array, axes: tuple[int, ...]) -> Array | None:
    """``x`` with every softmax axis in one chunk, or ``None`` where a whole row would be
    larger than ``array.chunk-size`` (or of unknown size): then the generic path."""
    sizes = [x.shape[a] for a in axes]
    if any(math.isnan(s) for s in sizes):
        return None
    row_bytes = math.prod(sizes) * x.dtype.itemsize
    if row_bytes > parse_bytes(dask.config.get("array.chunk-size")):
        return None
    if all(len(x.chunks[a]) == 1 for a in axes):
        return x  # already whole: no task added
    spec: dict[int, Any] = {a: -1 for a in axes}
    for d in range(x.ndim):
        if d not in spec and _known(x.chunks[d]):
            spec[d] = "auto"  # an unknown axis is left as it is
    return x.rechunk(spec)


def _check_out(out: Any) -> None:
    """``out=`` is written by Dask's lazy item assignment, which needs known chunks."""
    if out is not None and not all(_known(c) for c in out.chunks):
        raise ValueError(
            "out= is a Dask array with unknown chunk sizes, which Dask's item assignment "
            "cannot write into; call out.compute_chunk_sizes() first, or use the returned "
            "array"
        )


def _like(a: Array, x: Array, label: str) -> Array:
    """``a`` (a Dask array or any array) chunked as ``x`` for a blockwise call; dimensions
    of size 1 stay size 1 (broadcast block by block)."""
    a = a if isinstance(a, da.Array) else da.asarray(a)
    if a.ndim < x.ndim:
        a = a[(None,) * (x.ndim - a.ndim)]
    if a.chunks == x.chunks:
        return a
    spec: dict[int, Any] = {}
    for d in range(x.ndim):
        if a.shape[d] == 1 and x.shape[d] != 1:
            continue
        if a.chunks[d] == x.chunks[d]:
            continue
        if not (_known(a.chunks[d]) and _known(x.chunks[d])):
            raise ValueError(
                f"{label} and the input have unknown chunk sizes along axis {d} that are "
                f"not the same chunks ({a.chunks[d]} vs {x.chunks[d]}); call "
                "compute_chunk_sizes() on both first"
            )
        spec[d] = x.chunks[d]
    return a.rechunk(spec) if spec else a


# ---------------------------------------------------------------------------- forward
def _forward_block(x: Array, *mask: Array, op: str, axes: tuple[int, ...]) -> Array:
    return getattr(sd, op)(x, axis=axes, where=mask[0] if mask else None)


def _forward(
    op: str, xp: ModuleType, x: Array, axes: tuple[int, ...], where: Any, out: Any
) -> Array:
    _check_out(out)
    whole = _whole_rows(x, axes)
    if whole is None:
        return getattr(_ops, op)(xp, x, axes, where)
    args = [whole] if where is None else [whole, _like(where, whole, "where")]
    return da.map_blocks(
        _forward_block, *args, op=op, axes=axes, dtype=x.dtype, meta=x._meta, token=f"sd-{op}"
    )


def softmax(
    xp: ModuleType, x: Array, axes: tuple[int, ...], where: Any = None, out: Any = None
) -> Array:
    return _forward("softmax", xp, x, axes, where, out)


def log_softmax(
    xp: ModuleType, x: Array, axes: tuple[int, ...], where: Any = None, out: Any = None
) -> Array:
    return _forward("log_softmax", xp, x, axes, where, out)


# --------------------------------------------------------------------------- backward
def _backward_block(grad: Array, y: Array, *mask: Array, op: str, axes: tuple[int, ...]) -> Array:
    return getattr(sd, op)(grad, y, axis=axes, where=mask[0] if mask else None)


def _backward(
    op: str, xp: ModuleType, grad: Array, y: Array, axes: tuple[int, ...], where: Any, out: Any
) -> Array:
    _check_out(out)
    whole = _whole_rows(y, axes)
    if whole is None:
        return getattr(_ops, op)(xp, grad, y, axes, where)
    args = [_like(grad, whole, "grad"), whole]
    if where is not None:
        args.append(_like(where, whole, "where"))
    return da.map_blocks(
        _backward_block, *args, op=op, axes=axes, dtype=y.dtype, meta=y._meta, token=f"sd-{op}"
    )


def softmax_backward(
    xp: ModuleType, grad: Array, y: Array, axes: tuple[int, ...], where: Any = None, out: Any = None
) -> Array:
    return _backward("softmax_backward", xp, grad, y, axes, where, out)


def log_softmax_backward(
    xp: ModuleType, grad: Array, y: Array, axes: tuple[int, ...], where: Any = None, out: Any = None
) -> Array:
    return _backward("log_softmax_backward", xp, grad, y, axes, where, out)


# ----------------------------------------------------------------------- cross-entropy
def _namespace_of(a: Array) -> ModuleType:
    import array_api_compat

    return array_api_compat.array_namespace(a)


def _safe_targets(
    xp: ModuleType, target: Array, n: int, ignore_index: int | None
) -> tuple[Array, Array]:
    """Class indices with the out-of-range ones (not ``ignore_index``) replaced by 0, and
    where they were: those samples get NaN, as on every array whose values are not read
    while the graph is built."""
    if target.dtype == xp.uint64:  # compared as it is; 2**64 - 1 is out of range, not -1
        bad = target >= n
        t = xp.astype(xp.where(bad, xp.zeros_like(target), target), xp.int64)
    else:
        bad = (target < 0) | (target >= n)
        t = target
    if ignore_index is not None:
        bad &= t != ignore_index
    return xp.where(bad, xp.zeros_like(t), t), bad


def _up(logits: Array) -> Array:
    """Blocks of 16-bit logits computed in float32, so that the sums over blocks are
    too; the final result is cast back."""
    return logits.astype("float32") if logits.dtype.itemsize < 4 else logits


def _ce_block(
    logits: Array, target: Array, *, axis: int, index: bool, weight: Any, options: dict[str, Any]
) -> Array:
    """Per-sample losses of one block (class axis kept, of size 1); NaN for bad indices."""
    xp = _namespace_of(logits)
    logits = _up(logits)
    if index:
        target, bad = _safe_targets(
            xp, xp.squeeze(target, axis=axis), logits.shape[axis], options["ignore_index"]
        )
    loss = sd.softmax_cross_entropy(
        logits, target, axis=axis, weight=weight, reduction="none", **options
    )
    if index:
        loss = xp.where(bad, xp.asarray(xp.nan, dtype=loss.dtype), loss)
    return xp.expand_dims(loss, axis=axis)


def _share_block(target: Array, *, n_classes: int, weight: Any, ignore_index: int | None) -> Array:
    """Each sample's share of reduction="mean"'s divisor: its class's weight (1 without
    weights) if it counts, else 0 (PyTorch's weighted mean)."""
    xp = _namespace_of(target)
    t, bad = _safe_targets(xp, target, n_classes, ignore_index)
    counted = ~bad if ignore_index is None else ~bad & (target != ignore_index)
    if weight is None:
        share = xp.ones(t.shape, dtype=xp.float64)
    else:
        w = xp.astype(xp.asarray(weight), xp.float64)
        t = xp.where(counted, t, xp.zeros_like(t))  # ignored: any valid index, then 0
        share = xp.reshape(xp.take(w, xp.reshape(t, (-1,))), t.shape)
    return xp.where(counted, share, xp.zeros_like(share))


def _ce_backward_block(
    logits: Array,
    target: Array,
    *grad: Array,
    axis: int,
    index: bool,
    weight: Any,
    scale: Any,
    options: dict[str, Any],
) -> Array:
    """``scale * grad * dL_i/dlogits`` for the samples of one block; NaN rows for bad
    indices. ``grad`` is a block of per-sample gradients (class axis of size 1) or absent."""
    xp = _namespace_of(logits)
    dtype = logits.dtype
    logits = _up(logits)
    g = xp.asarray(scale, dtype=logits.dtype)
    if grad:
        g = xp.squeeze(xp.astype(grad[0], logits.dtype), axis=axis) * g
    if index:
        target, bad = _safe_targets(
            xp, xp.squeeze(target, axis=axis), logits.shape[axis], options["ignore_index"]
        )
    dx = sd.softmax_cross_entropy_backward(
        logits, target, g, axis=axis, weight=weight, reduction="none", **options
    )
    if index:
        dx = xp.where(xp.expand_dims(bad, axis=axis), xp.asarray(xp.nan, dtype=dx.dtype), dx)
    return xp.astype(dx, dtype)


def _insert_axis(a: Array, axis: int) -> Array:
    """``a`` with a new axis of size 1 at ``axis`` (by indexing: works with unknown
    chunk sizes, where ``expand_dims`` reshapes)."""
    return a[(slice(None),) * axis + (None, ...)]


def _layout(logits: Array, target: Array, axis: int, index: bool) -> tuple[Array, Array]:
    """Logits with the class axis whole; the target chunked like them (class indices
    with a class axis of size 1, so that blocks line up)."""
    whole = _whole_rows(logits, (axis,))
    if whole is None:  # a row is larger than a chunk should be; it still must be whole
        whole = logits.rechunk({axis: -1})
    if index:
        t = target if isinstance(target, da.Array) else da.asarray(target)
        target = _like(_insert_axis(t, axis), whole, "target")
    else:
        target = _like(target, whole, "target")
    return whole, target


def _per_sample(
    whole: Array, tgt: Array, axis: int, weight: Any, options: dict[str, Any], index: bool
) -> Array:
    """Per-sample losses, lazily, with the class axis of size 1."""
    chunks = tuple((1,) if d == axis else c for d, c in enumerate(whole.chunks))
    return da.map_blocks(
        _ce_block,
        whole,
        tgt,
        axis=axis,
        index=index,
        weight=weight,
        options=options,
        chunks=chunks,
        dtype=_up(whole._meta).dtype,
        meta=_up(whole._meta),
        token="sd-cross-entropy",
    )


def _shares(whole: Array, tgt: Array, axis: int, weight: Any, options: dict[str, Any]) -> Array:
    """Per-sample shares of reduction="mean"'s divisor (index targets), lazily."""
    return da.map_blocks(
        _share_block,
        tgt,
        n_classes=whole.shape[axis],
        weight=weight,
        ignore_index=options["ignore_index"],
        dtype="float64",
        meta=_up(whole._meta).astype("float64"),
        token="sd-cross-entropy-count",
    )


def _sample_count(whole: Array, axis: int) -> Any:
    """The number of samples (probability targets' divisor), lazily where unknown."""
    n = math.prod(s for d, s in enumerate(whole.shape) if d != axis)
    if not math.isnan(n):
        return float(n)
    return da.ones_like(
        whole[tuple(slice(0, 1) if d == axis else slice(None) for d in range(whole.ndim))],
        dtype="float64",
    ).sum()


def cross_entropy(
    xp: ModuleType,
    logits: Array,
    target: Array,
    axis: int,
    *,
    weight: Any,
    ignore_index: int | None,
    label_smoothing: float,
    reduction: str,
    index_target: bool,
) -> Array:
    options = {"ignore_index": ignore_index, "label_smoothing": label_smoothing}
    whole, tgt = _layout(logits, target, axis, index_target)
    per = _per_sample(whole, tgt, axis, weight, options, index_target)
    if reduction == "none":
        return da.squeeze(per, axis=axis).astype(logits.dtype)
    if reduction == "sum":
        return per.sum().astype(logits.dtype)
    if index_target:  # one tree reduction for both sums
        pair = da.concatenate(
            [per.astype("float64"), _shares(whole, tgt, axis, weight, options)],
            axis=axis,
            allow_unknown_chunksizes=True,  # the same blocks: the unknown sizes line up
        )
        both = pair.sum(axis=tuple(d for d in range(pair.ndim) if d != axis))
        total, den = both[0], both[1]
    else:
        total, den = per.sum(), _sample_count(whole, axis)
    return da.where(den == 0, 0.0, total / da.where(den == 0, 1.0, den)).astype(logits.dtype)


def cross_entropy_backward(
    xp: ModuleType,
    logits: Array,
    target: Array,
    grad: Any,
    axis: int,
    *,
    weight: Any,
    ignore_index: int | None,
    label_smoothing: float,
    reduction: str,
    index_target: bool,
) -> Array:
    options = {"ignore_index": ignore_index, "label_smoothing": label_smoothing}
    whole, tgt = _layout(logits, target, axis, index_target)
    args = [whole, tgt]
    scale: Any = 1.0
    if reduction == "none" and not isinstance(grad, float) and grad.ndim:
        g = grad if isinstance(grad, da.Array) else da.asarray(grad)
        args.append(_like(_insert_axis(g, axis), whole, "grad"))
    else:
        scale = grad
    if reduction == "mean":
        if index_target:
            den = _shares(whole, tgt, axis, weight, options).sum()
        else:
            den = _sample_count(whole, axis)
        scale = da.where(den == 0, 0.0, scale / da.where(den == 0, 1.0, den))
    return da.map_blocks(
        _ce_backward_block,
        *args,
        axis=axis,
        index=index_target,
        weight=weight,
        scale=scale,
        options=options,
        dtype=logits.dtype,
        meta=whole._meta,
        token="sd-cross-entropy-backward",
    )
