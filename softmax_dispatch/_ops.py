"""The softmax family, written once against the Python Array API standard.

Every function takes the namespace ``xp`` first and arrays that the public layer has
already validated: real floating dtypes, ``axes`` a tuple of distinct non-negative ints,
``where`` a boolean array broadcastable to the input (or None), no zero-size arrays.
No Python branching on array values, so ``jax.jit``, ``torch.autograd`` and lazy Dask
graphs pass through. ``out`` is accepted for signature compatibility with fused kernels
and ignored: the public layer copies the result into it.

float16 and bfloat16 are computed in float32 and returned in the input dtype. A row's
maximum is used as the shift only where it is finite, and a row's sum of ``exp`` only
where it is not 0: a row of all ``-inf`` gives NaN (the documented policy) without
computing ``-inf - -inf``, 0/0 or log(0), a fully masked row gives zeros, ``+inf`` or NaN
anywhere in a row makes that row NaN. No operation raises a floating-point flag on such
input, so NumPy-backed namespaces (and Dask, when it computes) emit no RuntimeWarning.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from ._validate import index_dtype_target

Array = Any

__all__ = [
    "cross_entropy",
    "cross_entropy_backward",
    "log_softmax",
    "log_softmax_backward",
    "softmax",
    "softmax_backward",
]


def _compute_dtype(xp: ModuleType, dtype: Any) -> Any:
    """float32 for 16-bit floats (fp32 accumulation), the dtype itself otherwise."""
    return xp.float32 if xp.finfo(dtype).bits < 32 else dtype


def _up(xp: ModuleType, a: Array, dtype: Any) -> Array:
    return a if a.dtype == dtype else xp.astype(a, dtype)


def _down(xp: ModuleType, a: Array, dtype: Any) -> Array:
    """``a`` (computed in float32) cast back to ``dtype``. Magnitudes the cast rounds to
    infinity become +-inf first: NumPy-backed namespaces would flag the overflow with a
    RuntimeWarning, and a documented result (-inf) is no news."""
    if a.dtype == dtype:
        return a
    fi = xp.finfo(dtype)
    if fi.bits < 32:
        big, eps = float(fi.max), float(fi.eps)
        limit = big + big * eps / (2 * (2 - eps))  # max + half its ulp: rounds to inf
        inf = xp.full_like(a, xp.inf)
        a = xp.where(a >= limit, inf, xp.where(a <= -limit, -inf, a))
    return xp.astype(a, dtype)


def _sum(xp: ModuleType, a: Array, axes: tuple[int, ...]) -> Array:
    # Reducing over no axes is the identity; some libraries read axis=() as "all axes".
    return xp.sum(a, axis=axes, keepdims=True) if axes else a


def _max(xp: ModuleType, a: Array, axes: tuple[int, ...]) -> Array:
    return xp.max(a, axis=axes, keepdims=True) if axes else a


def _any(xp: ModuleType, mask: Array, shape: tuple[int, ...], axes: tuple[int, ...]) -> Array:
    full = xp.broadcast_to(mask, shape)
    return xp.any(full, axis=axes, keepdims=True) if axes else full


def _shifted(xp: ModuleType, x: Array, axes: tuple[int, ...], where: Array | None) -> Array:
    """``x - max(x)`` over ``axes``, masked entries ``-inf``. A max of ``-inf`` (nothing
    finite) shifts by 0, so ``-inf - -inf`` never happens; a max of ``+inf`` by NaN, which
    the subtraction propagates quietly where ``inf - inf`` would raise NumPy's
    invalid-value flag (the row is NaN either way)."""
    if where is not None:
        x = xp.where(where, x, -xp.inf)
    m = _max(xp, x, axes)
    m = xp.where(m == -xp.inf, xp.zeros_like(m), xp.where(m == xp.inf, xp.full_like(m, xp.nan), m))
    return x - m


def _total(xp: ModuleType, e: Array, axes: tuple[int, ...], where: Array | None) -> Array:
    """``sum(e)`` over ``axes``: 1 for a fully masked row (its result is zeros, constant),
    NaN for a row of only ``-inf`` (its result is NaN, without computing 0/0 or log(0))."""
    s = _sum(xp, e, axes)
    if where is not None:
        s = xp.where(_any(xp, where, e.shape, axes), s, xp.ones_like(s))
    return xp.where(s == 0, xp.full_like(s, xp.nan), s)


def softmax(
    xp: ModuleType,
    x: Array,
    axes: tuple[int, ...],
    where: Array | None = None,
    out: Array | None = None,
) -> Array:
    """``exp(x - max) / sum(exp(x - max))``; masked entries 0 (whatever the rest of their
    row holds), fully masked rows 0."""
    dtype = x.dtype
    x = _up(xp, x, _compute_dtype(xp, dtype))
    e = xp.exp(_shifted(xp, x, axes, where))
    y = e / _total(xp, e, axes, where)
    if where is not None:  # 0 even where a NaN or +inf elsewhere in the row made e NaN
        y = xp.where(where, y, xp.zeros_like(y))
    return _down(xp, y, dtype)


def log_softmax(
    xp: ModuleType,
    x: Array,
    axes: tuple[int, ...],
    where: Array | None = None,
    out: Array | None = None,
) -> Array:
    """``(x - max) - log(sum(exp(x - max)))``; masked entries ``-inf``."""
    dtype = x.dtype
    x = _up(xp, x, _compute_dtype(xp, dtype))
    z = _shifted(xp, x, axes, where)
    y = z - xp.log(_total(xp, xp.exp(z), axes, where))
    if where is not None:
        # -inf - lse is -inf already, but it depends on x through lse: autodiff would send
        # the upstream gradient of masked outputs into x. Masked outputs are constants.
        y = xp.where(where, y, xp.full_like(y, -xp.inf))
    return _down(xp, y, dtype)


def softmax_backward(
    xp: ModuleType,
    grad: Array,
    y: Array,
    axes: tuple[int, ...],
    where: Array | None = None,
    out: Array | None = None,
) -> Array:
    """The vector-Jacobian product of softmax from its output: ``y * (g - sum(g * y))``.

    (Not the diagonal-only ``g * y * (1 - y)``.)
    """
    dtype = y.dtype
    ct = _compute_dtype(xp, dtype)
    g, y = _up(xp, grad, ct), _up(xp, y, ct)
    if where is not None:
        g = xp.where(where, g, xp.zeros_like(g))
    dx = y * (g - _sum(xp, g * y, axes))
    if where is not None:
        dx = xp.where(where, dx, xp.zeros_like(dx))
    return _down(xp, dx, dtype)


def log_softmax_backward(
    xp: ModuleType,
    grad: Array,
    y: Array,
    axes: tuple[int, ...],
    where: Array | None = None,
    out: Array | None = None,
) -> Array:
    """The vector-Jacobian product of log_softmax from its output: ``g - exp(y) * sum(g)``."""
    dtype = y.dtype
    ct = _compute_dtype(xp, dtype)
    g, y = _up(xp, grad, ct), _up(xp, y, ct)
    if where is not None:
        g = xp.where(where, g, xp.zeros_like(g))
    dx = g - xp.exp(y) * _sum(xp, g, axes)
    if where is not None:
        dx = xp.where(where, dx, xp.zeros_like(dx))
    return _down(xp, dx, dtype)


def _class_weights(
    xp: ModuleType,
    logits: Array,
    target: Array,
    axis: int,
    weight: Array | None,
    ignore_index: int | None,
    label_smoothing: float,
    index_target: bool,
) -> tuple[Array, Array, Array, Array]:
    """Per-class coefficients ``a`` with ``loss = -sum(a * log_softmax(logits))``.

    Returns ``(a, keep, bad, denom)``: ``keep`` marks samples that count (not ignored),
    ``bad`` marks out-of-range class indices (their loss becomes NaN), ``denom`` is the
    divisor of reduction="mean" (PyTorch's: the summed weight of kept index targets, the
    number of samples for probability targets). ``keep`` and ``bad`` have the sample shape.
    """
    n_classes = logits.shape[axis]
    dt = logits.dtype
    ndim = logits.ndim
    bshape = tuple(n_classes if i == axis else 1 for i in range(ndim))
    w = None if weight is None else xp.reshape(_up(xp, weight, dt), bshape)
    eps = label_smoothing
    if index_target:
        # in the indexing dtype: an arange in a small target dtype (uint8) would wrap
        target = index_dtype_target(xp, target)
        classes = _class_numbers(xp, logits, axis, target.dtype)
        onehot = _up(xp, classes == xp.expand_dims(target, axis=axis), dt)
        keep = (
            xp.ones_like(target, dtype=xp.bool) if ignore_index is None else target != ignore_index
        )
        bad = ((target < 0) | (target >= n_classes)) & keep
        a = onehot * (1.0 - eps) + eps / n_classes
        if w is not None:
            a = a * w
        a = xp.where(xp.expand_dims(keep, axis=axis), a, xp.zeros_like(a))
        w_t = onehot if w is None else onehot * w
        denom = xp.sum(xp.where(xp.expand_dims(keep, axis=axis), w_t, xp.zeros_like(w_t)))
    else:
        q = _up(xp, target, dt)
        a = q * (1.0 - eps) + eps / n_classes
        if w is not None:
            a = a * w
        one_per_sample = logits[(slice(None),) * axis + (0, ...)]
        keep = xp.ones_like(one_per_sample, dtype=xp.bool)
        bad = xp.zeros_like(one_per_sample, dtype=xp.bool)
        n_samples = 1
        for s in one_per_sample.shape:
            n_samples *= s
        denom = xp.full_like(logits[(0,) * ndim], float(n_samples))
    return a, keep, bad, denom


def _class_numbers(xp: ModuleType, logits: Array, axis: int, dtype: Any) -> Array:
    """``0, 1, ..., n_classes - 1`` along ``axis`` (size 1 elsewhere), made from the
    logits rather than by ``arange``: a new array would not share what the input carries
    (its device, or a Cubed array's execution spec, which every array of one computation
    must share)."""
    first = logits[tuple(slice(None) if i == axis else slice(0, 1) for i in range(logits.ndim))]
    return xp.cumulative_sum(xp.ones_like(first, dtype=dtype), axis=axis, dtype=dtype) - 1


def _safe_div(xp: ModuleType, num: Array, denom: Array) -> Array:
    """``num / denom``, and 0 where ``denom`` is 0 (mean over nothing counted is 0)."""
    zero = denom == 0
    return xp.where(zero, xp.zeros_like(num), num / xp.where(zero, xp.ones_like(denom), denom))


def cross_entropy(
    xp: ModuleType,
    logits: Array,
    target: Array,
    axis: int,
    *,
    weight: Array | None,
    ignore_index: int | None,
    label_smoothing: float,
    reduction: str,
    index_target: bool,
) -> Array:
    """Softmax cross-entropy with PyTorch's semantics on class axis ``axis``."""
    dtype = logits.dtype
    logits = _up(xp, logits, _compute_dtype(xp, dtype))
    logp = log_softmax(xp, logits, (axis,))
    a, keep, bad, denom = _class_weights(
        xp, logits, target, axis, weight, ignore_index, label_smoothing, index_target
    )
    # Classes with zero coefficient contribute exactly 0, even where logp is -inf or NaN
    # (and 0 * -inf is never computed: NumPy would flag it).
    terms = a * xp.where(a != 0, logp, xp.zeros_like(logp))
    per = -xp.sum(terms, axis=axis)
    per = xp.where(keep, per, xp.zeros_like(per))
    per = xp.where(bad, xp.full_like(per, xp.nan), per)
    if reduction == "none":
        loss = per
    elif reduction == "sum":
        loss = xp.sum(per)
    else:
        loss = _safe_div(xp, xp.sum(per), denom)
    return _down(xp, loss, dtype)


