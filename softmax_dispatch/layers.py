"""Layer objects: ``forward`` keeps what ``backward`` needs, ``backward`` returns the
gradient with respect to the forward's input."""

from __future__ import annotations

import operator
from typing import Any

import array_api_compat

from ._api import (
    log_softmax,
    log_softmax_backward,
    softmax,
    softmax_backward,
    softmax_cross_entropy,
    softmax_cross_entropy_backward,
)
from ._validate import cross_entropy_options, refuse_keywords

Array = Any

__all__ = ["LogSoftmax", "Softmax", "SoftmaxCrossEntropy"]


def _check_axis(axis: Any, *, single: bool = False) -> Any:
    """The axis as the functions take it: an int (NumPy integers too), or for the
    normalizing layers also a tuple (or list) of ints, or None."""

    def one(a: Any) -> int:
        if isinstance(a, bool):
            raise TypeError
        return operator.index(a)

    want = "an int" if single else "an int, a tuple of ints or None"
    try:
        if not single and axis is None:
            return None
        if not single and isinstance(axis, (tuple, list)):
            return tuple(one(a) for a in axis)
        return one(axis)
    except TypeError:
        raise TypeError(f"axis must be {want}, got {axis!r}") from None


class _Kept:
    """The arrays a layer keeps for backward, and a check that none was modified in place
    since (PyTorch's version counters; other libraries' arrays are protected by
    `_shielded` or are immutable)."""

    def __init__(self, **arrays: Array) -> None:
        self.arrays = arrays
        self.versions = {
            name: a._version for name, a in arrays.items() if array_api_compat.is_torch_array(a)
        }

    def get(self, layer: str) -> dict[str, Array]:
        for name, version in self.versions.items():
            if self.arrays[name]._version != version:
                raise RuntimeError(
                    f"{layer}.backward: {name} was modified in place after forward (its "
                    "PyTorch version counter changed), and backward needs it as forward "
                    "saw it: modify a copy (.clone()) instead, or call forward again"
                )
        return self.arrays


def _shielded(y: Array) -> tuple[Array, Array]:
    """``(returned, kept)``: the output for the caller, and the array backward uses, such
    that editing the first in place cannot silently change the second. NumPy: a read-only
    view (editing it raises); PyTorch: the same tensor (an edit is detected, see `_Kept`);
    JAX: immutable; any other library: a copy the layer keeps to itself."""
    if array_api_compat.is_numpy_array(y):
        view = y.view()
        view.flags.writeable = False
        return view, y
    if array_api_compat.is_torch_array(y) or array_api_compat.is_jax_array(y):
        return y, y
    return y, array_api_compat.array_namespace(y).asarray(y, copy=True)


def _not_yet(layer: str, call: str) -> RuntimeError:
    return RuntimeError(
        f"{layer}.backward called before forward: call {call} first, it saves what backward needs"
    )


class _Normalizer:
    _forward_fn: Any
    _backward_fn: Any

    def __init__(self, axis: int | tuple[int, ...] | None = -1, **other: Any) -> None:
        if other:
            refuse_keywords(type(self), other)
        self.axis = _check_axis(axis)
        self._saved: _Kept | None = None

    def forward(self, x: Array, *, where: Array | None = None) -> Array:
        """The layer's function of ``x``; the output is saved for `backward`. On NumPy
        the returned array is read-only (copy it to modify it)."""
        returned, kept = _shielded(type(self)._forward_fn(x, self.axis, where=where))
        self._saved = _Kept(y=kept) if where is None else _Kept(y=kept, where=where)
        return returned

    __call__ = forward

    def backward(self, grad: Array) -> Array:
        """The gradient with respect to the last `forward`'s input."""
        if self._saved is None:
            raise _not_yet(type(self).__name__, "forward(x)")
        saved = self._saved.get(type(self).__name__)
        return type(self)._backward_fn(grad, saved["y"], self.axis, where=saved.get("where"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(axis={self.axis!r})"


class Softmax(_Normalizer):
    """Softmax layer over ``axis``.

    Examples
    --------
    >>> import numpy as np
    >>> from softmax_dispatch import Softmax
    >>> layer = Softmax()
    >>> layer.forward(np.array([[0.0, 0.0]]))
    array([[0.5, 0.5]])
    >>> layer.backward(np.array([[1.0, 0.0]]))
    array([[ 0.25, -0.25]])
    """

    _forward_fn = staticmethod(softmax)
    _backward_fn = staticmethod(softmax_backward)


class LogSoftmax(_Normalizer):
    """Log-softmax layer over ``axis``.

    Examples
    --------
    >>> import numpy as np
    >>> from softmax_dispatch import LogSoftmax
    >>> layer = LogSoftmax()
    >>> layer.forward(np.array([0.0, 0.0]))
    array([-0.69314718, -0.69314718])
    >>> layer.backward(np.array([1.0, 0.0]))
    array([ 0.5, -0.5])
    """

    _forward_fn = staticmethod(log_softmax)
    _backward_fn = staticmethod(log_softmax_backward)


class SoftmaxCrossEntropy:
    """Softmax followed by cross-entropy, as one layer (see `softmax_cross_entropy`).

    ``forward`` keeps references to ``logits`` and ``target`` for ``backward``: do not
    modify them in place in between (on PyTorch, backward detects it and raises).

    Examples
    --------
    >>> import numpy as np
    >>> from softmax_dispatch import SoftmaxCrossEntropy
    >>> loss_fn = SoftmaxCrossEntropy()
    >>> float(loss_fn.forward(np.array([[0.0, 0.0]]), np.array([1])))
    0.6931471805599453
    >>> loss_fn.backward()
    array([[ 0.5, -0.5]])
    """

    def __init__(
        self,
        axis: int = -1,
        *,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        ignore_index: int | None = None,
        weight: Array | None = None,
        **other: Any,
    ) -> None:
        if other:
            refuse_keywords(type(self), other)
        self.axis = _check_axis(axis, single=True)
        self.reduction, self.label_smoothing, self.ignore_index = cross_entropy_options(
            reduction, label_smoothing, ignore_index
        )
        self.weight = weight
        self._saved: _Kept | None = None

    def _options(self) -> dict[str, Any]:
        return dict(
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            ignore_index=self.ignore_index,
            weight=self.weight,
        )

    def forward(self, logits: Array, target: Array) -> Array:
        loss = softmax_cross_entropy(logits, target, self.axis, **self._options())
        self._saved = _Kept(logits=logits, target=target)
        return loss

    __call__ = forward

    def backward(self, grad: Array | float = 1.0) -> Array:
        if self._saved is None:
            raise _not_yet("SoftmaxCrossEntropy", "forward(logits, target)")
        saved = self._saved.get("SoftmaxCrossEntropy")
        return softmax_cross_entropy_backward(
            saved["logits"], saved["target"], grad, self.axis, **self._options()
        )

    def __repr__(self) -> str:
        return (
            f"SoftmaxCrossEntropy(axis={self.axis}, reduction={self.reduction!r}, "
            f"label_smoothing={self.label_smoothing}, ignore_index={self.ignore_index})"
        )
