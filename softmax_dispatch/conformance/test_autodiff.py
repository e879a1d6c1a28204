"""The library's own autodiff through the public functions (PyTorch, JAX): it must agree
with the explicit backward functions, and masked outputs must be constants — nothing
flows from ``x`` through them, in reverse or forward mode, whatever the upstream gradient
holds at masked positions."""

from __future__ import annotations

import numpy as np
import pytest

import softmax_dispatch as sd
from softmax_dispatch.conformance import autodiff
from softmax_dispatch.conformance._data import logits, rng
from softmax_dispatch.conformance.fixtures import only

FORWARD = {
    "softmax": (sd.softmax, sd.softmax_backward),
    "log_softmax": (sd.log_softmax, sd.log_softmax_backward),
}
#: row 0 partly masked, row 1 fully masked, row 2 not masked
MASK = np.array(
    [
        [True, False, True, True, False],
        [False, False, False, False, False],
        [True, True, True, True, True],
    ]
)
#: upstream gradient, large at the masked positions: a leak cannot hide
COTANGENT = np.where(MASK, 1.0, 10.0) * np.array([1.0, -2.0, 0.5, 3.0, -1.0])
TOL = {"float32": 2e-5, "float64": 1e-12}

differentiable = only(
    lambda t: autodiff.differentiates(t.xp) is not None,
    "autodiff checks: no backend checked here runs on PyTorch or JAX arrays",
)


def _dtypes(target) -> list[str]:
    return [d for d in ("float32", "float64") if d in target.dtypes]


def _close(actual, expected, dtype, what):
    np.testing.assert_allclose(actual, expected, rtol=TOL[dtype], atol=TOL[dtype], err_msg=what)


@differentiable
@pytest.mark.parametrize("op", sorted(FORWARD))
def test_autodiff_through_a_mask_equals_the_explicit_backward(target, op):
    fwd, bwd = FORWARD[op]
    for dtype in _dtypes(target):
        x = target.asarray(logits(MASK.shape, seed=81), dtype)
        where = target.asarray(MASK)
        ct = target.asarray(COTANGENT, dtype)

        def f(a, where=where):
            return target.call(fwd, a, -1, where=where)

        (got,) = autodiff.vjp(target.xp, f, (x,), ct)
        expected = target.call(bwd, ct, f(x), -1, where=where)
        got, expected = target.to_numpy(got), target.to_numpy(expected)
        _close(got, expected, dtype, f"{op}: autodiff through where= vs {bwd.__name__}")
        assert np.all(got[~MASK] == 0), f"{op}: gradient at masked entries: {got[~MASK]}"


@differentiable
@pytest.mark.parametrize("op", sorted(FORWARD))
def test_forward_mode_through_a_mask_equals_the_jacobian(target, op):
    """``jvp(t)[k] = <backward(e_k), t>``: the explicit backward gives the Jacobian's rows."""
    fwd, bwd = FORWARD[op]
    for dtype in _dtypes(target):
        x = target.asarray(logits(MASK.shape, seed=82), dtype)
        where = target.asarray(MASK)
        tangent_host = rng(83).normal(size=MASK.shape)
        tangent = target.asarray(tangent_host, dtype)

        def f(a, where=where):
            return target.call(fwd, a, -1, where=where)

        got = target.to_numpy(autodiff.jvp(target.xp, f, (x,), (tangent,)))
        y = f(x)
        expected = np.zeros(MASK.shape)
        for k in np.ndindex(MASK.shape):
            e_k = np.zeros(MASK.shape)
            e_k[k] = 1.0
            row = target.to_numpy(target.call(bwd, target.asarray(e_k, dtype), y, -1, where=where))
            expected[k] = np.sum(row * target.to_numpy(tangent))
        _close(got, expected, dtype, f"{op}: forward mode through where= vs the Jacobian")
        assert np.all(got[~MASK] == 0), f"{op}: tangent at masked outputs: {got[~MASK]}"


@differentiable
@pytest.mark.parametrize("op", ["softmax_backward", "log_softmax_backward"])
def test_masked_outputs_of_the_backward_functions_are_constants(target, op):
    fwd = sd.softmax if op == "softmax_backward" else sd.log_softmax
    bwd = getattr(sd, op)
    for dtype in _dtypes(target):
        where = target.asarray(MASK)
        y = target.call(fwd, target.asarray(logits(MASK.shape, seed=84), dtype), -1, where=where)
        g = target.asarray(logits(MASK.shape, seed=85, scale=1.0), dtype)
        only_masked = target.asarray(np.where(MASK, 0.0, COTANGENT), dtype)

        def f(g_, y_, where=where):
            return target.call(bwd, g_, y_, -1, where=where)

        for name, grad in zip(("grad", "y"), autodiff.vjp(target.xp, f, (g, y), only_masked)):
            grad = target.to_numpy(grad)
            assert np.all(grad == 0), f"{op}: masked outputs depend on {name}: {grad}"
        tangents = [target.asarray(rng(86 + i).normal(size=MASK.shape), dtype) for i in (0, 1)]
        out = target.to_numpy(autodiff.jvp(target.xp, f, (g, y), tangents))
        assert np.all(out[~MASK] == 0), f"{op}: tangent at masked outputs: {out[~MASK]}"
