"""softmax_backward and log_softmax_backward against the explicit Jacobian, central finite
differences and PyTorch autograd; the Softmax and LogSoftmax layers."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import softmax_dispatch as sd

torch = pytest.importorskip("torch")

FN_PAIRS = {
    "softmax": (sd.softmax, sd.softmax_backward),
    "log_softmax": (sd.log_softmax, sd.log_softmax_backward),
}


# --------------------------------------------------------------------------- references


def _axes_tuple(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, tuple):
        return tuple(a % ndim for a in axis)
    return (axis % ndim,)


def _to_rows(a, axes):
    """``a`` with ``axes`` moved last and flattened: shape (rows, n), plus an inverse."""
    nd = a.ndim
    dest = list(range(nd - len(axes), nd))
    moved = np.moveaxis(a, axes, dest)
    n = math.prod(moved.shape[nd - len(axes) :])

    def back(rows):
        return np.moveaxis(rows.reshape(moved.shape), dest, axes)

    return moved.reshape(-1, n), back


def ref_forward(x, axis=-1, log=False):
    """Independent float64 softmax / log_softmax (no masks, finite input)."""
    x = np.asarray(x, dtype=np.float64)
    rows, back = _to_rows(x, _axes_tuple(axis, x.ndim))
    z = rows - rows.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
    return back(z - lse if log else np.exp(z - lse))


def jacobian_vjp(grad, y, axis=-1, *, log=False, where=None):
    """``J^T grad`` per row with the Jacobian built explicitly in float64.

    softmax: ``J = diag(p) - p p^T``; log_softmax: ``J[i, j] = delta_ij - p_j``; with a
    mask, rows and columns of masked entries are zero (their outputs are constants and
    their inputs are ignored).
    """
    grad = np.asarray(grad, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = np.ones(y.shape, bool) if where is None else np.broadcast_to(where, y.shape)
    axes = _axes_tuple(axis, y.ndim)
    g_rows, back = _to_rows(grad, axes)
    y_rows, _ = _to_rows(y, axes)
    k_rows, _ = _to_rows(keep, axes)
    out = np.zeros_like(g_rows)
    for r, (g, yy, k) in enumerate(zip(g_rows, y_rows, k_rows)):
        p = np.where(k, np.exp(yy) if log else yy, 0.0)
        ones = np.ones_like(p)
        jac = np.eye(len(p)) - np.outer(ones, p) if log else np.diag(p) - np.outer(p, p)
        jac = jac * np.outer(k, k)
        out[r] = jac.T @ np.where(k, g, 0.0)
    return back(out)


def finite_difference_vjp(forward, x, grad, axis, h=1e-6):
    """Central differences of ``sum(grad * forward(x, axis))`` (float64)."""
    x = np.array(x, dtype=np.float64)
    result = np.zeros_like(x)
    flat = x.reshape(-1)
    res_flat = result.reshape(-1)
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + h
        up = np.sum(grad * forward(x, axis=axis))
        flat[i] = orig - h
        down = np.sum(grad * forward(x, axis=axis))
        flat[i] = orig
        res_flat[i] = (up - down) / (2 * h)
    return result


def torch_vjp(name, x, grad, axis):
    """Gradient of ``sum(grad * f(x))`` by torch autograd; tuple axes are moved last and
    flattened so torch's one ``dim`` covers them; returns (forward, gradient)."""
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    axes = _axes_tuple(axis, t.ndim)
    nd = t.ndim
    dest = list(range(nd - len(axes), nd))
    moved = torch.movedim(t, axes, dest)
    flat = moved.reshape(*moved.shape[: nd - len(axes)], -1)
    fn = torch.softmax if name == "softmax" else torch.log_softmax
    out = torch.movedim(fn(flat, dim=-1).reshape(moved.shape), dest, axes)
    out.backward(torch.tensor(grad, dtype=torch.float64))
    return out.detach().numpy(), t.grad.numpy()


def _rand(shape, seed, scale=2.0, dtype=np.float64):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


# --------------------------------------------------------------------------- Jacobian


@pytest.mark.parametrize("name", list(FN_PAIRS))
@pytest.mark.parametrize("axis", [-1, 0, 1, (0, 2), (2, 0), None])
def test_backward_equals_explicit_jacobian(name, axis):
    x = _rand((3, 4, 5), seed=1)
    g = _rand((3, 4, 5), seed=2)
    log = name == "log_softmax"
    y = ref_forward(x, axis, log=log)
    dx = FN_PAIRS[name][1](g, y, axis)
    assert isinstance(dx, np.ndarray)
    assert dx.dtype == np.float64
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, jacobian_vjp(g, y, axis, log=log), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", list(FN_PAIRS))
@pytest.mark.parametrize("axis", [-1, 0, (0, 1)])
def test_backward_equals_central_finite_differences(name, axis):
    forward, backward = FN_PAIRS[name]
    x = _rand((3, 4), seed=3)
    g = _rand((3, 4), seed=4)
    y = forward(x, axis=axis)
    dx = backward(g, y, axis)
    assert dx.dtype == np.float64
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, finite_difference_vjp(forward, x, g, axis), rtol=1e-6, atol=1e-8)


