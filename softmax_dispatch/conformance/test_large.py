"""Inputs large enough for a backend's blocked, multi-threaded paths: every layout
(trailing axes, a leading axis, a middle axis, several axes, strided views), masks,
``out=`` and in place, float16 to float64."""

from __future__ import annotations

import numpy as np
import pytest

import softmax_dispatch as sd
from softmax_dispatch.conformance import reference as ref
from softmax_dispatch.conformance._data import logits, rng

FORWARD = {
    "softmax": (sd.softmax, ref.softmax_ref, ref.softmax_bound),
    "log_softmax": (sd.log_softmax, ref.log_softmax_ref, ref.log_softmax_bound),
}
#: (shape, axis, normalized axes, view): ~70k elements, over the usual blocking cut-offs
LAYOUTS = {
    "rows": ((96, 720), -1, (1,), None),
    "leading-axis": ((720, 96), 0, (0,), None),
    "middle-axis": ((6, 400, 30), 1, (1,), None),
    "two-trailing": ((40, 30, 60), (1, 2), (1, 2), None),
    "outer-axes": ((40, 30, 60), (0, 2), (0, 2), None),
    "strided": ((96, 1440), -1, (1,), (slice(None), slice(None, None, 2))),
    "transposed": ((720, 96), -1, (1,), "T"),
}


def _input(target, dtype, layout, seed):
    shape, axis, axes, view = LAYOUTS[layout]
    host = logits(shape, seed=seed, scale=3.0)
    x = target.asarray(host, dtype)
    if view == "T":
        x = target.xp.permute_dims(x, (1, 0))
    elif view is not None:
        x = x[view]
    return x, target.to_numpy(x), axis, axes


@pytest.mark.parametrize("op", sorted(FORWARD))
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_large_forward_every_layout(target, dtype, op, layout):
    fn, reference, bound = FORWARD[op]
    x, exact, axis, axes = _input(target, dtype, layout, seed=61)
    y = target.call(fn, x, axis)
    target.same_place(y, x)
    assert y.dtype == target.dtype(dtype) and tuple(y.shape) == exact.shape
    expected = reference(exact, axes)
    ref.assert_within(target.to_numpy(y), expected, bound(exact, expected, axes, dtype), op)


#: Far from 0, where a rounded max (or log-sum folded into it) costs digits: the spacing
#: of floats at the offset is well above the error the bounds allow.
OFFSETS = {"float16": 1e4, "bfloat16": 1e4, "float32": 1e6, "float64": 1e14}


@pytest.mark.parametrize("op", sorted(FORWARD))
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_large_offsets_every_layout(target, dtype, op, layout):
    """``x - (max + log(sum))`` rounds the log-sum into the max; ``(x - max) - log(sum)``
    does not. Every axis and layout, against the reference."""
    fn, reference, bound = FORWARD[op]
    shape, axis, axes, view = LAYOUTS[layout]
    host = OFFSETS[dtype] + logits(shape, seed=60, scale=3.0)
    x = target.asarray(host, dtype)
    if view == "T":
        x = target.xp.permute_dims(x, (1, 0))
    elif view is not None:
        x = x[view]
    exact = target.to_numpy(x)
    y = target.to_numpy(target.call(fn, x, axis))
    expected = reference(exact, axes)
    ref.assert_within(y, expected, bound(exact, expected, axes, dtype), f"{op} at an offset")


@pytest.mark.parametrize("op", sorted(FORWARD))
@pytest.mark.parametrize("layout", ["rows", "leading-axis", "outer-axes"])
def test_large_forward_with_mask(target, dtype, op, layout):
    fn, reference, bound = FORWARD[op]
    x, exact, axis, axes = _input(target, dtype, layout, seed=62)
    mask = rng(63).random(exact.shape) < 0.7
    # one distribution fully masked: zeros (softmax) / -inf (log_softmax), never NaN
    first = [slice(None)] * exact.ndim
    for d in range(exact.ndim):
        if d not in axes:
            first[d] = 0
    mask[tuple(first)] = False
    y = target.to_numpy(target.call(fn, x, axis, where=target.asarray(mask)))
    masked = np.where(mask, exact, -np.inf)
    expected = reference(masked, axes)
    empty = ~mask.any(axis=axes, keepdims=True) & np.ones_like(mask)
    expected[empty] = -np.inf if op == "log_softmax" else 0.0
    assert not np.isnan(y).any()
    ref.assert_within(y, expected, bound(masked, expected, axes, dtype), f"masked {op}")


