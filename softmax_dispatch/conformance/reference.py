"""High-precision host references and the per-dtype tolerances the suite holds results to.

References are computed on the host with mpmath (30 significant digits; float64 NumPy for
arrays over `MPMATH_MAX` elements) from the exact values the backend received (inputs are
rounded to the test dtype first), so the only error measured is the backend's own.
Tolerances scale with the unit roundoff of the dtype the backend *computes* in (float32
for float16/bfloat16), with the row's spread ``max|x - max(x)|`` (exp amplifies the
rounding of ``x - max``) and with ``sqrt(n)`` for summation; a float64 result computed
with float32 accuracy misses them by ~10^7.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import mpmath
import numpy as np

__all__ = [
    "UNIT_ROUNDOFF",
    "assert_within",
    "compute_eps",
    "cross_entropy_grad_ref",
    "cross_entropy_ref",
    "log_softmax_backward_ref",
    "log_softmax_ref",
    "row_sums",
    "softmax_backward_ref",
    "softmax_ref",
]

#: Unit roundoff (half the spacing of floats in [1, 2)) of each floating dtype, by name.
UNIT_ROUNDOFF = {
    "float16": 2.0**-11,
    "bfloat16": 2.0**-8,
    "float32": 2.0**-24,
    "float64": 2.0**-53,
}
#: Smallest positive normal number of each dtype: the absolute floor of every tolerance.
TINY = {"float16": 6.1e-5, "bfloat16": 1.2e-38, "float32": 1.2e-38, "float64": 2.3e-308}
#: Slack on top of the error model: operations per element, rounding of intermediates.
SLACK = 16.0


def compute_eps(dtype: str) -> float:
    """Unit roundoff of the dtype the arithmetic runs in (float32 for 16-bit floats)."""
    return UNIT_ROUNDOFF["float32"] if dtype in ("float16", "bfloat16") else UNIT_ROUNDOFF[dtype]


def _rows(x: np.ndarray, axes: Sequence[int]) -> tuple[np.ndarray, tuple[int, ...], list[int]]:
    """Move ``axes`` last and flatten them: one distribution per row."""
    axes = [a % x.ndim for a in axes] if x.ndim else []
    keep = [a for a in range(x.ndim) if a not in axes]
    moved = np.transpose(x, keep + axes)
    n = math.prod(x.shape[a] for a in axes)
    return moved.reshape(-1, n), moved.shape, keep + axes


def _unrows(rows: np.ndarray, moved_shape: tuple[int, ...], order: list[int]) -> np.ndarray:
    return np.transpose(rows.reshape(moved_shape), np.argsort(order))


def _row_softmax(row: Sequence[float], log: bool) -> list[mpmath.mpf]:
    vals = [mpmath.mpf(float(v)) for v in row]
    finite = [v for v in vals if mpmath.isfinite(v)]
    if any(mpmath.isnan(v) for v in vals) or any(v == mpmath.inf for v in vals) or not finite:
        return [mpmath.nan] * len(vals)
    m = max(finite)
    terms = [mpmath.exp(v - m) if mpmath.isfinite(v) else mpmath.mpf(0) for v in vals]
    log_sum = mpmath.log(mpmath.fsum(terms))
    if log:  # (v - m) first: exact, whatever the magnitude of m
        return [(v - m) - log_sum if mpmath.isfinite(v) else -mpmath.inf for v in vals]
    return [t / mpmath.fsum(terms) for t in terms]


#: Above this many elements the reference is computed in float64 NumPy (a few float64
#: ulps of error, far inside every bound) instead of 30-digit mpmath, to stay fast.
MPMATH_MAX = 20_000


def _float64_rows(rows: np.ndarray, log: bool) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        finite = np.where(np.isfinite(rows), rows, -np.inf)
        m = finite.max(axis=1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        z = rows - m
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        out = z - np.log(s) if log else e / s
        bad = np.isnan(rows).any(axis=1) | (rows == np.inf).any(axis=1)
        bad |= ~np.isfinite(rows).any(axis=1) & ~bad & (rows.shape[1] > 0)
        out[bad] = np.nan
    return out


def _apply_rows(x: np.ndarray, axes: Sequence[int], log: bool) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return np.zeros(x.shape)
    rows, moved, order = _rows(x, axes)
    if x.size > MPMATH_MAX:
        return _unrows(_float64_rows(rows, log), moved, order)
    with mpmath.workdps(30):
        out = np.array([[float(v) for v in _row_softmax(r, log)] for r in rows], dtype=np.float64)
    return _unrows(out, moved, order)


def softmax_ref(x: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    """Softmax over ``axes`` (a row with NaN or +inf, or only -inf, is NaN)."""
    return _apply_rows(x, axes, log=False)


def log_softmax_ref(x: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    """Log-softmax over ``axes``, same policies as `softmax_ref`."""
    return _apply_rows(x, axes, log=True)


def row_sums(a: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    """Exact-ish (math.fsum) sums over ``axes``, kept as size-1 dims."""
    rows, moved, order = _rows(a, axes)
    sums = np.array([math.fsum(r) for r in rows])
    full = np.repeat(sums[:, None], rows.shape[1], axis=1)
    return _unrows(full, moved, order)


def softmax_backward_ref(g: np.ndarray, y: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    """``y * (g - sum(g * y))`` with compensated sums, from the given ``g`` and ``y``."""
    g, y = np.asarray(g, np.float64), np.asarray(y, np.float64)
    if not axes:
        return np.zeros(y.shape)
    return y * (g - row_sums(g * y, axes))


def log_softmax_backward_ref(g: np.ndarray, y: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    """``g - exp(y) * sum(g)`` with compensated sums."""
    g, y = np.asarray(g, np.float64), np.asarray(y, np.float64)
    if not axes:
        return np.zeros(y.shape)
    return g - np.exp(y) * row_sums(g, axes)


def _class_coefficients(
    n_classes: int,
    target: np.ndarray,
    index_target: bool,
    weight: np.ndarray | None,
    ignore_index: int | None,
    label_smoothing: float,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Rows ``a`` (samples x classes) with ``loss_i = -sum_c a_ic log p_ic``; the kept-sample
    mask; the "mean" divisor. Written from PyTorch's documented formulas, sample by sample."""
    w = np.ones(n_classes) if weight is None else np.asarray(weight, np.float64)
    eps = label_smoothing
    if index_target:
        t = np.asarray(target).reshape(-1)
        keep = np.array([ignore_index is None or int(c) != ignore_index for c in t])
        a = np.zeros((t.size, n_classes))
        divisor = 0.0
        for i, c in enumerate(t):
            if not keep[i]:
                continue
            a[i] = eps / n_classes * w
            a[i, int(c)] += (1 - eps) * w[int(c)]
            divisor += w[int(c)]
    else:
        q = np.asarray(target, np.float64)  # already rows: (samples, classes)
        a = (q * (1 - eps) + eps / n_classes) * w
        keep = np.ones(q.shape[0], dtype=bool)
        divisor = float(q.shape[0])
    return a, keep, divisor


