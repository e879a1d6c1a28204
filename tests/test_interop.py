"""softmax_dispatch called on other libraries' arrays: PyTorch, JAX, array-api-strict, Dask.

Every result must be an array of the input's library, on the input's device, with the
input's shape and (floating) dtype, and agree with a float64 NumPy reference computed here,
independently of the package: a direct float64 softmax, the full Jacobian for the backward
passes, and the textbook cross-entropy (or the library's own implementation, e.g.
``torch.nn.functional.cross_entropy`` and ``jax.nn.log_softmax``).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import softmax_dispatch as sd

# ---------------------------------------------------------------------------------------
# Float64 NumPy references, independent of the package's kernels.


def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        return (axis % ndim,)
    return tuple(a % ndim for a in axis)


def ref_softmax(x, axis=-1):
    x = np.asarray(x, dtype=np.float64)
    axes = _axes(axis, x.ndim)
    e = np.exp(x - np.max(x, axis=axes, keepdims=True))
    return e / np.sum(e, axis=axes, keepdims=True)


def ref_log_softmax(x, axis=-1):
    x = np.asarray(x, dtype=np.float64)
    axes = _axes(axis, x.ndim)
    m = np.max(x, axis=axes, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True))


def ref_softmax_backward(g, x, axis=-1):
    """``g @ J`` with the full softmax Jacobian ``J[i, j] = p_i (delta_ij - p_j)``."""
    p = np.moveaxis(ref_softmax(x, axis), axis, -1)
    g = np.moveaxis(np.asarray(g, dtype=np.float64), axis, -1)
    eye = np.eye(p.shape[-1])
    jac = p[..., :, None] * eye - p[..., :, None] * p[..., None, :]
    return np.moveaxis(np.einsum("...i,...ij->...j", g, jac), -1, axis)


def ref_log_softmax_backward(g, x, axis=-1):
    """``g @ J`` with the full log-softmax Jacobian ``J[i, j] = delta_ij - p_j``."""
    p = np.moveaxis(ref_softmax(x, axis), axis, -1)
    g = np.moveaxis(np.asarray(g, dtype=np.float64), axis, -1)
    eye = np.eye(p.shape[-1])
    jac = eye - np.broadcast_to(p[..., None, :], (*p.shape, p.shape[-1]))
    return np.moveaxis(np.einsum("...i,...ij->...j", g, jac), -1, axis)


def ref_cross_entropy(logits, target):
    """Mean over samples of ``-log softmax(logits)[target]``; classes on the last axis."""
    logp = ref_log_softmax(logits, -1)
    target = np.asarray(target)
    if np.issubdtype(target.dtype, np.integer):
        return -np.mean(np.take_along_axis(logp, target[..., None], axis=-1))
    return -np.mean(np.sum(np.asarray(target, dtype=np.float64) * logp, axis=-1))


def ref_cross_entropy_backward(logits, target):
    """``(softmax(logits) - q) / N`` for the mean-reduced loss."""
    p = ref_softmax(logits, -1)
    target = np.asarray(target)
    if np.issubdtype(target.dtype, np.integer):
        q = np.eye(p.shape[-1])[target]
    else:
        q = np.asarray(target, dtype=np.float64)
    return (p - q) / (p.size // p.shape[-1])


FORWARD = {"softmax": (sd.softmax, ref_softmax), "log_softmax": (sd.log_softmax, ref_log_softmax)}
BACKWARD = {
    "softmax": (sd.softmax_backward, ref_softmax, ref_softmax_backward),
    "log_softmax": (sd.log_softmax_backward, ref_log_softmax, ref_log_softmax_backward),
}
AXES = [-1, 0, (0, 2), None]

# Tolerances for a result in the given dtype against the float64 reference.
TOL = {
    "float64": dict(rtol=1e-12, atol=1e-14),
    "float32": dict(rtol=2e-5, atol=2e-6),
    "float16": dict(rtol=2e-3, atol=2e-3),
    "bfloat16": dict(rtol=1.6e-2, atol=1.6e-2),
}


def data(shape=(3, 4, 5), seed=0, scale=3.0):
    return np.random.default_rng(seed).normal(scale=scale, size=shape)


# ---------------------------------------------------------------------------------------
# PyTorch


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def to_numpy_torch(t):
    return t.detach().cpu().double().numpy()


def assert_torch_like(result, like, dtype=None):
    import torch

    assert type(result) is torch.Tensor
    assert result.device == like.device
    assert tuple(result.shape) == tuple(like.shape)
    assert result.dtype == (like.dtype if dtype is None else dtype)


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("op", sorted(FORWARD))
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_torch_forward_is_a_tensor_of_input_dtype_matching_float64_reference(
    torch, dtype, op, axis
):
    fn, ref = FORWARD[op]
    x = torch.tensor(data(), dtype=getattr(torch, dtype))
    before = x.clone()
    result = fn(x, axis)
    assert_torch_like(result, x)
    # The reference sees the very values the tensor holds (after rounding to dtype).
    np.testing.assert_allclose(to_numpy_torch(result), ref(to_numpy_torch(x), axis), **TOL[dtype])
    assert torch.equal(x, before), "the input was modified"


@pytest.mark.parametrize("op", sorted(FORWARD))
def test_torch_forward_on_non_contiguous_tensor(torch, op):
    fn, ref = FORWARD[op]
    x = torch.tensor(data((5, 4, 3)), dtype=torch.float64).transpose(0, 2)
    assert not x.is_contiguous()
    result = fn(x, 1)
    assert_torch_like(result, x)
    np.testing.assert_allclose(to_numpy_torch(result), ref(to_numpy_torch(x), 1), **TOL["float64"])


def test_torch_integer_input_gives_default_float_without_wraparound(torch):
    x = torch.tensor([-128, 127], dtype=torch.int8)
    result = sd.softmax(x)
    assert_torch_like(result, x, dtype=torch.get_default_dtype())
    np.testing.assert_allclose(to_numpy_torch(result), [0.0, 1.0], atol=1e-6)


def test_torch_dtype_argument_casts_before_computing(torch):
    x = torch.tensor(data(), dtype=torch.float32)
    result = sd.log_softmax(x, dtype=torch.float64)
    assert_torch_like(result, x, dtype=torch.float64)
    np.testing.assert_allclose(
        to_numpy_torch(result), ref_log_softmax(to_numpy_torch(x)), **TOL["float64"]
    )


@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("op", sorted(BACKWARD))
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_torch_backward_matches_full_jacobian(torch, dtype, op, axis):
    fn, ref_forward, ref_backward = BACKWARD[op]
    tdtype = getattr(torch, dtype)
    x = data(seed=1)
    # y is the float64 reference forward output, rounded to dtype: independent of sd.
    y = torch.tensor(ref_forward(x, axis), dtype=tdtype)
    g = torch.tensor(data(seed=2, scale=1.0), dtype=tdtype)
    result = fn(g, y, axis)
    assert_torch_like(result, y)
    expected = ref_backward(to_numpy_torch(g), x, axis)
    np.testing.assert_allclose(to_numpy_torch(result), expected, **TOL[dtype])


@pytest.mark.parametrize("target_kind", ["index", "probability"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_torch_cross_entropy_and_backward_match_reference(torch, dtype, target_kind):
    tdtype = getattr(torch, dtype)
    logits = torch.tensor(data((6, 5), seed=3), dtype=tdtype)
    rng = np.random.default_rng(4)
    if target_kind == "index":
        target_np = rng.integers(0, 5, size=6)
        target = torch.tensor(target_np)
    else:
        target_np = ref_softmax(rng.normal(size=(6, 5)))
        target = torch.tensor(target_np, dtype=tdtype)
        target_np = to_numpy_torch(target)
    logits_np = to_numpy_torch(logits)

    loss = sd.softmax_cross_entropy(logits, target)
    assert type(loss) is torch.Tensor
    assert loss.shape == ()
    assert loss.dtype == tdtype
    assert loss.device == logits.device
    np.testing.assert_allclose(float(loss), ref_cross_entropy(logits_np, target_np), **TOL[dtype])

    dlogits = sd.softmax_cross_entropy_backward(logits, target)
    assert_torch_like(dlogits, logits)
    np.testing.assert_allclose(
        to_numpy_torch(dlogits), ref_cross_entropy_backward(logits_np, target_np), **TOL[dtype]
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_torch_cross_entropy_options_match_torch_functional(torch, reduction):
    import torch.nn.functional as F

    logits = torch.tensor(data((7, 4), seed=5), dtype=torch.float64)
    target = torch.tensor([0, 3, -100, 1, 2, 3, 0])
    weight = torch.tensor([0.5, 2.0, 1.0, 1.5], dtype=torch.float64)
    options = dict(reduction=reduction, label_smoothing=0.1, ignore_index=-100, weight=weight)

    loss = sd.softmax_cross_entropy(logits, target, **options)
    leaf = logits.clone().requires_grad_()
    expected = F.cross_entropy(leaf, target, **options)
    assert type(loss) is torch.Tensor
    assert loss.dtype == torch.float64
    assert tuple(loss.shape) == tuple(expected.shape)
    np.testing.assert_allclose(to_numpy_torch(loss), to_numpy_torch(expected), rtol=1e-12)

    upstream = torch.linspace(0.5, 2.0, 7, dtype=torch.float64) if reduction == "none" else 1.0
    dlogits = sd.softmax_cross_entropy_backward(logits, target, upstream, **options)
    expected.backward(upstream if reduction == "none" else None)
    assert_torch_like(dlogits, logits)
    np.testing.assert_allclose(to_numpy_torch(dlogits), to_numpy_torch(leaf.grad), rtol=1e-12)


@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_autograd_flows_through_forward(torch, dtype, op, axis):
    fn = getattr(sd, op)
    torch_fn = getattr(torch, op)
    base = torch.tensor(data(seed=6), dtype=getattr(torch, dtype))
    weights = torch.tensor(data(seed=7, scale=1.0), dtype=base.dtype)

    x = base.clone().requires_grad_()
    y = fn(x, axis)
    assert y.requires_grad and y.grad_fn is not None
    (y * weights).sum().backward()

    x_ref = base.clone().requires_grad_()
    (torch_fn(x_ref, axis) * weights).sum().backward()

    assert x.grad is not None
    assert x.grad.dtype == base.dtype
    np.testing.assert_allclose(to_numpy_torch(x.grad), to_numpy_torch(x_ref.grad), **TOL[dtype])


def test_torch_autograd_flows_through_cross_entropy(torch):
    import torch.nn.functional as F

    base = torch.tensor(data((8, 5), seed=8), dtype=torch.float32)
    target = torch.tensor(np.random.default_rng(9).integers(0, 5, size=8))

    x = base.clone().requires_grad_()
    loss = sd.softmax_cross_entropy(x, target)
    assert loss.requires_grad
    loss.backward()

    x_ref = base.clone().requires_grad_()
    F.cross_entropy(x_ref, target).backward()
    np.testing.assert_allclose(to_numpy_torch(x.grad), to_numpy_torch(x_ref.grad), **TOL["float32"])


def test_torch_parameter_logits_with_plain_tensor_target(torch):
    # nn.Parameter is a torch.Tensor subclass: one library with the plain tensor target.
    import torch.nn.functional as F

    base = torch.tensor(data((4, 3), seed=40), dtype=torch.float32)
    target = torch.tensor([0, 2, 1, 2])
    param = torch.nn.Parameter(base.clone())
    loss = sd.softmax_cross_entropy(param, target)
    loss.backward()
    x_ref = base.clone().requires_grad_()
    F.cross_entropy(x_ref, target).backward()
    np.testing.assert_allclose(float(loss), float(F.cross_entropy(base, target)), rtol=1e-6)
    np.testing.assert_allclose(
        to_numpy_torch(param.grad), to_numpy_torch(x_ref.grad), **TOL["float32"]
    )


@pytest.mark.parametrize("masked_value", [float("-inf"), float("nan"), 5.0])
def test_torch_autograd_with_where_gives_zero_gradient_on_masked_entries(torch, masked_value):
    x = torch.tensor([[1.0, 2.0, 0.5, -1.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[True, False, True, False], [False, False, False, False]])
    x = torch.where(mask, x, torch.tensor(masked_value, dtype=torch.float64)).requires_grad_()
    weights = torch.tensor([[1.0, -2.0, 3.0, 0.5], [1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    y = sd.softmax(x, where=mask)
    (y * weights).sum().backward()
    grad = to_numpy_torch(x.grad)
    assert np.all(np.isfinite(grad))
    assert np.all(grad[~mask.numpy()] == 0.0)
    # Row 0 restricted to its unmasked entries is an ordinary softmax.
    kept = np.array([1.0, 0.5])
    expected = ref_softmax_backward(np.array([1.0, 3.0]), kept)
    np.testing.assert_allclose(grad[0, [0, 2]], expected, rtol=1e-12)


@pytest.mark.parametrize("op", sorted(FORWARD))
def test_torch_out_receives_result_and_is_returned(torch, op):
    fn, ref = FORWARD[op]
    x = torch.tensor(data(), dtype=torch.float32)
    before = x.clone()
    out = torch.full_like(x, 7.0)
    result = fn(x, 1, out=out)
    assert result is out
    np.testing.assert_allclose(to_numpy_torch(out), ref(to_numpy_torch(x), 1), **TOL["float32"])
    assert torch.equal(x, before)


def test_torch_out_is_x_computes_in_place(torch):
    x = torch.tensor(data(), dtype=torch.float64)
    expected = ref_softmax(to_numpy_torch(x))
    result = sd.softmax(x, out=x)
    assert result is x
    np.testing.assert_allclose(to_numpy_torch(x), expected, **TOL["float64"])


def test_torch_out_for_backward(torch):
    x = data(seed=10)
    y = torch.tensor(ref_softmax(x), dtype=torch.float64)
    g = torch.tensor(data(seed=11), dtype=torch.float64)
    out = torch.empty_like(y)
    assert sd.softmax_backward(g, y, out=out) is out
    np.testing.assert_allclose(
        to_numpy_torch(out), ref_softmax_backward(to_numpy_torch(g), x), **TOL["float64"]
    )


def test_torch_out_with_wrong_dtype_is_rejected(torch):
    x = torch.zeros((2, 3), dtype=torch.float32)
    with pytest.raises(ValueError, match="dtype"):
        sd.softmax(x, out=torch.zeros((2, 3), dtype=torch.float64))


# ---------------------------------------------------------------------------------------
# JAX


@pytest.fixture(scope="module")
def jax():
    return pytest.importorskip("jax")


def assert_jax_like(result, like, dtype=None):
    import jax

    assert isinstance(result, jax.Array)
    assert result.devices() == like.devices()
    assert tuple(result.shape) == tuple(like.shape)
    assert result.dtype == (like.dtype if dtype is None else dtype)


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("op", sorted(FORWARD))
def test_jax_eager_forward_matches_reference(jax, op, axis):
    fn, ref = FORWARD[op]
    x = jax.numpy.asarray(data(), dtype=jax.numpy.float32)
    result = fn(x, axis)
    assert_jax_like(result, x)
    np.testing.assert_allclose(np.asarray(result), ref(np.asarray(x), axis), **TOL["float32"])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_jax_half_precision_keeps_its_dtype(jax, dtype):
    jdtype = getattr(jax.numpy, dtype)
    x = jax.numpy.asarray(data((4, 70)), dtype=jdtype)
    result = sd.softmax(x)
    assert_jax_like(result, x)
    np.testing.assert_allclose(
        np.asarray(result, dtype=np.float64),
        ref_softmax(np.asarray(x, dtype=np.float64)),
        **TOL[dtype],
    )


@pytest.mark.parametrize("op", sorted(BACKWARD))
def test_jax_eager_backward_matches_full_jacobian(jax, op):
    fn, ref_forward, ref_backward = BACKWARD[op]
    x = data(seed=12)
    y = jax.numpy.asarray(ref_forward(x, 0), dtype=jax.numpy.float32)
    g = jax.numpy.asarray(data(seed=13), dtype=jax.numpy.float32)
    result = fn(g, y, 0)
    assert_jax_like(result, y)
    np.testing.assert_allclose(
        np.asarray(result), ref_backward(np.asarray(g), x, 0), rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("axis", [0, -1, (1, 2)])
@pytest.mark.parametrize("op", sorted(FORWARD))
def test_jax_forward_under_jit_with_static_axis(jax, op, axis):
    fn, ref = FORWARD[op]
    x = jax.numpy.asarray(data(seed=14), dtype=jax.numpy.float32)
    jitted = jax.jit(functools.partial(fn, axis=axis))
    result = jitted(x)
    assert_jax_like(result, x)
    np.testing.assert_allclose(np.asarray(result), ref(np.asarray(x), axis), **TOL["float32"])


@pytest.mark.parametrize("op", sorted(BACKWARD))
def test_jax_backward_under_jit(jax, op):
    fn, ref_forward, ref_backward = BACKWARD[op]
    x = data(seed=15)
    y = jax.numpy.asarray(ref_forward(x), dtype=jax.numpy.float32)
    g = jax.numpy.asarray(data(seed=16), dtype=jax.numpy.float32)
    result = jax.jit(functools.partial(fn, axis=-1))(g, y)
    assert_jax_like(result, y)
    np.testing.assert_allclose(
        np.asarray(result), ref_backward(np.asarray(g), x), rtol=1e-4, atol=1e-5
    )


def test_jax_cross_entropy_eager_and_under_jit(jax):
    logits = jax.numpy.asarray(data((6, 5), seed=17), dtype=jax.numpy.float32)
    target = jax.numpy.asarray(np.random.default_rng(18).integers(0, 5, size=6))
    expected = ref_cross_entropy(np.asarray(logits), np.asarray(target))
    expected_grad = ref_cross_entropy_backward(np.asarray(logits), np.asarray(target))
    for loss_fn, grad_fn in [
        (sd.softmax_cross_entropy, sd.softmax_cross_entropy_backward),
        (jax.jit(sd.softmax_cross_entropy), jax.jit(sd.softmax_cross_entropy_backward)),
    ]:
        loss = loss_fn(logits, target)
        assert isinstance(loss, jax.Array)
        assert loss.shape == ()
        assert loss.dtype == jax.numpy.float32
        np.testing.assert_allclose(float(loss), expected, **TOL["float32"])
        dlogits = grad_fn(logits, target)
        assert_jax_like(dlogits, logits)
        np.testing.assert_allclose(np.asarray(dlogits), expected_grad, **TOL["float32"])


@pytest.mark.parametrize("axis", [-1, 0])
def test_jax_grad_of_log_softmax_matches_jax_nn(jax, axis):
    jnp = jax.numpy
    x = jnp.asarray(data(seed=19), dtype=jnp.float32)
    w = jnp.asarray(data(seed=20, scale=1.0), dtype=jnp.float32)

    def ours(x):
        return jnp.sum(w * sd.log_softmax(x, axis))

    def theirs(x):
        return jnp.sum(w * jax.nn.log_softmax(x, axis=axis))

    grad = jax.grad(ours)(x)
    assert_jax_like(grad, x)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(jax.grad(theirs)(x)), **TOL["float32"])
    jitted = jax.jit(jax.grad(ours))(x)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(grad), **TOL["float32"])


def test_jax_grad_of_softmax_matches_jax_nn(jax):
    jnp = jax.numpy
    x = jnp.asarray(data(seed=21), dtype=jnp.float32)
    w = jnp.asarray(data(seed=22, scale=1.0), dtype=jnp.float32)
    grad = jax.grad(lambda x: jnp.sum(w * sd.softmax(x)))(x)
    expected = jax.grad(lambda x: jnp.sum(w * jax.nn.softmax(x)))(x)
    assert_jax_like(grad, x)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(expected), **TOL["float32"])


def test_jax_grad_of_cross_entropy_matches_hand_written_loss(jax):
    jnp = jax.numpy
    logits = jnp.asarray(data((8, 5), seed=23), dtype=jnp.float32)
    target = jnp.asarray(np.random.default_rng(24).integers(0, 5, size=8))

    def hand_written(x):
        logp = jax.nn.log_softmax(x, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, target[:, None], axis=-1))

    def ours(x):
        return sd.softmax_cross_entropy(x, target)

    np.testing.assert_allclose(float(ours(logits)), float(hand_written(logits)), **TOL["float32"])
    grad = jax.grad(ours)(logits)
    expected = jax.grad(hand_written)(logits)
    assert_jax_like(grad, logits)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(expected), **TOL["float32"])
    np.testing.assert_allclose(
        np.asarray(jax.jit(jax.grad(ours))(logits)), np.asarray(expected), **TOL["float32"]
    )


def test_jax_jit_with_a_concrete_target_closed_over(jax):
    # Under jit the logits are tracers while the closed-over target is a concrete array:
    # both are JAX arrays, so this is one library, not a mixed call.
    jnp = jax.numpy
    logits = jnp.asarray(data((6, 5), seed=36), dtype=jnp.float32)
    target_np = np.random.default_rng(37).integers(0, 5, size=6)
    target = jnp.asarray(target_np)
    loss = jax.jit(lambda x: sd.softmax_cross_entropy(x, target))(logits)
    assert isinstance(loss, jax.Array)
    np.testing.assert_allclose(
        float(loss), ref_cross_entropy(np.asarray(logits), target_np), **TOL["float32"]
    )


def test_jax_grad_of_masked_softmax_with_a_concrete_mask(jax):
    jnp = jax.numpy
    x = jnp.asarray(data((3, 4), seed=38), dtype=jnp.float32)
    mask = jnp.asarray([[True, False, True, True]] * 2 + [[False] * 4])
    w = jnp.asarray(data((3, 4), seed=39, scale=1.0), dtype=jnp.float32)
    grad = jax.grad(lambda x: jnp.sum(w * sd.softmax(x, where=mask)))(x)
    expected = jax.grad(lambda x: jnp.sum(w * jax.nn.softmax(x, where=mask)))(x)
    assert_jax_like(grad, x)
    assert np.all(np.asarray(grad)[~np.asarray(mask)] == 0.0)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(expected), **TOL["float32"])


def test_jax_out_is_rejected_because_arrays_are_immutable(jax):
    x = jax.numpy.zeros((2, 3), dtype=jax.numpy.float32)
    out = jax.numpy.zeros((2, 3), dtype=jax.numpy.float32)
    with pytest.raises(TypeError, match="item assignment"):
        sd.softmax(x, out=out)
    np.testing.assert_array_equal(np.asarray(out), 0.0)


# ---------------------------------------------------------------------------------------
# array-api-strict


@pytest.fixture(scope="module")
def xps():
    return pytest.importorskip("array_api_strict")


STRICT_DEVICES = ["device1", "device2"]


def strict_to_numpy(xps, a):
    return np.asarray(a.to_device(xps.Device("CPU_DEVICE")))


def assert_strict_like(result, like, dtype=None):
    assert type(result) is type(like)
    assert result.device == like.device
    assert tuple(result.shape) == tuple(like.shape)
    assert result.dtype == (like.dtype if dtype is None else dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", sorted(FORWARD))
@pytest.mark.parametrize("device", STRICT_DEVICES)
def test_strict_forward_stays_on_its_device(xps, device, op, dtype):
    fn, ref = FORWARD[op]
    x = xps.asarray(data(), dtype=getattr(xps, dtype), device=xps.Device(device))
    result = fn(x, (0, 2))
    assert_strict_like(result, x)
    np.testing.assert_allclose(
        strict_to_numpy(xps, result), ref(strict_to_numpy(xps, x), (0, 2)), **TOL[dtype]
    )


@pytest.mark.parametrize("op", sorted(BACKWARD))
@pytest.mark.parametrize("device", STRICT_DEVICES)
def test_strict_backward_stays_on_its_device(xps, device, op):
    fn, ref_forward, ref_backward = BACKWARD[op]
    dev = xps.Device(device)
    x = data(seed=25)
    y = xps.asarray(ref_forward(x, 1), device=dev)
    g = xps.asarray(data(seed=26), device=dev)
    result = fn(g, y, 1)
    assert_strict_like(result, y)
    np.testing.assert_allclose(
        strict_to_numpy(xps, result), ref_backward(strict_to_numpy(xps, g), x, 1), rtol=1e-12
    )


@pytest.mark.parametrize("device", STRICT_DEVICES)
def test_strict_cross_entropy_stays_on_its_device(xps, device):
    dev = xps.Device(device)
    logits_np = data((6, 5), seed=27)
    target_np = np.random.default_rng(28).integers(0, 5, size=6)
    logits = xps.asarray(logits_np, dtype=xps.float64, device=dev)
    target = xps.asarray(target_np, dtype=xps.int64, device=dev)
    loss = sd.softmax_cross_entropy(logits, target)
    assert type(loss) is type(logits)
    assert loss.device == dev
    assert loss.shape == ()
    assert loss.dtype == xps.float64
    np.testing.assert_allclose(
        float(strict_to_numpy(xps, loss)), ref_cross_entropy(logits_np, target_np), rtol=1e-12
    )
    dlogits = sd.softmax_cross_entropy_backward(logits, target)
    assert_strict_like(dlogits, logits)
    np.testing.assert_allclose(
        strict_to_numpy(xps, dlogits),
        ref_cross_entropy_backward(logits_np, target_np),
        rtol=1e-12,
        atol=1e-15,
    )


def test_strict_every_device_gives_its_own_default_float_for_integer_input(xps):
    info = xps.__array_namespace_info__()
    for dev in info.devices():
        x = xps.asarray([[-128, 127, 0]], dtype=xps.int8, device=dev)
        result = sd.softmax(x)
        want = info.default_dtypes(device=dev)["real floating"]
        assert_strict_like(result, x, dtype=want)
        np.testing.assert_allclose(strict_to_numpy(xps, result), [[0.0, 1.0, 0.0]], atol=1e-6)


@pytest.mark.parametrize("device", STRICT_DEVICES)
def test_strict_out_on_its_device(xps, device):
    dev = xps.Device(device)
    x = xps.asarray(data(), device=dev)
    out = xps.zeros(x.shape, dtype=x.dtype, device=dev)
    assert sd.softmax(x, out=out) is out
    assert out.device == dev
    np.testing.assert_allclose(
        strict_to_numpy(xps, out), ref_softmax(strict_to_numpy(xps, x)), rtol=1e-12
    )


def test_strict_devices_mixed_in_backward_raise_with_how_to_move(xps):
    grad = xps.ones((2, 3), device=xps.Device("device1"))
    y = xps.asarray(ref_softmax(data((2, 3))), device=xps.Device("device2"))
    with pytest.raises(TypeError) as info:
        sd.softmax_backward(grad, y)
    message = str(info.value)
    assert "device1" in message
    assert "device2" in message
    assert "asarray" in message or "to_device" in message


def test_strict_mask_on_another_device_raises(xps):
    x = xps.ones((2, 3), device=xps.Device("device1"))
    where = xps.asarray([True, False, True], device=xps.Device("device2"))
    with pytest.raises(TypeError, match="device"):
        sd.softmax(x, where=where)


def test_strict_cross_entropy_target_on_another_device_raises(xps):
    logits = xps.ones((2, 3), device=xps.Device("device1"))
    target = xps.asarray([0, 2], device=xps.Device("device2"))
    with pytest.raises(TypeError, match="device"):
        sd.softmax_cross_entropy(logits, target)


# ---------------------------------------------------------------------------------------
# Dask


@pytest.fixture(scope="module")
def da():
    return pytest.importorskip("dask.array")


def counted(da, values, chunks):
    """A dask array of ``values`` whose blocks record each time they are computed."""
    calls = []

    def block(b):
        if b.size:  # dask may call it on an empty "meta" array to learn the output type
            calls.append(b.shape)
        return b

    meta = np.empty((0,) * values.ndim, dtype=values.dtype)
    return da.from_array(values, chunks=chunks).map_blocks(block, meta=meta), calls


@pytest.mark.parametrize("op", sorted(FORWARD))
def test_dask_result_is_lazy_until_computed(da, op):
    fn, ref = FORWARD[op]
    values = data((6, 8))
    x, calls = counted(da, values, chunks=(3, 8))
    result = fn(x)
    assert isinstance(result, da.Array)
    assert calls == [], "the softmax computed its input eagerly"
    assert tuple(result.shape) == (6, 8)
    assert result.dtype == np.float64
    computed = result.compute()
    assert calls, "computing the result never read the input"
    assert isinstance(computed, np.ndarray)
    np.testing.assert_allclose(computed, ref(values), **TOL["float64"])


@pytest.mark.parametrize("axis", [-1, 0, (0, 1), None])
@pytest.mark.parametrize("op", sorted(FORWARD))
def test_dask_chunks_split_along_the_softmax_axis(da, op, axis):
    fn, ref = FORWARD[op]
    values = data((6, 8), seed=29)
    x = da.from_array(values, chunks=(2, 3))  # every axis split into several chunks
    result = fn(x, axis)
    assert isinstance(result, da.Array)
    assert tuple(result.shape) == (6, 8)
    np.testing.assert_allclose(result.compute(), ref(values, axis), **TOL["float64"])


def test_dask_float32_keeps_its_dtype(da):
    values = data((4, 9), seed=30).astype(np.float32)
    result = sd.softmax(da.from_array(values, chunks=(2, 4)))
    assert isinstance(result, da.Array)
    assert result.dtype == np.float32
    computed = result.compute()
    assert computed.dtype == np.float32
    np.testing.assert_allclose(computed, ref_softmax(values), **TOL["float32"])


@pytest.mark.parametrize("op", sorted(BACKWARD))
def test_dask_backward_is_lazy_and_correct(da, op):
    fn, ref_forward, ref_backward = BACKWARD[op]
    x = data((6, 8), seed=31)
    g_values = data((6, 8), seed=32)
    g, calls = counted(da, g_values, chunks=(2, 3))
    y = da.from_array(ref_forward(x), chunks=(2, 3))
    result = fn(g, y)
    assert isinstance(result, da.Array)
    assert calls == []
    np.testing.assert_allclose(result.compute(), ref_backward(g_values, x), rtol=1e-12)


def test_dask_cross_entropy_is_lazy_and_correct(da):
    logits_np = data((6, 5), seed=33)
    target_np = np.random.default_rng(34).integers(0, 5, size=6)
    logits, calls = counted(da, logits_np, chunks=(2, 2))
    target = da.from_array(target_np, chunks=2)
    loss = sd.softmax_cross_entropy(logits, target)
    dlogits = sd.softmax_cross_entropy_backward(logits, target)
    assert isinstance(loss, da.Array)
    assert isinstance(dlogits, da.Array)
    assert calls == []
    assert loss.shape == ()
    np.testing.assert_allclose(loss.compute(), ref_cross_entropy(logits_np, target_np), rtol=1e-12)
    np.testing.assert_allclose(
        dlogits.compute(), ref_cross_entropy_backward(logits_np, target_np), rtol=1e-12
    )


# ---------------------------------------------------------------------------------------
# Arrays from different libraries in one call


def test_torch_grad_with_numpy_y_raises_naming_both_types(torch):
    grad = torch.ones((2, 3), dtype=torch.float64)
    y = np.full((2, 3), 1 / 3)
    with pytest.raises(TypeError) as info:
        sd.softmax_backward(grad, y)
    message = str(info.value)
    assert "torch.Tensor" in message
    assert "numpy.ndarray" in message


def test_numpy_grad_with_torch_y_raises_naming_both_types(torch):
    grad = np.ones((2, 3))
    y = torch.full((2, 3), 1 / 3, dtype=torch.float64)
    with pytest.raises(TypeError) as info:
        sd.log_softmax_backward(grad, y)
    message = str(info.value)
    assert "torch.Tensor" in message
    assert "numpy.ndarray" in message


def test_torch_logits_with_numpy_target_raise(torch):
    logits = torch.zeros((2, 3))
    with pytest.raises(TypeError, match=r"numpy\.ndarray"):
        sd.softmax_cross_entropy(logits, np.array([0, 1]))


def test_jax_input_with_numpy_mask_raises(jax):
    x = jax.numpy.zeros((2, 3))
    with pytest.raises(TypeError, match=r"numpy\.ndarray"):
        sd.softmax(x, where=np.array([True, False, True]))


def test_torch_out_for_numpy_input_raises(torch):
    with pytest.raises(TypeError, match="torch"):
        sd.softmax(np.zeros((2, 3)), out=torch.zeros((2, 3), dtype=torch.float64))


def test_strict_grad_with_jax_y_raises(xps, jax):
    grad = xps.ones((2, 3))
    y = jax.numpy.full((2, 3), 1 / 3)
    with pytest.raises(TypeError, match=r"one library|convert"):
        sd.softmax_backward(grad, y)
