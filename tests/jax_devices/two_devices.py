"""JAX on two virtual CPU devices: results stay on the input's device, and arrays from two
devices in one call are refused. Run by ``tests/test_jax_devices.py`` in a process of its
own with ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` (JAX reads it once, when
it initialises; the rest of the test session keeps JAX's one default CPU device)."""

from __future__ import annotations

import numpy as np
import pytest

import softmax_dispatch as sd

jax = pytest.importorskip("jax")

FORWARD = {
    "softmax": (sd.softmax, lambda x: _ref(x, log=False)),
    "log_softmax": (sd.log_softmax, lambda x: _ref(x, log=True)),
}


def _ref(x, log):
    x = np.asarray(x, np.float64)
    z = x - x.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return z - lse if log else np.exp(z - lse)


def data(shape=(3, 7)):
    return np.random.default_rng(0).normal(0, 3, size=shape)


@pytest.fixture(scope="module")
def two_jax_devices():
    devices = jax.devices()
    assert len(devices) >= 2, "run with XLA_FLAGS=--xla_force_host_platform_device_count=2"
    return devices[:2]


@pytest.mark.parametrize("op", sorted(FORWARD))
def test_jax_result_stays_on_the_second_device(two_jax_devices, op):
    fn, ref = FORWARD[op]
    device = two_jax_devices[1]
    x = jax.device_put(jax.numpy.asarray(data(), dtype=jax.numpy.float32), device)
    assert x.devices() == {device}
    result = fn(x)
    assert result.devices() == {device}
    assert result.dtype == x.dtype and result.shape == x.shape
    np.testing.assert_allclose(np.asarray(result), ref(np.asarray(x)), rtol=2e-6, atol=1e-7)
    jitted = jax.jit(fn)(x)
    assert jitted.devices() == {device}


def test_jax_backward_and_cross_entropy_stay_on_the_second_device(two_jax_devices):
    device = two_jax_devices[1]
    jnp = jax.numpy
    y = jax.device_put(jnp.asarray(_ref(data((4, 5)), log=False), dtype=jnp.float32), device)
    g = jax.device_put(jnp.ones((4, 5), dtype=jnp.float32), device)
    assert sd.softmax_backward(g, y).devices() == {device}
    target = jax.device_put(jnp.asarray([0, 1, 2, 3]), device)
    assert sd.softmax_cross_entropy(y, target).devices() == {device}
    assert sd.softmax_cross_entropy_backward(y, target).devices() == {device}


def test_jax_arrays_on_two_devices_in_one_call_raise(two_jax_devices):
    dev0, dev1 = two_jax_devices
    jnp = jax.numpy
    grad = jax.device_put(jnp.ones((2, 3), dtype=jnp.float32), dev0)
    y = jax.device_put(jnp.full((2, 3), 1 / 3, dtype=jnp.float32), dev1)
    with pytest.raises(TypeError, match="device"):
        sd.softmax_backward(grad, y)
    target = jax.device_put(jnp.asarray([0, 1]), dev1)
    with pytest.raises(TypeError, match="device"):
        sd.softmax_cross_entropy(grad, target)
