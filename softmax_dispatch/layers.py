"""Layer objects: ``forward`` keeps what ``backward`` needs, ``backward`` returns the
gradient with respect to the forward's input."""

from __future__ import annotations

import operator
from typing import Any

from ._api import (
    _ce_options,
    log_softmax,
    log_softmax_backward,
    softmax,
    softmax_backward,
    softmax_cross_entropy,
    softmax_cross_entropy_backward,
)

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


class _Normalizer:
    _forward_fn: Any
    _backward_fn: Any

    def __init__(self, axis: int | tuple[int, ...] | None = -1) -> None:
        self.axis = _check_axis(axis)
        self._saved: tuple[Array, Array | None] | None = None

    def forward(self, x: Array, *, where: Array | None = None) -> Array:
        y = type(self)._forward_fn(x, self.axis, where=where)
        self._saved = (y, where)
        return y

    __call__ = forward

    def backward(self, grad: Array) -> Array:
        if self._saved is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward called before forward: call "
                "forward(x) first, it saves the output that backward needs"
            )
        y, where = self._saved
        return type(self)._backward_fn(grad, y, self.axis, where=where)

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
    modify them in place in between.

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
    ) -> None:
        self.axis = _check_axis(axis, single=True)
        self.reduction, self.label_smoothing, self.ignore_index = _ce_options(
            reduction, label_smoothing, ignore_index
        )
        self.weight = weight
        self._saved: tuple[Array, Array] | None = None

    def _options(self) -> dict[str, Any]:
        return dict(
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            ignore_index=self.ignore_index,
            weight=self.weight,
        )

    def forward(self, logits: Array, target: Array) -> Array:
        loss = softmax_cross_entropy(logits, target, self.axis, **self._options())
        self._saved = (logits, target)
        return loss

    __call__ = forward

    def backward(self, grad: Array | float = 1.0) -> Array:
        if self._saved is None:
            raise RuntimeError(
                "SoftmaxCrossEntropy.backward called before forward: call "
                "forward(logits, target) first"
            )
        logits, target = self._saved
        return softmax_cross_entropy_backward(logits, target, grad, self.axis, **self._options())

    def __repr__(self) -> str:
        return (
            f"SoftmaxCrossEntropy(axis={self.axis}, reduction={self.reduction!r}, "
            f"label_smoothing={self.label_smoothing}, ignore_index={self.ignore_index})"
        )
