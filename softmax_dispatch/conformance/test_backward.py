"""softmax_backward and log_softmax_backward: reference values, the full Jacobian,
central finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest

import softmax_dispatch as sd
from softmax_dispatch.conformance import reference as ref
from softmax_dispatch.conformance._data import logits

OPS = {
    "softmax": (sd.softmax, sd.softmax_backward, ref.softmax_backward_ref),
    "log_softmax": (sd.log_softmax, sd.log_softmax_backward, ref.log_softmax_backward_ref),
}


def _bound(g, y, expected, axes, dtype, op):
    """Rounding of the products and of the row sum, amplified by nothing else."""
    n = math.prod(y.shape[a] for a in axes) if axes else 1
    if op == "softmax":
        scale = np.abs(y) * (np.abs(g) + ref.row_sums(np.abs(g * y), axes))
    else:
        scale = np.abs(g) + np.exp(y) * ref.row_sums(np.abs(g), axes)
    rel = ref.SLACK * ref.compute_eps(dtype) * (1 + math.sqrt(n))
    return ref.UNIT_ROUNDOFF[dtype] * np.abs(expected) + rel * scale + ref.TINY[dtype]


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize(
    ("shape", "axis", "axes"),
    [((5, 9), -1, (1,)), ((6, 3), 0, (0,)), ((2, 3, 4), (0, 2), (0, 2)), ((3, 4), None, (0, 1))],
    ids=["last", "first", "tuple", "none"],
)
def test_backward_matches_reference(target, dtype, op, shape, axis, axes):
    fwd, bwd, reference = OPS[op]
    x = target.asarray(logits(shape, seed=21), dtype)
    y = target.call(fwd, x, axis)
    g, g_exact = target.exact(logits(shape, seed=22, scale=1.0), dtype)
    dx = target.call(bwd, g, y, axis)
    target.same_place(dx, x)
    assert dx.dtype == target.dtype(dtype) and tuple(dx.shape) == shape
    y_exact = target.to_numpy(y)
    expected = reference(g_exact, y_exact, axes)
    bound = _bound(g_exact, y_exact, expected, axes, dtype, op)
    ref.assert_within(target.to_numpy(dx), expected, bound, f"{op}_backward")


def _best_dtype(target) -> str:
    return "float64" if "float64" in target.dtypes else "float32"


def test_softmax_backward_is_the_full_jacobian(target):
    """Row j of J = diag(y) - y yᵀ is the VJP with the unit vector e_j: catches the
    diagonal-only ``g * y * (1 - y)``."""
    dtype = _best_dtype(target)
    n = 6
    x = target.asarray(logits((1, n), seed=23, scale=1.0), dtype)
    y = target.call(sd.softmax, x)
    y_host = target.to_numpy(y)[0]
    jac = np.diag(y_host) - np.outer(y_host, y_host)
    rows = [
        target.to_numpy(
            target.call(sd.softmax_backward, target.asarray(np.eye(n)[j : j + 1], dtype), y)
        )[0]
        for j in range(n)
    ]
    tol = 32 * ref.compute_eps(dtype)
    np.testing.assert_allclose(np.array(rows), jac, rtol=tol, atol=tol)


def test_log_softmax_backward_is_the_full_jacobian(target):
    """J = I - 1 softmaxᵀ for log_softmax."""
    dtype = _best_dtype(target)
    n = 6
    x = target.asarray(logits((1, n), seed=24, scale=1.0), dtype)
    y = target.call(sd.log_softmax, x)
    p = np.exp(target.to_numpy(y)[0])
    jac = np.eye(n) - np.outer(np.ones(n), p)
    rows = [
        target.to_numpy(
            target.call(sd.log_softmax_backward, target.asarray(np.eye(n)[j : j + 1], dtype), y)
        )[0]
        for j in range(n)
    ]
    tol = 32 * ref.compute_eps(dtype)
    np.testing.assert_allclose(np.array(rows), jac, rtol=tol, atol=tol)


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("axis", [-1, 0, (0, 1)], ids=["last", "first", "tuple"])
def test_backward_matches_central_finite_differences(target, op, axis):
    """<g, dx> against (f(x + h v) - f(x - h v)) / 2h along random directions v."""
    dtype = _best_dtype(target)
    fwd, bwd, _ = OPS[op]
    host = logits((3, 4), seed=25, scale=1.0)
    g_host = logits((3, 4), seed=26, scale=1.0)
    x = target.asarray(host, dtype)
    y = target.call(fwd, x, axis)
    dx = target.to_numpy(target.call(bwd, target.asarray(g_host, dtype), y, axis))
    h = 1e-6 if dtype == "float64" else 1e-2
    rng = np.random.default_rng(27)
    for _ in range(3):
        v = rng.normal(size=host.shape)
        plus = target.to_numpy(target.call(fwd, target.asarray(host + h * v, dtype), axis))
        minus = target.to_numpy(target.call(fwd, target.asarray(host - h * v, dtype), axis))
        fd = np.sum(g_host * (plus - minus)) / (2 * h)
        analytic = np.sum(dx * v)
        tol = 1e-7 if dtype == "float64" else 2e-2
        assert abs(fd - analytic) <= tol * (1 + abs(fd)), f"{op}: FD {fd} vs VJP {analytic}"


def test_backward_with_empty_axes_is_zero(target, dtype):
    x = target.asarray(logits((2, 3), seed=28), dtype)
    for op in OPS:
        fwd, bwd, _ = OPS[op]
        y = target.call(fwd, x, ())
        dx = target.to_numpy(target.call(bwd, target.asarray(np.ones((2, 3)), dtype), y, ()))
        np.testing.assert_array_equal(dx, np.zeros((2, 3)))
