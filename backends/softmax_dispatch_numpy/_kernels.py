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
``docs/numerics.md`` (batch invariance) for what holds for columns.
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
    """Fused softmax of a NumPy array over ``axes``: the NumPy backend's ``softmax`` kernel.

    Rows over trailing axes of a C-contiguous array are computed in cache-sized blocks, one
    read and one write of memory, in parallel (see the module docstring for the layouts).
    Like every kernel, it takes validated arguments only: call it through
    `softmax_dispatch.softmax` (with a NumPy array, the dispatcher hands off to it).

    Parameters
    ----------
    xp : module
        The array namespace the dispatcher resolved (``array_api_compat.numpy``); unused,
        part of the kernel signature every backend shares.
    x : numpy.ndarray
        Real floating input (any float dtype NumPy has, long double too; float16 is computed
        in float32), not zero-size, not a subclass: validated by the public function.
    axes : tuple of int
        Distinct non-negative axes to normalise over (``()``: each element on its own).
    where : numpy.ndarray of bool, optional
        Mask broadcastable to ``x``; masked entries give 0.
    out : numpy.ndarray, optional
        Array of ``x``'s shape and dtype to write the result into; it may share memory with
        ``x`` or the mask in any layout (the result goes through a temporary where blocks
        would read what they already wrote).

    Returns
    -------
    numpy.ndarray
        The softmax, ``x``'s shape and dtype: a fresh array, or ``out``.

    See Also
    --------
    softmax_dispatch.softmax : The public function, with the policies.

    Examples
    --------
    >>> import numpy as np, array_api_compat.numpy as xp
    >>> from softmax_dispatch_numpy import _kernels
    >>> x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    >>> np.round(_kernels.softmax(xp, x, (1,)), 4)
    array([[0.09  , 0.2447, 0.6652],
           [0.3333, 0.3333, 0.3333]])
    >>> np.round(_kernels.softmax(xp, x, (0,)), 4)  # a non-trailing axis
    array([[0.7311, 0.8808, 0.9526],
           [0.2689, 0.1192, 0.0474]])
    """
    return _forward(x, axes, where, out, log=False)


def log_softmax(xp: Any, x: np.ndarray, axes, where=None, out=None) -> np.ndarray:
    """Fused log_softmax of a NumPy array over ``axes``: the NumPy backend's kernel.

    Computed as ``(x - max) - log(sum(exp(x - max)))`` in the same layouts as `softmax`.
    Like every kernel, it takes validated arguments only: call it through
    `softmax_dispatch.log_softmax` (with a NumPy array, the dispatcher hands off to it).

    Parameters
    ----------
    xp : module
        The array namespace the dispatcher resolved (``array_api_compat.numpy``); unused,
        part of the kernel signature every backend shares.
    x : numpy.ndarray
        Real floating input (any float dtype NumPy has, long double too; float16 is computed
        in float32), not zero-size, not a subclass: validated by the public function.
    axes : tuple of int
        Distinct non-negative axes to normalise over (``()``: each element on its own).
    where : numpy.ndarray of bool, optional
        Mask broadcastable to ``x``; masked entries give ``-inf``.
    out : numpy.ndarray, optional
        Array of ``x``'s shape and dtype to write the result into; it may share memory with
        ``x`` or the mask in any layout (the result goes through a temporary where blocks
        would read what they already wrote).

    Returns
    -------
    numpy.ndarray
        The log-softmax, ``x``'s shape and dtype: a fresh array, or ``out``.

    See Also
    --------
    softmax_dispatch.log_softmax : The public function, with the policies.

    Examples
    --------
    >>> import numpy as np, array_api_compat.numpy as xp
    >>> from softmax_dispatch_numpy import _kernels
    >>> x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    >>> np.round(_kernels.log_softmax(xp, x, (1,)), 4)
    array([[-2.4076, -1.4076, -0.4076],
           [-1.0986, -1.0986, -1.0986]])
    >>> np.round(_kernels.log_softmax(xp, x, (1,), np.array([True, True, False])), 4)
    array([[-1.3133, -0.3133,    -inf],
           [-0.6931, -0.6931,    -inf]])
    """
    return _forward(x, axes, where, out, log=True)


