"""The compiled kernels' Python side: each op's arrays as (P, N, Q) views for the
compiled module `_native`, shared among the backend's threads (`_threads`), with the
pure-NumPy kernels (`_kernels`) for what the module does not take.

Layouts. Every array is seen as (P, N, Q): N the softmax (or class) axes merged into one,
P the axes before, Q the axes after, each with its own strides. Where N has unit stride
the *rows* kernels run (vectors along a row: the last axis of a C-contiguous array);
where Q has unit stride the *columns* kernels run (vectors across Q neighbouring
columns, walking down N: a non-last axis, with no transposed copy). A fresh result takes
the input's memory layout (``numpy.empty_like``, as NumPy's ufuncs do), so a transposed
input runs without a copy too. Arrays that fit neither (several non-adjacent softmax
axes, strides that do not merge) are copied to a C-contiguous layout first.

What stays on the pure-NumPy kernels: dtypes other than float16/32/64 (long double),
the other byte order, and ``axes=()``.

Each call is one call into the module (`fast_forward` / `fast_backward` for the common
call: no mask, no ``out=``, trailing axes, C-contiguous), which runs with the GIL
released and shares the rows among its own threads (``_csrc/pool.h``; the pure-NumPy
kernels use `_threads`, so no call uses both). A row's result never depends on which
thread computed it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from . import _kernels as _pure
from . import _native
from ._crossentropy import cross_entropy as _pure_ce
from ._crossentropy import cross_entropy_backward as _pure_ce_backward
from ._threads import ERRSTATE

__all__ = [
    "cross_entropy",
    "cross_entropy_backward",
    "log_softmax",
    "log_softmax_backward",
    "softmax",
    "softmax_backward",
]

_fast_forward = _native.fast_forward
_fast_backward = _native.fast_backward

#: dtype -> the module's dtype code (native byte order only)
_CODE = {np.dtype(np.float16): 0, np.dtype(np.float32): 1, np.dtype(np.float64): 2}
_FWD_ROWS, _FWD_COLS, _BWD_ROWS, _BWD_COLS = 0, 1, 2, 3


# ----------------------------------------------------------------------------- views
def _merged(shape: tuple[int, ...], strides: tuple[int, ...]) -> tuple[int, int] | None:
    """(size, element stride) of ``shape`` merged into one axis, or None where the
    strides do not merge (dimensions of size 1 take any stride: merged to size 1, the
    axis has unit stride)."""
    dims = [(n, s) for n, s in zip(shape, strides) if n != 1]
    if not dims:
        return 1, 1
    size, stride = dims[-1]
    for n, s in reversed(dims[:-1]):
        if s != stride * size:
            return None
        size *= n
    return size, stride


Geometry = tuple[tuple[int, int, int], tuple[int, int, int]]


def geometry(a: np.ndarray, lo: int, hi: int) -> Geometry | None:
    """``((P, N, Q), (sp, sn, sq))`` of ``a`` with axes ``lo..hi-1`` as N, strides in
    elements, or None where they do not merge."""
    item = a.itemsize
    if any(s % item for s in a.strides):
        return None
    st = tuple(s // item for s in a.strides)
    parts = [_merged(a.shape[i:j], st[i:j]) for i, j in ((0, lo), (lo, hi), (hi, a.ndim))]
    if None in parts:
        return None
    (p, sp), (n, sn), (q, sq) = parts  # type: ignore[misc]
    return (p, n, q), (sp, sn, sq)


def _span(axes: tuple[int, ...]) -> tuple[int, int] | None:
    """The softmax axes as one run ``lo..hi-1`` of adjacent axes, or None."""
    lo, hi = min(axes), max(axes) + 1
    return (lo, hi) if hi - lo == len(axes) else None


def _like(a: np.ndarray, dtype: Any = None) -> np.ndarray:
    return np.empty_like(a, dtype=dtype)  # a fresh array in a's layout (order="K")


Strides = tuple[int, int, int]


def _swapped(s: Strides) -> Strides:
    return s[2], s[1], s[0]


class Plan(NamedTuple):
    kind: str  # "rows" or "cols"
    shape: Strides  # (P, N, Q)
    strides: list[Strides]  # of each array, in elements
    swapped: bool  # P and Q traded places (the unit stride was along P)


def _plan(arrays: list[np.ndarray], lo: int, hi: int) -> Plan | None:
    """A kernel that takes every array as it is: "rows" (unit stride along N), "cols"
    (unit stride along Q; where the unit stride is along P, as in a transposed matrix, P
    and Q trade places), or None."""
    geos = [geometry(a, lo, hi) for a in arrays]
    if any(g is None for g in geos):
        return None
    shape = geos[0][0]  # type: ignore[index]
    strides = [g[1] for g in geos]  # type: ignore[index]
    if all(st[1] == 1 for st in strides):
        return Plan("rows", shape, strides, False)
    if shape[2] > 1 and all(st[2] == 1 for st in strides):
        return Plan("cols", shape, strides, False)
    if shape[0] > 1 and all(st[0] == 1 for st in strides):
        return Plan("cols", _swapped(shape), [_swapped(st) for st in strides], True)
    return None


def _mask_view(mask: np.ndarray, like: np.ndarray, lo: int, hi: int, plan: Plan):
    """The mask (broadcast to ``like``'s shape) and its strides in the plan's (P, N, Q):
    stride 0 or 1 along the vector axis, or else a boolean copy in ``like``'s layout."""
    m = np.broadcast_to(mask, like.shape)
    for attempt in (m, None):
        if attempt is None:
            m = _like(like, bool)
            np.copyto(m, mask)
        g = geometry(m, lo, hi)
        if g is None:
            continue
        st = _swapped(g[1]) if plan.swapped else g[1]
        if st[1 if plan.kind == "rows" else 2] in (0, 1):
            return m, st
    raise AssertionError("a mask in the input's layout fits its plan")  # pragma: no cover


# --------------------------------------------------------------------------- forward
def _supported(*arrays: np.ndarray | None) -> bool:
    return all(a is None or a.dtype.newbyteorder("=") in _CODE for a in arrays)


def _forward(x: np.ndarray, axes, where, out, log: bool) -> np.ndarray:
    span = _span(axes) if axes else None
    if span is None or not _supported(x, out):
        return _pure._forward(x, axes, where, out, log)
    if _pure._foreign(x, out):  # the other byte order: computed natively, handed back as is
        return _pure._deliver(_forward(_pure._native(x), axes, where, None, log), x.dtype, out)
    if _pure._partial_overlap(out, (x,), where):
        np.copyto(out, _forward(x, axes, where, None, log))
        return out
    lo, hi = span
    y = _like(x) if out is None else out
    plan = _plan([x, y], lo, hi)
    if plan is None:  # x's (or out's) layout does not suit: a copy in C order
        if x.flags.c_contiguous and (out is None or out.flags.c_contiguous):
            return _pure._forward(x, axes, where, out, log)  # (not reached: C order suits)
        res = _forward(np.ascontiguousarray(x), axes, where, None, log)
        if out is None:
            return res
        np.copyto(out, res)
        return out
    kind, shape, (sx, sy), _ = plan
    m, sm = (None, (0, 0, 0)) if where is None else _mask_view(where, x, lo, hi, plan)
    code = _FWD_ROWS if kind == "rows" else _FWD_COLS
    _native.norm(code, x, None, y, m, shape, sx, sx, sy, sm, log)
    return y


def _backward(grad, y, axes, where, out, log: bool) -> np.ndarray:
    span = _span(axes) if axes else None
    if span is None or not _supported(grad, y, out) or grad.dtype != y.dtype:
        return _pure._backward(grad, y, axes, where, out, log)
    if _pure._foreign(grad, y, out):
        d = _backward(_pure._native(grad), _pure._native(y), axes, where, None, log)
        return _pure._deliver(d, y.dtype, out)
    if _pure._partial_overlap(out, (grad, y), where):
        np.copyto(out, _backward(grad, y, axes, where, None, log))
        return out
    lo, hi = span
    d = _like(y) if out is None else out
    plan = _plan([grad, y, d], lo, hi)
    if plan is None:
        if grad.flags.c_contiguous and y.flags.c_contiguous and out is None:
            return _pure._backward(grad, y, axes, where, out, log)  # (not reached)
        res = _backward(np.ascontiguousarray(grad), np.ascontiguousarray(y), axes, where, None, log)
        if out is None:
            return res
        np.copyto(out, res)
        return out
    kind, shape, (sg, sy, sd), _ = plan
    m, sm = (None, (0, 0, 0)) if where is None else _mask_view(where, y, lo, hi, plan)
    code = _BWD_ROWS if kind == "rows" else _BWD_COLS
    _native.norm(code, grad, y, d, m, shape, sg, sy, sd, sm, log)
    return d


def softmax(xp: Any, x: np.ndarray, axes, where=None, out=None) -> np.ndarray:
    """The NumPy backend's ``softmax`` kernel, compiled (same contract as
    `softmax_dispatch_numpy._kernels.softmax`).

    >>> import numpy as np, array_api_compat.numpy as xp
    >>> np.round(softmax(xp, np.array([[1.0, 2.0, 3.0]]), (1,)), 4)
    array([[0.09  , 0.2447, 0.6652]])
    """
    if where is None and out is None:
        y = _fast_forward(x, axes, False)
        if y is not None:
            return y
    return _forward(x, axes, where, out, False)


def log_softmax(xp: Any, x: np.ndarray, axes, where=None, out=None) -> np.ndarray:
    """The NumPy backend's ``log_softmax`` kernel, compiled.

    >>> import numpy as np, array_api_compat.numpy as xp
    >>> np.round(log_softmax(xp, np.array([[1.0, 2.0, 3.0]]), (1,)), 4)
    array([[-2.4076, -1.4076, -0.4076]])
    """
    if where is None and out is None:
        y = _fast_forward(x, axes, True)
        if y is not None:
            return y
    return _forward(x, axes, where, out, True)


def softmax_backward(xp: Any, grad, y, axes, where=None, out=None) -> np.ndarray:
    """The NumPy backend's ``softmax_backward`` kernel, compiled.

    >>> import numpy as np, array_api_compat.numpy as xp
    >>> y = softmax(xp, np.array([[1.0, 2.0, 3.0]]), (1,))
    >>> np.round(softmax_backward(xp, np.array([[1.0, 0.0, 0.0]]), y, (1,)), 4)
    array([[ 0.0819, -0.022 , -0.0599]])
    """
    if where is None and out is None:
        d = _fast_backward(grad, y, axes, False)
        if d is not None:
            return d
    return _backward(grad, y, axes, where, out, False)


def log_softmax_backward(xp: Any, grad, y, axes, where=None, out=None) -> np.ndarray:
    """The NumPy backend's ``log_softmax_backward`` kernel, compiled.

    >>> import numpy as np, array_api_compat.numpy as xp
    >>> y = log_softmax(xp, np.array([[1.0, 2.0, 3.0]]), (1,))
    >>> np.round(log_softmax_backward(xp, np.array([[1.0, 0.0, 0.0]]), y, (1,)), 4)
    array([[ 0.91  , -0.2447, -0.6652]])
    """
    if where is None and out is None:
        d = _fast_backward(grad, y, axes, True)
        if d is not None:
            return d
    return _backward(grad, y, axes, where, out, True)


# ---------------------------------------------------------------------- cross-entropy
class _CE:
    """One cross-entropy call laid out for the module: logits (and probability target)
    as (P, C, Q) views of one orientation, class indices as int64 (P, Q)."""

    def __init__(self, logits: np.ndarray, target: np.ndarray, axis: int, opts: dict[str, Any]):
        index = opts["index_target"]
        if not index:
            target = target.astype(logits.dtype, copy=False)  # (see _ce_supported)
        plan = _plan([logits] if index else [logits, target], axis, axis + 1)
        if plan is None:  # neither orientation fits: C-contiguous copies
            logits = np.ascontiguousarray(logits)
            if not index:
                target = np.ascontiguousarray(target)
            plan = _plan([logits] if index else [logits, target], axis, axis + 1)
        kind, shape, strides, self.swapped = plan  # type: ignore[misc]
        self.logits, self.kind, self.axis = logits, kind, axis
        self.shape, self.sx = shape, strides[0]
        p, c, q = shape
        if index:
            t = target.astype(np.int64, copy=False)
            # the sample axes (the logits' without the class axis) merged as (P, 1, Q)
            gt = geometry(np.expand_dims(t, axis), axis, axis + 1)
            if gt is None:
                t = np.ascontiguousarray(t)
                gt = geometry(np.expand_dims(t, axis), axis, axis + 1)
            st = gt[1]  # type: ignore[index]
            self.target, self.st = t, _swapped(st) if self.swapped else st
        else:
            self.target, self.st = target, strides[1]
        self.ct = np.dtype(np.float64 if logits.dtype == np.float64 else np.float32)
        w = opts["weight"]
        self.weight = None if w is None else np.ascontiguousarray(w, dtype=self.ct)
        self.wtotal = float(c) if w is None else float(np.add.reduce(self.weight, dtype=np.float64))
        self.opts = opts
        self.samples = p * q

    def samples_of(self, a: np.ndarray) -> np.ndarray:
        """Per-sample values in the kernel's order (p * Q + q) in the samples' C order."""
        p, _, q = self.shape
        return np.ascontiguousarray(a.reshape(p, q).T).reshape(-1) if self.swapped else a

    def kernel_order(self, a: np.ndarray) -> np.ndarray:
        """Per-sample values in the samples' C order, in the kernel's order."""
        p, _, q = self.shape
        return np.ascontiguousarray(a.reshape(q, p).T).reshape(-1) if self.swapped else a

    def run(self, loss, dx, sdx, scale, scale1: float) -> float:
        """The losses into ``loss`` (and the gradient into ``dx``); the counted samples'
        summed weight. ``loss`` None: only that sum, from the targets."""
        o = self.opts
        return _native.ce(
            self.logits, self.target, self.weight, loss, dx, scale, self.shape, self.sx,
            self.st, sdx, o["index_target"], o["label_smoothing"], o["ignore_index"],
            self.wtotal, scale1, self.kind == "cols",
        )  # fmt: skip


def _ce_supported(logits: np.ndarray, target: np.ndarray, opts: dict[str, Any]) -> bool:
    """float16/32/64 logits; probabilities are read in the logits' dtype, so float16
    logits with wider probabilities stay on the pure kernels (which read them in
    float32), as do long double probabilities."""
    if logits.dtype not in _CODE:  # (the other byte order: converted by the callers)
        return False
    if opts["index_target"]:
        return True
    if logits.dtype == np.float16:
        return target.dtype == np.float16
    return target.dtype in _CODE


def cross_entropy(xp: Any, logits, target, axis, **opts) -> np.ndarray:
    """The NumPy backend's ``cross_entropy`` kernel, compiled (same contract as
    `softmax_dispatch_numpy._crossentropy.cross_entropy`).

    >>> import numpy as np, array_api_compat.numpy as xp
    >>> opts = dict(weight=None, ignore_index=None, label_smoothing=0.0, reduction="none",
    ...             index_target=True)
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]])
    >>> np.round(cross_entropy(xp, logits, np.array([0, 2]), 1, **opts), 4)
    array([0.2413, 1.0986])
    """
    if _pure._foreign(logits, target, opts["weight"]):
        args = (_pure._native(logits), _pure._native(target))
        weight = opts["weight"] if opts["weight"] is None else _pure._native(opts["weight"])
        loss = cross_entropy(xp, *args, axis, **{**opts, "weight": weight})
        return loss.astype(logits.dtype)
    if not _ce_supported(logits, target, opts):
        return _pure_ce(xp, logits, target, axis, **opts)
    c = _CE(logits, target, axis, opts)
    losses = np.empty(c.samples, c.ct)
    wsum = c.run(losses, None, (0, 0, 0), None, 0.0)
    losses = c.samples_of(losses)
    sample_shape = logits.shape[:axis] + logits.shape[axis + 1 :]
    red = opts["reduction"]
    with np.errstate(**ERRSTATE):
        if red == "none":
            return losses.reshape(sample_shape).astype(logits.dtype, copy=False)
        total = np.add.reduce(losses, dtype=np.float64)
        if red == "mean":
            total = total / wsum if wsum else total * 0.0
    return np.asarray(total, dtype=logits.dtype)


def cross_entropy_backward(xp: Any, logits, target, grad, axis, **opts) -> np.ndarray:
    """The NumPy backend's ``cross_entropy_backward`` kernel, compiled: one pass over the
    logits, the gradient scaled in the compute dtype (float32 for float16) and rounded once.

    >>> import numpy as np, array_api_compat.numpy as xp
    >>> opts = dict(weight=None, ignore_index=None, label_smoothing=0.0, reduction="none",
    ...             index_target=True)
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]])
    >>> np.round(cross_entropy_backward(xp, logits, np.array([0, 2]), 1.0, 1, **opts), 4)
    array([[-0.2144,  0.1753,  0.0391],
           [ 0.3333,  0.3333, -0.6667]])
    """
    if _pure._foreign(logits, target, opts["weight"]):
        args = (_pure._native(logits), _pure._native(target))
        weight = opts["weight"] if opts["weight"] is None else _pure._native(opts["weight"])
        dx = cross_entropy_backward(xp, *args, grad, axis, **{**opts, "weight": weight})
        return dx.astype(logits.dtype)
    if not _ce_supported(logits, target, opts):
        return _pure_ce_backward(xp, logits, target, grad, axis, **opts)
    c = _CE(logits, target, axis, opts)
    red = opts["reduction"]
    scale, scale1 = None, 0.0
    g = np.asarray(grad, dtype=np.float64)
    if red == "none" and g.ndim:
        scale = c.kernel_order(np.ascontiguousarray(g).reshape(-1))
    else:
        scale1 = float(g)
    if red == "mean":
        # the counted samples' weight: for class indices a pass over the targets only
        index = opts["index_target"]
        wsum = c.run(None, None, (0, 0, 0), None, 0.0) if index else float(c.samples)
        scale1 = scale1 / wsum if wsum else 0.0
    dx = _like(c.logits)
    sdx = geometry(dx, axis, axis + 1)[1]  # type: ignore[index]
    sdx = _swapped(sdx) if c.swapped else sdx
    losses = np.empty(c.samples, c.ct)
    c.run(losses, dx, sdx, scale, scale1)
    return dx