def test_softmax_backward_is_not_the_diagonal_only_formula():
    x = _rand((4, 6), seed=5)
    g = _rand((4, 6), seed=6)
    y = ref_forward(x)
    dx = sd.softmax_backward(g, y)
    diagonal_only = g * y * (1 - y)
    full = jacobian_vjp(g, y)
    np.testing.assert_allclose(dx, full, rtol=1e-12, atol=1e-14)
    assert not np.allclose(dx, diagonal_only, rtol=1e-3, atol=1e-6)
    # The true gradient sums to zero along the axis (softmax sums to one); the diagonal
    # formula does not.
    np.testing.assert_allclose(dx.sum(-1), 0.0, atol=1e-14)
    assert np.abs(diagonal_only.sum(-1)).max() > 1e-3


def test_log_softmax_backward_gradient_sums_to_zero_only_for_zero_grad_sum():
    y = ref_forward(_rand((3, 5), seed=7), log=True)
    g = np.ones((3, 5))
    # g - p * sum(g) with g = 1: 1 - 5 p.
    dx = sd.log_softmax_backward(g, y)
    np.testing.assert_allclose(dx, 1.0 - 5.0 * np.exp(y), rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------- torch


@pytest.mark.parametrize("name", list(FN_PAIRS))
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2])
def test_backward_matches_torch_autograd_single_axis(name, axis):
    x = _rand((3, 4, 5), seed=8)
    g = _rand((3, 4, 5), seed=9)
    forward, backward = FN_PAIRS[name]
    t = torch.tensor(x, requires_grad=True)
    fn = torch.softmax if name == "softmax" else torch.log_softmax
    out = fn(t, dim=axis)
    out.backward(torch.tensor(g))
    y_torch = out.detach().numpy()
    dx = backward(g, y_torch, axis)
    assert dx.dtype == np.float64
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-12, atol=1e-14)
    # And through our own forward.
    np.testing.assert_allclose(
        backward(g, forward(x, axis=axis), axis), t.grad.numpy(), rtol=1e-12, atol=1e-14
    )


@pytest.mark.parametrize("name", list(FN_PAIRS))
@pytest.mark.parametrize("axis", [(0, 2), (2, 1), (0, 1, 2), None])
def test_backward_with_tuple_axes_matches_jacobian_and_flattened_torch(name, axis):
    x = _rand((3, 4, 5), seed=10)
    g = _rand((3, 4, 5), seed=11)
    log = name == "log_softmax"
    forward, backward = FN_PAIRS[name]
    y = forward(x, axis=axis)
    dx = backward(g, y, axis)
    assert dx.shape == x.shape
    assert dx.dtype == np.float64
    np.testing.assert_allclose(dx, jacobian_vjp(g, y, axis, log=log), rtol=1e-12, atol=1e-14)
    y_torch, dx_torch = torch_vjp(name, x, g, axis)
    np.testing.assert_allclose(y, y_torch, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, dx_torch, rtol=1e-12, atol=1e-14)


def test_empty_axis_tuple_backward_is_zero_for_softmax_and_identity_for_log_softmax():
    g = _rand((2, 3), seed=12)
    y = np.ones((2, 3))
    dx = sd.softmax_backward(g, y, ())
    assert dx.shape == (2, 3)
    np.testing.assert_array_equal(dx, 0.0)  # softmax over one element is the constant 1
    dlx = sd.log_softmax_backward(g, np.zeros((2, 3)), ())
    np.testing.assert_array_equal(dlx, 0.0)


# --------------------------------------------------------------------------- masks