def cross_entropy_backward(
    xp: ModuleType,
    logits: Array,
    target: Array,
    grad: Array | float,
    axis: int,
    *,
    weight: Array | None,
    ignore_index: int | None,
    label_smoothing: float,
    reduction: str,
    index_target: bool,
) -> Array:
    """``grad * dL/dlogits`` where ``dL/dlogits = softmax(logits) * sum(a) - a``."""
    dtype = logits.dtype
    logits = _up(xp, logits, _compute_dtype(xp, dtype))
    p = softmax(xp, logits, (axis,))
    a, keep, bad, denom = _class_weights(
        xp, logits, target, axis, weight, ignore_index, label_smoothing, index_target
    )
    dx = p * xp.sum(a, axis=axis, keepdims=True) - a
    if reduction == "none" and not isinstance(grad, float) and grad.ndim:
        dx = dx * xp.expand_dims(_up(xp, grad, dx.dtype), axis=axis)
    else:
        dx = dx * (grad if isinstance(grad, float) else _up(xp, grad, dx.dtype))
    if reduction == "mean":
        dx = _safe_div(xp, dx, denom)
    # Ignored samples get exactly 0 whatever their logits or upstream gradient hold.
    dx = xp.where(xp.expand_dims(keep, axis=axis), dx, xp.zeros_like(dx))
    dx = xp.where(xp.expand_dims(bad, axis=axis), xp.full_like(dx, xp.nan), dx)
    return _down(xp, dx, dtype)