def softmax_backward(xp: Any, grad, y, axes, where=None, out=None) -> np.ndarray:
    """Fused softmax VJP: ``y * (grad - sum(grad * y))`` row by row.

    The NumPy backend's ``softmax_backward`` kernel: the full vector-Jacobian product of
    softmax from its output ``y``, in cache-sized blocks of rows.
    Like every kernel, it takes validated arguments only: call it through
    `softmax_dispatch.softmax_backward` (with a NumPy array, the dispatcher hands off to it).

    Parameters
    ----------
    xp : module
        The array namespace the dispatcher resolved (``array_api_compat.numpy``); unused,
        part of the kernel signature every backend shares.
    grad : numpy.ndarray
        Upstream gradient, ``y``'s shape, cast to ``y``'s dtype by the public function.
    y : numpy.ndarray
        The forward's output, real floating.
    axes : tuple of int
        Distinct non-negative axes of the forward call.
    where : numpy.ndarray of bool, optional
        The forward call's mask, broadcastable to ``y``; masked entries get exactly 0.
    out : numpy.ndarray, optional
        Array of ``y``'s shape and dtype to write the gradient into; it may be ``grad`` or
        ``y`` itself, or overlap them.

    Returns
    -------
    numpy.ndarray
        The gradient with respect to the forward's input, ``y``'s shape and dtype: a fresh
        array, or ``out``.

    See Also
    --------
    softmax_dispatch.softmax_backward : The public function.

    Examples
    --------
    >>> import numpy as np, array_api_compat.numpy as xp
    >>> from softmax_dispatch_numpy import _kernels
    >>> y = _kernels.softmax(xp, np.array([[1.0, 2.0, 3.0]]), (1,))
    >>> np.round(_kernels.softmax_backward(xp, np.array([[1.0, 0.0, 0.0]]), y, (1,)), 4)
    array([[ 0.0819, -0.022 , -0.0599]])
    """
    return _backward(grad, y, axes, where, out, log=False)


def log_softmax_backward(xp: Any, grad, y, axes, where=None, out=None) -> np.ndarray:
    """Fused log_softmax VJP: ``grad - exp(y) * sum(grad)`` row by row.

    The NumPy backend's ``log_softmax_backward`` kernel, from the forward's output ``y``.
    Like every kernel, it takes validated arguments only: call it through
    `softmax_dispatch.log_softmax_backward` (with a NumPy array, the dispatcher hands off to it).

    Parameters
    ----------
    xp : module
        The array namespace the dispatcher resolved (``array_api_compat.numpy``); unused,
        part of the kernel signature every backend shares.
    grad : numpy.ndarray
        Upstream gradient, ``y``'s shape, cast to ``y``'s dtype by the public function.
    y : numpy.ndarray
        The forward's output, real floating.
    axes : tuple of int
        Distinct non-negative axes of the forward call.
    where : numpy.ndarray of bool, optional
        The forward call's mask, broadcastable to ``y``; masked entries get exactly 0.
    out : numpy.ndarray, optional
        Array of ``y``'s shape and dtype to write the gradient into; it may be ``grad`` or
        ``y`` itself, or overlap them.

    Returns
    -------
    numpy.ndarray
        The gradient with respect to the forward's input, ``y``'s shape and dtype: a fresh
        array, or ``out``.

    See Also
    --------
    softmax_dispatch.log_softmax_backward : The public function.

    Examples
    --------
    >>> import numpy as np, array_api_compat.numpy as xp
    >>> from softmax_dispatch_numpy import _kernels
    >>> y = _kernels.log_softmax(xp, np.array([[1.0, 2.0, 3.0]]), (1,))
    >>> np.round(_kernels.log_softmax_backward(xp, np.array([[1.0, 0.0, 0.0]]), y, (1,)), 4)
    array([[ 0.91  , -0.2447, -0.6652]])
    """
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
