"""Softmax cross-entropy on NumPy arrays: the class axis moved last, blocks of rows, one
pass for the per-sample losses and, for the backward, the gradient rows in the same block."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._half import store
from ._limits import compute_dtype, lowest
from ._rows import BLOCK_BYTES, row_sum
from ._threads import ERRSTATE, run_blocks

__all__ = ["cross_entropy", "cross_entropy_backward"]


def _ce_rows(logits: np.ndarray, target: np.ndarray, axis: int, index_target: bool):
    """Logits as (R, C) rows (class axis last) and the target as (R,) or (R, C)."""
    x = np.moveaxis(logits, axis, -1)
    x2 = np.ascontiguousarray(x).reshape(-1, logits.shape[axis])
    if index_target:  # intp: comparisons with class counts cannot overflow a uint8
        return x2, target.reshape(-1).astype(np.intp, copy=False)
    return x2, np.ascontiguousarray(np.moveaxis(target, axis, -1)).reshape(x2.shape)


def _ce_block(x, t, w, opts, log_scratch, want_grad: bool):
    """Per-sample loss (R,) and, if asked, the unscaled gradient rows for a block."""
    ct = log_scratch.dtype
    eps = opts["label_smoothing"]
    n_classes = x.shape[1]
    z = log_scratch[: len(x)]
    np.copyto(z, x, casting="unsafe")
    m = np.maximum.reduce(z, axis=1, keepdims=True, initial=lowest(ct))
    np.subtract(z, m, out=z)
    e = np.exp(z)
    s = row_sum(e)
    np.subtract(z, np.log(s), out=z)  # z = log p
    rows = np.arange(len(x))
    if opts["index_target"]:
        ignore = opts["ignore_index"]
        keep = np.ones(len(x), dtype=bool) if ignore is None else t != ignore
        bad = ((t < 0) | (t >= n_classes)) & keep
        tt = np.where(keep & ~bad, t, 0)
        a = np.zeros_like(z)
        a[rows, tt] = (1.0 - eps) * (1.0 if w is None else w[tt])
        if eps:
            a += eps / n_classes * (1.0 if w is None else w)
        a[~keep | bad] = 0.0
        counted = np.where(keep & ~bad, 1.0 if w is None else w[tt], 0.0)
        wsum = np.add.reduce(counted, dtype=np.promote_types(ct, np.float64))
    else:
        keep = np.ones(len(x), dtype=bool)
        bad = np.zeros(len(x), dtype=bool)
        a = t.astype(ct, copy=True)
        if eps:
            a *= 1.0 - eps
            a += eps / n_classes
        if w is not None:
            a *= w
        wsum = float(len(x))
    terms = np.where(a != 0, a * z, 0.0)
    per = -np.add.reduce(terms, axis=1)
    per[~keep] = 0.0
    per[bad] = np.nan
    grad = None
    if want_grad:
        np.divide(e, s, out=e)  # p
        grad = e * np.add.reduce(a, axis=1, keepdims=True) - a
        grad[~keep] = 0.0
        grad[bad] = np.nan
    return per, grad, wsum


def _ce(logits, target, axis, opts, grad=None, want_grad=False):
    x2, t2 = _ce_rows(logits, target, axis, opts["index_target"])
    ct = compute_dtype(logits.dtype)
    w = None if opts["weight"] is None else opts["weight"].astype(ct, copy=False)
    rows, n = x2.shape
    per_rows = max(1, BLOCK_BYTES // max(1, n * ct.itemsize))
    losses = np.empty(rows, dtype=ct)
    # the gradient in the compute dtype: float16 is scaled in float32, rounded once at the end
    dx2 = np.empty(x2.shape, dtype=ct) if want_grad else None

    def block(b: int, scratch: np.ndarray) -> float:
        lo, hi = b * per_rows, min(rows, (b + 1) * per_rows)
        per, g, wsum = _ce_block(x2[lo:hi], t2[lo:hi], w, opts, scratch, want_grad)
        losses[lo:hi] = per
        if want_grad:
            dx2[lo:hi] = g
        return wsum

    wsums = run_blocks(
        block,
        -(-rows // per_rows) if rows else 0,
        x2.nbytes,
        lambda: np.empty((min(per_rows, rows), n), dtype=ct),
    )
    # block by block, in block order: the same bits whatever the thread count (long
    # double sums stay long double)
    acc = np.promote_types(ct, np.float64)
    return losses, dx2, np.add.reduce(np.asarray(wsums, dtype=acc)), x2.shape


def cross_entropy(xp: Any, logits, target, axis, **opts) -> np.ndarray:
    """Fused softmax cross-entropy: the NumPy backend's ``cross_entropy`` kernel.

    The class axis is moved last and the per-sample losses computed in cache-sized blocks
    of rows, then reduced block by block in order (the same bits whatever the thread
    count). An out-of-range class index gives NaN (Dask's chunks reach here unchecked;
    for NumPy input the public function raises `IndexError` first). It takes validated
    arguments only: call it through `softmax_dispatch.softmax_cross_entropy`.

    Parameters
    ----------
    xp : module
        The array namespace the dispatcher resolved (``array_api_compat.numpy``); unused,
        part of the kernel signature every backend shares.
    logits : numpy.ndarray
        Real floating scores, at least one class along ``axis``.
    target : numpy.ndarray
        Integer class indices (the logits' shape without ``axis``) or real floating class
        probabilities (the logits' shape), as ``index_target`` says.
    axis : int
        The non-negative class axis.
    **opts
        Keyword-only, all required: ``weight`` (per-class weights of shape
        ``(n_classes,)`` or ``None``), ``ignore_index`` (int or ``None``),
        ``label_smoothing`` (float in [0, 1]), ``reduction`` (``"mean"``, ``"sum"`` or
        ``"none"``) and ``index_target`` (bool: whether ``target`` holds class indices).

    Returns
    -------
    numpy.ndarray
        The loss in the logits' dtype: 0-d for "mean" and "sum", per-sample losses (the
        logits' shape without ``axis``) for "none".

    See Also
    --------
    softmax_dispatch.softmax_cross_entropy : The public function, with the semantics.

    Examples
    --------
    >>> import numpy as np, array_api_compat.numpy as xp
    >>> from softmax_dispatch_numpy import _kernels
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]])
    >>> opts = dict(weight=None, ignore_index=None, label_smoothing=0.0, reduction="none",
    ...             index_target=True)
    >>> np.round(_kernels.cross_entropy(xp, logits, np.array([0, 2]), 1, **opts), 4)
    array([0.2413, 1.0986])
    """
    losses, _, wsum, _ = _ce(logits, target, axis, opts)
    sample_shape = logits.shape[:axis] + logits.shape[axis + 1 :]
    red = opts["reduction"]
    with np.errstate(**ERRSTATE):
        if red == "none":
            return losses.reshape(sample_shape).astype(logits.dtype, copy=False)
        total = losses.sum(dtype=np.promote_types(losses.dtype, np.float64))
        if red == "mean":
            total = total / wsum if wsum else total * 0.0
    return np.asarray(total, dtype=logits.dtype)


def cross_entropy_backward(xp: Any, logits, target, grad, axis, **opts) -> np.ndarray:
    """Fused gradient of the cross-entropy with respect to the logits, times ``grad``.

    The NumPy backend's ``cross_entropy_backward`` kernel: ``softmax(logits) * sum(a) - a``
    per sample (``a`` the weighted, smoothed target), in the same blocks of rows as
    `cross_entropy`, scaled by ``grad`` and, for "mean", by the summed weight. Ignored
    samples get exactly 0. It takes validated arguments only: call it through
    `softmax_dispatch.softmax_cross_entropy_backward`.

    Parameters
    ----------
    xp : module
        The array namespace the dispatcher resolved (``array_api_compat.numpy``); unused,
        part of the kernel signature every backend shares.
    logits : numpy.ndarray
        Real floating scores, at least one class along ``axis``.
    target : numpy.ndarray
        Integer class indices (the logits' shape without ``axis``) or real floating class
        probabilities (the logits' shape), as ``index_target`` says.
    grad : float or numpy.ndarray
        Upstream gradient of the loss: a scalar, or for "none" a per-sample array.
    axis : int
        The non-negative class axis.
    **opts
        Keyword-only, all required: ``weight`` (per-class weights of shape
        ``(n_classes,)`` or ``None``), ``ignore_index`` (int or ``None``),
        ``label_smoothing`` (float in [0, 1]), ``reduction`` (``"mean"``, ``"sum"`` or
        ``"none"``) and ``index_target`` (bool: whether ``target`` holds class indices).

    Returns
    -------
    numpy.ndarray
        The gradient with respect to ``logits``, the logits' shape and dtype.

    See Also
    --------
    softmax_dispatch.softmax_cross_entropy_backward : The public function.

    Examples
    --------
    >>> import numpy as np, array_api_compat.numpy as xp
    >>> from softmax_dispatch_numpy import _kernels
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]])
    >>> opts = dict(weight=None, ignore_index=None, label_smoothing=0.0, reduction="none",
    ...             index_target=True)
    >>> np.round(_kernels.cross_entropy_backward(xp, logits, np.array([0, 2]), 1.0, 1, **opts), 4)
    array([[-0.2144,  0.1753,  0.0391],
           [ 0.3333,  0.3333, -0.6667]])
    """
    _, dx2, wsum, _ = _ce(logits, target, axis, opts, want_grad=True)
    red = opts["reduction"]
    with np.errstate(**ERRSTATE):
        g = np.asarray(grad, dtype=dx2.dtype)
        np.multiply(dx2, g.reshape(-1, 1) if red == "none" and g.ndim else g, out=dx2)
        if red == "mean":
            np.divide(dx2, wsum, out=dx2) if wsum else np.multiply(dx2, 0.0, out=dx2)
        if opts["index_target"] and opts["ignore_index"] is not None:
            # exact zeros for ignored samples, even where grad was inf or NaN
            dx2[target.reshape(-1).astype(np.intp) == opts["ignore_index"]] = 0.0
    moved = logits.shape[:axis] + logits.shape[axis + 1 :] + (logits.shape[axis],)
    dx = np.moveaxis(dx2.reshape(moved), -1, axis)
    result = np.empty(logits.shape, logits.dtype)
    store(result, dx)
    return result
