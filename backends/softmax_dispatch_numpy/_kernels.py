"""The NumPy backend's fused kernels, one per op: each brings its arrays to a layout
(`_layout`) and hands them to the algorithm for it.

rows (`_rows`)
    the softmax axes are the trailing axes of a C-contiguous array: cache-sized blocks of
    rows, every step of the op while a block is in L2; memory sees one read and one write.
    Batch-invariant: a row's result never depends on the other rows.
columns (`_columns`)
    one non-trailing axis of a C-contiguous array, float32/float64, no mask: passes over
    contiguous chunks of whole rows, reductions vectorized across the columns.
anything else
    (several non-trailing axes, a mask or float16 on a non-trailing axis, non-contiguous
    input) is copied to the rows layout, computed, and put back.

The result is allocated fresh (``np.empty``), or written into ``out``. The softmax of
each distribution is the row algorithm's wherever it is computed as a row; see
``docs/user-guide.md`` for what holds for columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _columns, _rows
from ._crossentropy import cross_entropy, cross_entropy_backward
from ._half import store
from ._layout import as_columns, as_rows, moved, put_back
from ._limits import is_compute_dtype

__all__ = [
    "cross_entropy",
    "cross_entropy_backward",
    "log_softmax",
    "log_softmax_backward",
    "softmax",
    "softmax_backward",
]


def softmax(xp: Any, x: np.ndarray, axes, where=None, out=None) -> np.ndarray:
    """Fused softmax (see the module docstring for the layouts)."""
    return _forward(x, axes, where, out, log=False)


def log_softmax(xp: Any, x: np.ndarray, axes, where=None, out=None) -> np.ndarray:
    """Fused log_softmax."""
    return _forward(x, axes, where, out, log=True)


def softmax_backward(xp: Any, grad, y, axes, where=None, out=None) -> np.ndarray:
    """Fused softmax VJP: ``y * (grad - sum(grad * y))`` row by row."""
    return _backward(grad, y, axes, where, out, log=False)


def log_softmax_backward(xp: Any, grad, y, axes, where=None, out=None) -> np.ndarray:
    """Fused log_softmax VJP: ``grad - exp(y) * sum(grad)`` row by row."""
    return _backward(grad, y, axes, where, out, log=True)


def _forward(x: np.ndarray, axes, where, out, log: bool) -> np.ndarray:
    if (  # the common call, kept short: the last axis of a contiguous array, nothing else
        out is None
        and where is None
        and axes == (x.ndim - 1,)
        and is_compute_dtype(x.dtype)
        and x.flags.c_contiguous
    ):
        y = np.empty(x.shape, x.dtype)
        n = x.shape[-1]
        _rows.forward(x.reshape(-1, n), y.reshape(-1, n), None, log)
        return y
    if _foreign(x, out):  # the other byte order: computed natively, handed back as is
        return _deliver(_forward(_native(x), axes, where, None, log), x.dtype, out)
    if _partial_overlap(out, (x,), where):
        np.copyto(out, _forward(x, axes, where, None, log))
        return out
    mask = None if where is None else np.broadcast_to(where, x.shape)
    x2 = as_rows(x, axes)
    y = np.empty(x.shape, x.dtype) if out is None else out
    if x2 is not None and y.flags.c_contiguous:
        m2 = None if mask is None else mask.reshape(x2.shape)
        _rows.forward(x2, y.reshape(x2.shape), m2, log)
        return y
    cols = as_columns(x, axes)
    if cols is not None and mask is None and y.flags.c_contiguous and _columns.handles(x.dtype):
        _columns.forward(x.reshape(cols), y.reshape(cols), log)
        return y
    x2, perm = moved(x, axes)
    m2 = None if mask is None else moved(mask, axes)[0]
    y2 = np.empty_like(x2)
    _rows.forward(x2, y2, m2, log)
    return put_back(y2, x, perm, out)


def _backward(grad, y, axes, where, out, log: bool) -> np.ndarray:
    if _foreign(grad, y, out):  # as in `_forward`
        d = _backward(_native(grad), _native(y), axes, where, None, log)
        return _deliver(d, y.dtype, out)
    if _partial_overlap(out, (grad, y), where):
        np.copyto(out, _backward(grad, y, axes, where, None, log))
        return out
    mask = None if where is None else np.broadcast_to(where, y.shape)
    y2, g2 = as_rows(y, axes), as_rows(grad, axes)
    d = np.empty(y.shape, y.dtype) if out is None else out
    if y2 is not None and g2 is not None and d.flags.c_contiguous:
        inplace = out is not None and (
            np.may_share_memory(out, grad) or np.may_share_memory(out, y)
        )
        m2 = None if mask is None else mask.reshape(y2.shape)
        _rows.backward(g2, y2, d.reshape(y2.shape), m2, log, inplace)
        return d
    y2, perm = moved(y, axes)
    g2 = moved(grad, axes)[0]
    m2 = None if mask is None else moved(mask, axes)[0]
    d2 = np.empty_like(y2)
    _rows.backward(g2, y2, d2, m2, log, False)
    return put_back(d2, y, perm, out)


def _deliver(result: np.ndarray, dtype: np.dtype, out: np.ndarray | None) -> np.ndarray:
    """``result`` (computed in native byte order) as ``dtype``, or written into ``out``."""
    if out is None:
        if result.dtype == dtype:
            return result
        out = np.empty(result.shape, dtype=dtype)
    store(out, result)
    return out


def _partial_overlap(
    out: np.ndarray | None, inputs: tuple[np.ndarray, ...], mask: np.ndarray | None
) -> bool:
    """``out`` shares memory with an input without being laid out exactly on it, or with
    the mask at all (its bytes are not the result's): blocks written early would then be
    read later, so the result must go through a fresh array."""
    if out is None:
        return False
    if mask is not None and np.may_share_memory(mask, out):
        return True
    for a in inputs:
        same = (
            a.__array_interface__["data"][0] == out.__array_interface__["data"][0]
            and a.strides == out.strides
            and a.shape == out.shape
        )
        if not same and np.may_share_memory(a, out):
            return True
    return False


def _foreign(*arrays: np.ndarray | None) -> bool:
    """Any of ``arrays`` in the other byte order (a big-endian float32, say)."""
    return any(a is not None and not a.dtype.isnative for a in arrays)


def _native(a: np.ndarray) -> np.ndarray:
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))
