"""float16 and bfloat16: every op as accurate as its exact result rounded once.

The contract for 16-bit inputs is that the arithmetic runs in float32 and the result is
rounded once to the input dtype. So every element of every result must lie within

    0.5 * spacing(ref)  +  E32

of the exact result ``ref`` (a 30-digit mpmath reference computed from the values the
device holds): ``spacing(ref)`` is the distance between consecutive values of the 16-bit
dtype at ``|ref|``'s magnitude (subnormal spacing below the smallest normal), so half of
it is what rounding the exact result once to that dtype costs at most; ``E32`` is what
float32 accumulation may add before that rounding, the suite's own model of a float32
computation: ``16 u32 (1 + s + sqrt n) |ref|`` for softmax (``u32 = 2**-24``, ``s`` the
row's spread ``max|x - max x|``, ``n`` its length), ``16 u32 (1 + |ref| + s + sqrt n)``
for log_softmax, ``16 u32 (1 + sqrt n)`` times the magnitude of the terms summed for the
backward passes, and for cross-entropy the same per class, weighted by the class
coefficients ``a`` (``loss = -sum(a * log_softmax)``) and scaled as the reduction scales
them. ``E32`` is a few hundredths of a spacing here, so the bound is the rounded-once bound
with room for float32's own rounding and nothing else: a result rounded twice (a 16-bit
intermediate such as ``grad / N``, ``exp(log_softmax)`` or a per-class product) lands up
to a whole spacing away, and on these inputs some element always does. Errors are
reported in spacings.

Each op runs on the last axis and on a non-last one (axis 1 of a 3-d array; the classes
on axis 1 for cross-entropy), cross-entropy and its backward with every reduction, with
class indices and with probabilities. The backward passes
take a 16-bit ``y`` rounded from the exact forward result, so only their own arithmetic
is measured. Cross-entropy has class weights on the axis-1 layout (the "mean" then divides
by their sum) and none on the last-axis one.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import softmax_dispatch as sd
from softmax_dispatch.conformance import reference as ref
from softmax_dispatch.conformance._data import logits, rng
from softmax_dispatch.conformance.fixtures import only

HALF = ("float16", "bfloat16")
#: explicit mantissa bits and smallest normal exponent of each 16-bit dtype
MANTISSA = {"float16": 10, "bfloat16": 7}
MIN_EXPONENT = {"float16": -14, "bfloat16": -126}
U32 = ref.UNIT_ROUNDOFF["float32"]

#: (shape, axis, axes): the softmax axis last, and not last
LAYOUTS = {"last": ((6, 17), -1, (1,)), "axis1": ((3, 7, 5), 1, (1,))}
N_CLASSES = 5
#: (logits shape, class axis, weighted): classes last without class weights, and on axis
#: 1 (as PyTorch's NCHW losses have them) with
CE_LAYOUTS = {"last": ((6, N_CLASSES), -1, False), "axis1": ((4, N_CLASSES, 3), 1, True)}

has_half = only(
    lambda t: any(d in HALF for d in t.dtypes),
    "half precision: no backend or device checked here has float16 or bfloat16",
)


def _half_dtypes(target) -> list[str]:
    return [d for d in HALF if d in target.dtypes]


def spacing(values: np.ndarray, dtype: str) -> np.ndarray:
    """Distance between consecutive ``dtype`` values at each ``|value|``'s magnitude:
    ``2**(e - mantissa)`` for ``|value|`` in ``[2**e, 2**(e + 1))``, the subnormal
    spacing below the smallest normal."""
    _, exponent = np.frexp(np.abs(np.asarray(values, np.float64)))
    binade = np.maximum(exponent - 1, MIN_EXPONENT[dtype])
    return np.ldexp(1.0, binade - MANTISSA[dtype])


def assert_rounded_once(
    got: np.ndarray, exact: np.ndarray, accumulation: np.ndarray | float, dtype: str, what: str
) -> None:
    """Every element within half a ``dtype`` spacing of ``exact`` plus ``accumulation``;
    the message gives the worst element, in spacings."""
    got, exact = np.asarray(got, np.float64), np.asarray(exact, np.float64)
    assert got.shape == exact.shape, f"{what}: shape {got.shape} != {exact.shape}"
    assert np.isfinite(got).all(), f"{what}: non-finite results {got[~np.isfinite(got)]}"
    unit = spacing(exact, dtype)
    err = np.abs(got - exact) / unit
    bound = 0.5 + np.broadcast_to(accumulation, exact.shape) / unit
    bad = err > bound
    if bad.any():
        i = np.unravel_index(np.argmax(err - bound), err.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {err.size} elements farther from the exact result "
            f"than rounding it once to {dtype} plus float32 accumulation allows; worst at "
            f"{tuple(int(k) for k in i)}: got {got[i]!r}, exact {exact[i]!r}, "
            f"{err[i]:.3f} spacings > {bound[i]:.3f}"
        )


def _row_length(shape: tuple[int, ...], axes: tuple[int, ...]) -> int:
    return math.prod(shape[a] for a in axes)


# --------------------------------------------------------------------------------- forward
FORWARD = {
    "softmax": (sd.softmax, ref.softmax_ref),
    "log_softmax": (sd.log_softmax, ref.log_softmax_ref),
}


@has_half
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("op", sorted(FORWARD))
def test_half_precision_forward_is_rounded_once(target, op, layout):
    fn, reference = FORWARD[op]
    shape, axis, axes = LAYOUTS[layout]
    for dtype in _half_dtypes(target):
        x, exact = target.exact(logits(shape, seed=91), dtype)
        y = target.call(fn, x, axis)
        assert y.dtype == target.dtype(dtype), f"{op} returned {y.dtype} for {dtype} input"
        expected = reference(exact, axes)
        grow = 1 + ref.spread(exact, axes) + math.sqrt(_row_length(shape, axes))
        if op == "softmax":
            accumulation = ref.SLACK * U32 * grow * np.abs(expected)
        else:
            accumulation = ref.SLACK * U32 * (grow + np.abs(expected))
        assert_rounded_once(target.to_numpy(y), expected, accumulation, dtype, f"{op} {dtype}")


# -------------------------------------------------------------------------------- backward
BACKWARD = {
    "softmax": (sd.softmax_backward, ref.softmax_ref, ref.softmax_backward_ref),
    "log_softmax": (sd.log_softmax_backward, ref.log_softmax_ref, ref.log_softmax_backward_ref),
}


@has_half
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("op", sorted(BACKWARD))
def test_half_precision_backward_is_rounded_once(target, op, layout):
    bwd, forward_ref, reference = BACKWARD[op]
    shape, axis, axes = LAYOUTS[layout]
    n = _row_length(shape, axes)
    for dtype in _half_dtypes(target):
        # y: the exact forward result rounded to the dtype, independent of the backend
        y, y_exact = target.exact(forward_ref(logits(shape, seed=92), axes), dtype)
        g, g_exact = target.exact(logits(shape, seed=93, scale=1.0), dtype)
        dx = target.call(bwd, g, y, axis)
        assert dx.dtype == target.dtype(dtype), f"{op}_backward returned {dx.dtype}"
        expected = reference(g_exact, y_exact, axes)
        if op == "softmax":
            terms = np.abs(y_exact) * (
                np.abs(g_exact) + ref.row_sums(np.abs(g_exact * y_exact), axes)
            )
        else:
            terms = np.abs(g_exact) + np.exp(y_exact) * ref.row_sums(np.abs(g_exact), axes)
        accumulation = ref.SLACK * U32 * (1 + math.sqrt(n)) * terms
        what = f"{op}_backward {dtype}"
        assert_rounded_once(target.to_numpy(dx), expected, accumulation, dtype, what)


# --------------------------------------------------------------------------- cross-entropy
def _ce_inputs(target, dtype, layout, index_target):
    """Logits, target, weight on the target (16-bit) and as the exact values it holds."""
    shape, axis, weighted = CE_LAYOUTS[layout]
    x, x_exact = target.exact(logits(shape, seed=94, scale=2.0), dtype)
    sample_shape = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
    if index_target:
        t_exact = rng(95).integers(0, N_CLASSES, size=sample_shape)
        t = target.indices(t_exact)
    else:
        q = rng(96).random(shape)
        t, t_exact = target.exact(q / q.sum(axis=axis, keepdims=True), dtype)
    kw, ref_kw = {}, {}
    if weighted:
        kw["weight"], ref_kw["weight"] = target.exact(rng(97).random(N_CLASSES) + 0.5, dtype)
    return x, x_exact, t, t_exact, axis, kw, ref_kw


def _ce_accumulation(x_exact, t_exact, axis, ref_kw, reduction, grad):
    """E32 for the loss (per its reduction) and for the gradient (per element): float32's
    error in each ``log_softmax`` / ``softmax`` value, weighted by the class coefficients
    ``a`` and scaled as the reduction scales them, plus the float32 sums over samples."""
    rows, a, _keep, divisor = ref._ce_rows(x_exact, t_exact, axis, ref_kw.get("weight"), None, 0.0)
    n = rows.shape[1]
    logp = ref.log_softmax_ref(rows, (1,))
    grow = 1 + ref.spread(rows, (1,)) + math.sqrt(n)
    per_sample = ref.SLACK * U32 * np.sum(np.abs(a) * (grow + np.abs(logp)), axis=1)
    per_loss = -np.sum(a * logp, axis=1)
    g = np.abs(np.asarray(grad, np.float64)).reshape(-1)
    if reduction == "none":
        loss_acc = per_sample
        scale = g
    else:
        total = (
            per_sample.sum() + ref.SLACK * U32 * math.sqrt(rows.shape[0]) * np.abs(per_loss).sum()
        )
        loss_acc = total / divisor if reduction == "mean" else total
        scale = g / divisor if reduction == "mean" else g
    p = np.exp(logp)
    terms = p * np.abs(a).sum(axis=1, keepdims=True) + np.abs(a)
    grad_rows = ref.SLACK * U32 * grow * terms * scale.reshape(-1, 1)
    moved = list(np.moveaxis(np.empty(x_exact.shape), axis, -1).shape)
    grad_acc = np.moveaxis(grad_rows.reshape(moved), -1, axis)
    sample_shape = tuple(s for i, s in enumerate(x_exact.shape) if i != axis % x_exact.ndim)
    if reduction == "none":
        loss_acc = loss_acc.reshape(sample_shape)
    return loss_acc, grad_acc


def _loss_and_gradient(logits, target, grad, axis, **kw):
    """Both calls in one: under ``jax.jit``, one compilation instead of two."""
    loss = sd.softmax_cross_entropy(logits, target, axis, **kw)
    return loss, sd.softmax_cross_entropy_backward(logits, target, grad, axis, **kw)


@has_half
@pytest.mark.parametrize("index_target", [True, False], ids=["index", "probability"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("layout", sorted(CE_LAYOUTS))
def test_half_precision_cross_entropy_is_rounded_once(target, layout, reduction, index_target):
    for dtype in _half_dtypes(target):
        x, x_exact, t, t_exact, axis, kw, ref_kw = _ce_inputs(target, dtype, layout, index_target)
        if reduction == "none":  # 16-bit per-sample gradients, exact on the host
            sample_shape = t_exact.shape if index_target else np.sum(t_exact, axis=axis).shape
            grad, grad_exact = target.exact(rng(98).random(sample_shape) + 0.5, dtype)
        else:  # exact in every dtype, but 1 / divisor is not (6 or 12 samples, summed weights)
            grad = grad_exact = 1.0
        loss_acc, grad_acc = _ce_accumulation(x_exact, t_exact, axis, ref_kw, reduction, grad_exact)
        what = f"{dtype}, classes on axis {axis}, reduction={reduction}" + (
            ", weighted" if kw else ""
        )

        loss, d = target.call(_loss_and_gradient, x, t, grad, axis, reduction=reduction, **kw)
        assert loss.dtype == target.dtype(dtype), f"loss returned {loss.dtype}"
        expected = ref.cross_entropy_ref(x_exact, t_exact, axis, reduction=reduction, **ref_kw)
        assert_rounded_once(target.to_numpy(loss), expected, loss_acc, dtype, f"loss {what}")

        assert d.dtype == target.dtype(dtype), f"gradient returned {d.dtype}"
        expected = ref.cross_entropy_grad_ref(
            x_exact, t_exact, axis, grad_exact, reduction=reduction, **ref_kw
        )
        assert_rounded_once(target.to_numpy(d), expected, grad_acc, dtype, f"gradient {what}")