@pytest.mark.parametrize("name", list(FN_PAIRS))
def test_masked_entries_get_exactly_zero_gradient(name):
    forward, backward = FN_PAIRS[name]
    log = name == "log_softmax"
    x = _rand((4, 6), seed=13)
    mask = np.random.default_rng(14).random((4, 6)) < 0.6
    mask[:, 0] = True
    mask[3, :] = False  # a fully masked row
    x[~mask] = np.nan  # masked logits are never looked at
    g = _rand((4, 6), seed=15)
    g[~mask] = np.nan  # nor the upstream gradient there
    y = forward(x, where=mask)
    dx = backward(g, y, where=mask)
    assert dx.dtype == np.float64
    assert dx.shape == x.shape
    assert not np.isnan(dx).any()
    assert (dx[~mask] == 0.0).all()
    np.testing.assert_array_equal(dx[3], 0.0)
    np.testing.assert_allclose(dx, jacobian_vjp(g, y, log=log, where=mask), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", list(FN_PAIRS))
def test_masked_gradient_equals_gradient_of_the_unmasked_subrow(name):
    forward, backward = FN_PAIRS[name]
    x = _rand((5,), seed=16)
    mask = np.array([True, False, True, True, False])
    g = _rand((5,), seed=17)
    dx = backward(g, forward(x, where=mask), where=mask)
    sub = backward(g[mask], forward(x[mask]))
    np.testing.assert_allclose(dx[mask], sub, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(dx[~mask], 0.0)
    _, dx_torch = torch_vjp(name, x[mask], g[mask], -1)
    np.testing.assert_allclose(dx[mask], dx_torch, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", list(FN_PAIRS))
def test_fully_masked_rows_with_minus_inf_logits_give_zero_gradient(name):
    forward, backward = FN_PAIRS[name]
    x = np.array([[-np.inf, -np.inf, -np.inf], [0.0, 1.0, -np.inf]])
    mask = np.array([[False, False, False], [True, True, False]])
    g = np.array([[1.0, np.nan, np.inf], [1.0, 2.0, np.nan]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        y = forward(x, where=mask)
        dx = backward(g, y, where=mask)
    np.testing.assert_array_equal(dx[0], 0.0)
    assert dx[1, 2] == 0.0
    assert np.isfinite(dx).all()


def test_broadcast_mask_in_backward():
    x = _rand((3, 4), seed=18)
    mask = np.array([True, True, False, True])
    g = _rand((3, 4), seed=19)
    y = sd.softmax(x, where=mask)
    dx = sd.softmax_backward(g, y, where=mask)
    np.testing.assert_array_equal(dx[:, 2], 0.0)
    np.testing.assert_allclose(dx, jacobian_vjp(g, y, where=mask), rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("name", list(FN_PAIRS))
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_low_precision_backward_keeps_dtype_and_accuracy(name, dtype):
    log = name == "log_softmax"
    y = ref_forward(_rand((4, 64), seed=20), log=log).astype(dtype)
    g = _rand((4, 64), seed=21, dtype=dtype)
    dx = FN_PAIRS[name][1](g, y)
    assert dx.dtype == dtype
    assert dx.shape == (4, 64)
    expected = jacobian_vjp(g, y, log=log)  # from the very same low-precision values
    tol = {np.float16: 2e-3, np.float32: 1e-6}[dtype]
    scale = np.abs(expected).max()
    np.testing.assert_allclose(dx.astype(np.float64), expected, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("axis", [-1, 0])
def test_float16_backward_accumulates_in_float32(axis):
    n = 70_000
    shape = (2, n) if axis == -1 else (n, 2)
    y = np.full(shape, np.float16(1 / n))
    g = np.zeros(shape, dtype=np.float16)
    if axis == -1:
        g[:, ::2] = 2.0
    else:
        g[::2] = 2.0
    dx = sd.softmax_backward(g, y, axis)
    assert dx.dtype == np.float16
    assert dx.shape == shape
    # sum(g * y) is about 1; a running float16 sum (as along axis 0) stalls at 0.0625.
    y64, g64 = y.astype(np.float64), g.astype(np.float64)
    expected = y64 * (g64 - np.sum(g64 * y64, axis=axis, keepdims=True))
    assert np.abs(expected).min() > 1e-5
    np.testing.assert_allclose(dx.astype(np.float64), expected, rtol=5e-3, atol=6e-8)


def test_integer_grad_is_accepted_and_cast_to_y_dtype():
    y = ref_forward(_rand((3, 4), seed=22))
    g = np.array([[1, 0, -2, 3], [0, 0, 1, 0], [5, -1, 0, 2]], dtype=np.int32)
    dx = sd.softmax_backward(g, y)
    assert dx.dtype == np.float64
    np.testing.assert_allclose(dx, jacobian_vjp(g.astype(np.float64), y), rtol=1e-12)
    y32 = y.astype(np.float32)
    dlx = sd.log_softmax_backward(g, np.log(y32))
    assert dlx.dtype == np.float32
    np.testing.assert_allclose(dlx, jacobian_vjp(g, np.log(y32), log=True), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name", list(FN_PAIRS))
@pytest.mark.parametrize("gshape", [(3, 4), (3, 5, 1), (5,), (1, 5)])
def test_grad_shape_mismatch_is_a_value_error(name, gshape):
    y = np.full((3, 5), 0.2)
    with pytest.raises(ValueError, match=r"\(3, 5\)"):
        FN_PAIRS[name][1](np.ones(gshape), y)


def test_non_floating_y_is_a_type_error():
    with pytest.raises(TypeError, match="y"):
        sd.softmax_backward(np.ones(3), np.ones(3, dtype=np.int64))


def test_backward_axis_errors_name_axis_and_ndim():
    with pytest.raises((ValueError, IndexError), match=r"axis 2 .*dimension 2"):
        sd.softmax_backward(np.ones((2, 3)), np.full((2, 3), 1 / 3), 2)


# --------------------------------------------------------------------------- out= and purity


@pytest.mark.parametrize("name", list(FN_PAIRS))
def test_backward_out_receives_result_and_inputs_are_not_mutated(name):
    log = name == "log_softmax"
    y = ref_forward(_rand((3, 4), seed=23), log=log)
    g = _rand((3, 4), seed=24)
    y0, g0 = y.copy(), g.copy()
    out = np.full((3, 4), 99.0)
    got = FN_PAIRS[name][1](g, y, out=out)
    assert got is out
    np.testing.assert_allclose(out, jacobian_vjp(g0, y0, log=log), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(g, g0)
    # In place into the upstream gradient.
    got = FN_PAIRS[name][1](g, y, out=g)
    assert got is g
    np.testing.assert_allclose(g, jacobian_vjp(g0, y0, log=log), rtol=1e-12, atol=1e-14)


def test_backward_on_transposed_inputs():
    x = _rand((5, 3), seed=25)
    g = _rand((5, 3), seed=26)
    y = ref_forward(x.T, axis=0)
    dx = sd.softmax_backward(g.T, y, axis=0)
    np.testing.assert_allclose(dx, jacobian_vjp(g.T, y, axis=0), rtol=1e-12, atol=1e-14)


def test_zero_size_backward_keeps_shape():
    dx = sd.softmax_backward(np.zeros((0, 4)), np.zeros((0, 4), dtype=np.float32))
    assert dx.shape == (0, 4)
    assert dx.dtype == np.float32


# --------------------------------------------------------------------------- layers


@pytest.mark.parametrize(
    ("layer_cls", "torch_fn"),
    [(sd.Softmax, "softmax"), (sd.LogSoftmax, "log_softmax")],
)
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_layer_forward_backward_match_torch(layer_cls, torch_fn, axis):
    x = _rand((4, 3, 5), seed=27)
    g = _rand((4, 3, 5), seed=28)
    layer = layer_cls(axis=axis)
    y = layer.forward(x)
    dx = layer.backward(g)
    assert y.dtype == dx.dtype == np.float64
    assert y.shape == dx.shape == x.shape
    t = torch.tensor(x, requires_grad=True)
    out = getattr(torch, torch_fn)(t, dim=axis)
    out.backward(torch.tensor(g))
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("layer_cls", [sd.Softmax, sd.LogSoftmax])
def test_layer_backward_before_forward_is_a_runtime_error(layer_cls):
    with pytest.raises(RuntimeError, match="forward"):
        layer_cls().backward(np.ones((2, 3)))


@pytest.mark.parametrize("layer_cls", [sd.Softmax, sd.LogSoftmax])
def test_layer_backward_uses_the_latest_forward_and_survives_input_mutation(layer_cls):
    log = layer_cls is sd.LogSoftmax
    layer = layer_cls()
    layer.forward(_rand((2, 3), seed=29))
    x = _rand((2, 3), seed=30)
    y = layer.forward(x)
    x[...] = 0.0  # what backward needs was saved, not a view of x
    g = _rand((2, 3), seed=31)
    np.testing.assert_allclose(
        layer.backward(g), jacobian_vjp(g, y, log=log), rtol=1e-12, atol=1e-14
    )


def test_layer_with_mask_gives_zero_gradient_at_masked_entries():
    layer = sd.Softmax()
    x = _rand((2, 4), seed=32)
    mask = np.array([[True, False, True, True], [False, False, False, False]])
    y = layer.forward(x, where=mask)
    dx = layer.backward(np.ones((2, 4)) + _rand((2, 4), seed=33))
    np.testing.assert_array_equal(y[1], 0.0)
    np.testing.assert_array_equal(dx[~mask], 0.0)
    assert not np.isnan(dx).any()


def test_tutorial_softmax_layer_with_integer_input_matches_torch():
    np.random.seed(0)
    x = np.random.randint(0, 10, size=(3, 5))
    g = np.random.randn(3, 5)
    layer = sd.Softmax()
    y = layer.forward(x)
    dx = layer.backward(g)
    assert y.dtype == dx.dtype == np.float64
    assert y.shape == dx.shape == (3, 5)
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    out = torch.softmax(t, dim=-1)
    out.backward(torch.tensor(g))
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-12, atol=1e-14)
    # The tutorial's diagonal-only gradient would not pass this check.
    assert not np.allclose(g * y * (1 - y), t.grad.numpy(), rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("axis", [1.5, "0", True])
def test_layer_rejects_bad_axis(axis):
    with pytest.raises(TypeError, match="axis"):
        sd.Softmax(axis=axis)
