"""Property-based checks over shapes, axes, dtypes and magnitudes (hypothesis; settings
``ci`` by default, ``SOFTMAX_DISPATCH_HYPOTHESIS=full`` for more examples)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import softmax_dispatch as sd
from softmax_dispatch.conformance import reference as ref
from softmax_dispatch.conformance.fixtures import hypothesis_settings

SETTINGS = hypothesis_settings()


@st.composite
def cases(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)))
    kind = draw(st.sampled_from(["int", "tuple", "none"]))
    if kind == "int":
        axis = draw(st.integers(-ndim, ndim - 1))
        axes = (axis % ndim,)
    elif kind == "tuple":
        axes = tuple(sorted(draw(st.sets(st.integers(0, ndim - 1), min_size=1))))
        axis = axes
    else:
        axis, axes = None, tuple(range(ndim))
    scale = draw(st.sampled_from([1e-3, 1.0, 30.0, 1e4]))
    seed = draw(st.integers(0, 2**16))
    data = np.random.default_rng(seed).normal(0, scale, size=shape)
    return data, axis, axes


@SETTINGS
@given(case=cases(), log=st.booleans())
def test_forward_matches_reference(target, dtype, case, log):
    data, axis, axes = case
    fn = sd.log_softmax if log else sd.softmax
    x, exact = target.exact(data, dtype)
    y = target.call(fn, x, axis)
    assert y.dtype == target.dtype(dtype) and tuple(y.shape) == data.shape
    expected = (ref.log_softmax_ref if log else ref.softmax_ref)(exact, axes)
    bound = (ref.log_softmax_bound if log else ref.softmax_bound)(exact, expected, axes, dtype)
    ref.assert_within(target.to_numpy(y), expected, bound, fn.__name__)


@SETTINGS
@given(case=cases())
def test_backward_matches_reference(target, dtype, case):
    data, axis, axes = case
    x = target.asarray(data, dtype)
    y = target.call(sd.softmax, x, axis)
    g, g_exact = target.exact(np.cos(data), dtype)
    dx = target.to_numpy(target.call(sd.softmax_backward, g, y, axis))
    y_exact = target.to_numpy(y)
    expected = ref.softmax_backward_ref(g_exact, y_exact, axes)
    n = int(np.prod([data.shape[a] for a in axes]))
    scale = np.abs(y_exact) * (np.abs(g_exact) + ref.row_sums(np.abs(g_exact * y_exact), axes))
    bound = (
        ref.UNIT_ROUNDOFF[dtype] * np.abs(expected)
        + ref.SLACK * ref.compute_eps(dtype) * (1 + np.sqrt(n)) * scale
        + ref.TINY[dtype]
    )
    ref.assert_within(dx, expected, bound, "softmax_backward")
