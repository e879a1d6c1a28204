"""Deliberately broken backends: the conformance suite must catch each of them.

Each is array-api-strict on ``device1`` with one fused kernel broken in one way; the
generic path of the same backend is correct, so only the ``fused`` path may fail.
"""

from __future__ import annotations

import array_api_strict as xp_strict

from softmax_dispatch import Backend, hookimpl

DEVICE1 = xp_strict.Device("device1")


def _owns(x):
    return type(x).__module__.startswith("array_api_strict")


def _softmax(xp, x, axes):
    m = xp.max(x, axis=axes, keepdims=True) if axes else x
    m = xp.where(m == -xp.inf, xp.zeros_like(m), m)
    e = xp.exp(x - m)
    return e / (xp.sum(e, axis=axes, keepdims=True) if axes else e)


def diagonal_backward(xp, grad, y, axes, where=None, out=None):
    """The tutorial's g * y * (1 - y): only the Jacobian's diagonal."""
    return grad * y * (1 - y)


def wrong_device(xp, x, axes, where=None, out=None):
    return _softmax(xp, x, axes).to_device(xp_strict.Device("CPU_DEVICE"))


def float32_result(xp, x, axes, where=None, out=None):
    return xp.astype(_softmax(xp, x, axes), xp.float32)


def float32_accuracy(xp, x, axes, where=None, out=None):
    """Right dtype, float32 accuracy."""
    return xp.astype(_softmax(xp, xp.astype(x, xp.float32), axes), x.dtype)


def mutates_input(xp, x, axes, where=None, out=None):
    y = _softmax(xp, x, axes)
    x[...] = y  # the caller's array is overwritten
    return y


def log_of_softmax(xp, x, axes, where=None, out=None):
    """log(softmax(x)): -inf where softmax underflows."""
    return xp.log(_softmax(xp, x, axes))


MUTANTS = {
    "mutant_diagonal": {"softmax_backward": diagonal_backward},
    "mutant_device": {"softmax": wrong_device},
    "mutant_dtype": {"softmax": float32_result},
    "mutant_accuracy": {"softmax": float32_accuracy},
    "mutant_mutates": {"softmax": mutates_input},
    "mutant_log": {"log_softmax": log_of_softmax},
}


@hookimpl
def softmax_dispatch_backends():
    for name, kernels in MUTANTS.items():
        yield Backend(
            name=name,
            owns=_owns,
            namespace=lambda: xp_strict,
            devices=lambda: (DEVICE1,),
            kernels=kernels,
            priority=-10,
        )