def _to_rows(logits: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(np.asarray(logits, np.float64), axis, -1).reshape(-1, logits.shape[axis])


def _ce_rows(logits, target, axis, weight, ignore_index, label_smoothing):
    """Logits as (samples, classes) rows, and `_class_coefficients` for them."""
    index_target = np.issubdtype(np.asarray(target).dtype, np.integer)
    rows = _to_rows(logits, axis)
    target = np.asarray(target) if index_target else _to_rows(target, axis)
    a, keep, divisor = _class_coefficients(
        rows.shape[1], target, index_target, weight, ignore_index, label_smoothing
    )
    return rows, a, keep, divisor


def cross_entropy_ref(
    logits: np.ndarray,
    target: np.ndarray,
    axis: int,
    *,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    weight: np.ndarray | None = None,
) -> np.ndarray:
    """PyTorch's ``cross_entropy`` (class axis ``axis``), but ignored samples are exactly 0
    and "mean" over nothing counted is 0."""
    rows, a, keep, divisor = _ce_rows(logits, target, axis, weight, ignore_index, label_smoothing)
    logp = log_softmax_ref(rows, (1,))
    with np.errstate(invalid="ignore"):
        terms = np.where(a != 0, a * logp, 0.0)
    per = np.array([-math.fsum(t) if k else 0.0 for t, k in zip(terms, keep)])
    sample_shape = tuple(s for i, s in enumerate(logits.shape) if i != axis % logits.ndim)
    if reduction == "none":
        return per.reshape(sample_shape)
    total = math.fsum(per)
    if reduction == "sum":
        return np.asarray(total)
    return np.asarray(0.0 if divisor == 0 else total / divisor)


def cross_entropy_grad_ref(
    logits: np.ndarray,
    target: np.ndarray,
    axis: int,
    grad: float | np.ndarray = 1.0,
    *,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    weight: np.ndarray | None = None,
) -> np.ndarray:
    """``grad * d loss / d logits`` for `cross_entropy_ref`: ``softmax * sum(a) - a``."""
    rows, a, keep, divisor = _ce_rows(logits, target, axis, weight, ignore_index, label_smoothing)
    p = softmax_ref(rows, (1,))
    d = np.where(keep[:, None], p * a.sum(axis=1, keepdims=True) - a, 0.0)
    g = np.asarray(grad, np.float64)
    d = d * (g.reshape(-1, 1) if g.ndim else g)
    if reduction == "mean":
        d = d / divisor if divisor else np.zeros_like(d)
    moved = list(np.moveaxis(np.empty(logits.shape), axis, -1).shape)
    return np.moveaxis(d.reshape(moved), -1, axis)


def assert_within(
    actual: np.ndarray,
    expected: np.ndarray,
    bound: np.ndarray | float,
    what: str,
) -> None:
    """``|actual - expected| <= bound`` elementwise, NaN where and only where expected is NaN,
    infinities equal; the message gives the worst element and the bound."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    nan_a, nan_e = np.isnan(actual), np.isnan(expected)
    if not np.array_equal(nan_a, nan_e):
        where = np.argwhere(nan_a != nan_e)[0]
        raise AssertionError(
            f"{what}: NaN mismatch at index {tuple(where)}: got {actual[tuple(where)]}, "
            f"expected {expected[tuple(where)]}"
        )
    inf_e = np.isinf(expected)
    if not np.array_equal(actual[inf_e], expected[inf_e]):
        raise AssertionError(
            f"{what}: infinities differ: got {actual[inf_e]}, expected {expected[inf_e]}"
        )
    ok = nan_e | inf_e
    with np.errstate(invalid="ignore"):
        err = np.where(ok, 0.0, np.abs(actual - expected))
    bound = np.broadcast_to(np.asarray(bound, np.float64), err.shape)
    bad = ~(err <= bound)
    if bad.any():
        i = np.unravel_index(
            np.argmax(np.where(bad, err / np.maximum(bound, 1e-300), 0)), err.shape
        )
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {err.size} elements outside tolerance; worst at "
            f"{tuple(int(k) for k in i)}: got {actual[i]!r}, expected {expected[i]!r}, "
            f"error {err[i]:.3g} > bound {bound[i]:.3g}"
        )


def spread(x: np.ndarray, axes: Sequence[int]) -> float:
    """Largest finite ``|x - max(x)|`` over the rows: how much exp amplifies rounding."""
    x = np.asarray(x, np.float64)
    if x.size == 0 or not axes:
        return 0.0
    with np.errstate(invalid="ignore"):
        finite = np.where(np.isfinite(x), x, np.nan)
        if not np.isfinite(finite).any():
            return 0.0
        m = np.fmax.reduce(finite, axis=tuple(axes), keepdims=True)
        return float(np.nanmax(np.abs(finite - m)))


def softmax_bound(x: np.ndarray, ref: np.ndarray, axes: Sequence[int], dtype: str) -> np.ndarray:
    """Per-element tolerance for softmax of ``x`` (values already in the test dtype)."""
    n = math.prod(np.asarray(x).shape[a] for a in axes) if axes else 1
    rel = UNIT_ROUNDOFF[dtype] + SLACK * compute_eps(dtype) * (1 + spread(x, axes) + math.sqrt(n))
    return rel * np.abs(ref) + TINY[dtype]


def log_softmax_bound(
    x: np.ndarray, ref: np.ndarray, axes: Sequence[int], dtype: str
) -> np.ndarray:
    """Per-element tolerance for log_softmax: absolute, growing with |result| and spread."""
    n = math.prod(np.asarray(x).shape[a] for a in axes) if axes else 1
    scale = 1 + np.abs(np.where(np.isfinite(ref), ref, 0)) + spread(x, axes) + math.sqrt(n)
    return UNIT_ROUNDOFF[dtype] * np.abs(np.where(np.isfinite(ref), ref, 0)) + (
        SLACK * compute_eps(dtype) * scale
    )