@pytest.mark.parametrize("op", ["softmax_backward", "log_softmax_backward"])
@pytest.mark.parametrize("layout", ["rows", "leading-axis", "outer-axes", "transposed"])
def test_large_backward_every_layout(target, dtype, op, layout):
    fwd = sd.softmax if op == "softmax_backward" else sd.log_softmax
    x, _, axis, axes = _input(target, dtype, layout, seed=64)
    y = target.call(fwd, x, axis)
    g_host = logits(tuple(x.shape), seed=65, scale=1.0)
    g, g_exact = target.exact(g_host, dtype)
    dx = target.call(getattr(sd, op), g, y, axis)
    target.same_place(dx, x)
    assert dx.dtype == target.dtype(dtype)
    y_exact = target.to_numpy(y)
    if op == "softmax_backward":
        expected = ref.softmax_backward_ref(g_exact, y_exact, axes)
        scale = np.abs(y_exact) * (np.abs(g_exact) + ref.row_sums(np.abs(g_exact * y_exact), axes))
    else:
        expected = ref.log_softmax_backward_ref(g_exact, y_exact, axes)
        scale = np.abs(g_exact) + np.exp(y_exact) * ref.row_sums(np.abs(g_exact), axes)
    n = int(np.prod([y_exact.shape[a] for a in axes]))
    bound = (
        ref.UNIT_ROUNDOFF[dtype] * np.abs(expected)
        + ref.SLACK * ref.compute_eps(dtype) * (1 + np.sqrt(n)) * scale
        + ref.TINY[dtype]
    )
    ref.assert_within(target.to_numpy(dx), expected, bound, op)


@pytest.mark.parametrize("op", sorted(FORWARD))
@pytest.mark.parametrize("layout", ["rows", "leading-axis"])
def test_large_out_and_in_place(target, dtype, op, layout):
    if not target.writeable:
        pytest.skip(f"{target.backend} arrays do not support item assignment")
    fn = FORWARD[op][0]
    x, _, axis, _ = _input(target, dtype, layout, seed=66)
    expected = target.to_numpy(target.call(fn, x, axis))
    out = target.asarray(np.zeros(tuple(x.shape)), dtype)
    assert target.call(fn, x, axis, out=out) is out
    np.testing.assert_array_equal(target.to_numpy(out), expected)
    assert target.call(fn, x, axis, out=x) is x
    np.testing.assert_array_equal(target.to_numpy(x), expected)


@pytest.mark.parametrize("op", sorted(FORWARD))
def test_results_the_caller_holds_are_never_reused(target, dtype, op):
    """A backend may recycle the memory of results the caller has dropped (the NumPy
    backend pools those of 4 MiB and more), never of one still held — by its name or
    through a view — however many calls of the same shape follow."""
    fn, reference, bound = FORWARD[op]
    shape = (1024, 1280)  # 5 MiB of float32

    def call(seed):
        x = target.asarray(logits(shape, seed=seed, scale=3.0), dtype)
        return target.call(fn, x, -1), target.to_numpy(x)

    held, exact1 = call(71)
    y2, exact2 = call(72)
    view = y2[1:, :]
    del y2
    dropped, _ = call(73)
    del dropped
    later = [call(seed) for seed in (74, 75)]
    for y, exact in [(held, exact1), (view, exact2[1:, :]), *later]:
        expected = reference(exact, (1,))
        got = target.to_numpy(y)
        ref.assert_within(got, expected, bound(exact, expected, (1,), dtype), op)


def test_large_backward_in_place_over_grad(target, dtype):
    if not target.writeable:
        pytest.skip(f"{target.backend} arrays do not support item assignment")
    x, _, axis, _ = _input(target, dtype, "rows", seed=67)
    y = target.call(sd.softmax, x, axis)
    g = target.asarray(logits(tuple(x.shape), seed=68, scale=1.0), dtype)
    expected = target.to_numpy(target.call(sd.softmax_backward, g, y, axis))
    assert target.call(sd.softmax_backward, g, y, axis, out=g) is g
    np.testing.assert_array_equal(target.to_numpy(g), expected)


@pytest.mark.parametrize("axis", [-1, 0])
def test_large_cross_entropy(target, dtype, axis):
    shape = (2000, 37) if axis == -1 else (37, 2000)
    x, exact = target.exact(logits(shape, seed=69, scale=2.0), dtype)
    t_host = rng(70).integers(0, 37, size=2000)
    t_host[::7] = -100
    t = target.indices(t_host)
    w, w_host = target.exact(rng(71).random(37) + 0.5, dtype)
    kw = dict(ignore_index=-100, label_smoothing=0.1)
    loss = target.to_numpy(target.call(sd.softmax_cross_entropy, x, t, axis, weight=w, **kw))
    d = target.to_numpy(
        target.call(sd.softmax_cross_entropy_backward, x, t, 2.0, axis, weight=w, **kw)
    )
    tol = ref.UNIT_ROUNDOFF[dtype] * 4 + ref.SLACK * ref.compute_eps(dtype) * (
        40 + ref.spread(exact, (axis % 2,))
    )
    np.testing.assert_allclose(
        loss, ref.cross_entropy_ref(exact, t_host, axis, weight=w_host, **kw), rtol=tol, atol=tol
    )
    expected = ref.cross_entropy_grad_ref(exact, t_host, axis, 2.0, weight=w_host, **kw)
    np.testing.assert_allclose(d, expected, rtol=tol, atol=tol)
