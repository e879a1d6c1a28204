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
        """The layer's function of ``x`` over the layer's axis; the output is saved for `backward`.

        Calling the layer, ``layer(x)``, is the same. Each call replaces what the previous one
        saved. On NumPy the returned array is a read-only view of the saved output (copy it,
        ``np.array(y)``, to modify it); on PyTorch, `backward` detects an in-place edit of
        it; JAX arrays are immutable; for any other library the layer keeps its own copy.

        Parameters
        ----------
        x : array
            Input of any library a backend owns.
        where : array of bool, optional
            Boolean mask broadcastable to ``x``, as for the function; saved for `backward`.

        Returns
        -------
        array
            ``softmax(x, axis, where=where)`` for `Softmax`, ``log_softmax(...)`` for
            `LogSoftmax`: same library, device and shape as ``x``.

        Raises
        ------
        TypeError
            If ``x`` or ``where`` is not a supported array (see `softmax`).
        ValueError
            If ``where`` does not broadcast to ``x``'s shape.
        AxisError
            If the layer's axis is out of range for ``x``.

        See Also
        --------
        backward : The gradient with respect to ``x``.

        Examples
        --------
        >>> import numpy as np
        >>> from softmax_dispatch import Softmax
        >>> layer = Softmax()
        >>> y = layer.forward(np.array([[1.0, 2.0, 3.0]]))
        >>> np.round(y, 4)
        array([[0.09  , 0.2447, 0.6652]])
        >>> y.flags.writeable  # a read-only view of what backward uses
        False
        """
        returned, kept = _shielded(type(self)._forward_fn(x, self.axis, where=where))
        self._saved = _Kept(y=kept) if where is None else _Kept(y=kept, where=where)
        return returned

    __call__ = forward

    def backward(self, grad: Array) -> Array:
        """The gradient with respect to the last `forward`'s input.

        Computed from the saved output (and mask) with `softmax_backward` or
        `log_softmax_backward`, so the layer never keeps its input.

        Parameters
        ----------
        grad : array
            Upstream gradient, the gradient of the loss with respect to the output of the last
            `forward`; that output's shape.

        Returns
        -------
        array
            The gradient with respect to the last `forward`'s input ``x``, of the output's
            library, device, shape and dtype. Masked entries get exactly 0.

        Raises
        ------
        RuntimeError
            If `forward` has not been called yet, or (PyTorch) the saved output or mask was
            modified in place since.
        ValueError
            If ``grad`` does not have the output's shape.

        See Also
        --------
        forward : Saves what backward needs.

        Examples
        --------
        >>> import numpy as np
        >>> from softmax_dispatch import Softmax
        >>> layer = Softmax()
        >>> y = layer.forward(np.array([[1.0, 2.0, 3.0]]))
        >>> np.round(layer.backward(np.array([[1.0, 0.0, 0.0]])), 4)
        array([[ 0.0819, -0.022 , -0.0599]])
        >>> Softmax().backward(np.zeros(3))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        RuntimeError: Softmax.backward called before forward: call forward(x) first, ...
        """
        if self._saved is None:
            raise _not_yet(type(self).__name__, "forward(x)")
        saved = self._saved.get(type(self).__name__)
        return type(self)._backward_fn(grad, saved["y"], self.axis, where=saved.get("where"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(axis={self.axis!r})"


class Softmax(_Normalizer):
    """Softmax layer over ``axis``: `softmax` forward, `softmax_backward` backward.

    ``forward(x)`` (or calling the layer) keeps the output, and ``backward(grad)`` returns
    the gradient with respect to ``x`` from it.

    Parameters
    ----------
    axis : int, tuple of int or None, default: -1
        The axis or axes to normalise over, as for `softmax`: an int (NumPy integers too), a
        tuple (or list) of ints, or ``None`` (all axes).
    **other
        Any other keyword is a `TypeError` that says what to write instead (``dim=`` is
        ``axis=`` here).

    Raises
    ------
    TypeError
        If ``axis`` is not an int, a tuple of ints or ``None``, or a keyword is unknown.

    See Also
    --------
    softmax : The function.
    LogSoftmax : The log-softmax layer.

    Examples
    --------
    >>> import numpy as np
    >>> from softmax_dispatch import Softmax
    >>> layer = Softmax()
    >>> layer.forward(np.array([[0.0, 0.0]]))
    array([[0.5, 0.5]])
    >>> layer.backward(np.array([[1.0, 0.0]]))
    array([[ 0.25, -0.25]])
    >>> Softmax(axis=1.5)
    Traceback (most recent call last):
    ...
    TypeError: axis must be an int, a tuple of ints or None, got 1.5
    """

    _forward_fn = staticmethod(softmax)
    _backward_fn = staticmethod(softmax_backward)


class LogSoftmax(_Normalizer):
    """Log-softmax layer over ``axis``: `log_softmax` forward, `log_softmax_backward` backward.

    ``forward(x)`` (or calling the layer) keeps the output, and ``backward(grad)`` returns
    the gradient with respect to ``x`` from it.

    Parameters
    ----------
    axis : int, tuple of int or None, default: -1
        The axis or axes to normalise over, as for `log_softmax`: an int (NumPy integers too), a
        tuple (or list) of ints, or ``None`` (all axes).
    **other
        Any other keyword is a `TypeError` that says what to write instead (``dim=`` is
        ``axis=`` here).

    Raises
    ------
    TypeError
        If ``axis`` is not an int, a tuple of ints or ``None``, or a keyword is unknown.

    See Also
    --------
    log_softmax : The function.
    Softmax : The softmax layer.
    SoftmaxCrossEntropy : Log-softmax and the loss in one layer.

    Examples
    --------
    >>> import numpy as np
    >>> from softmax_dispatch import LogSoftmax
    >>> layer = LogSoftmax()
    >>> layer.forward(np.array([0.0, 0.0]))
    array([-0.69314718, -0.69314718])
    >>> layer.backward(np.array([1.0, 0.0]))
    array([ 0.5, -0.5])
    >>> LogSoftmax(axis=0)
    LogSoftmax(axis=0)
    """

    _forward_fn = staticmethod(log_softmax)
    _backward_fn = staticmethod(log_softmax_backward)


class SoftmaxCrossEntropy:
    """Softmax followed by cross-entropy, as one layer (see `softmax_cross_entropy`).

    ``forward(logits, target)`` (or calling the layer) returns the loss and keeps
    references to ``logits`` and ``target`` for ``backward``: do not modify them in place
    in between (on PyTorch, backward detects it and raises). The options are checked when
    the layer is made.

    Parameters
    ----------
    axis : int, default: -1
        The class axis of the logits (PyTorch's is 1: pass ``axis=1`` for NCHW logits).
    reduction : {"mean", "sum", "none"}, default: "mean"
        How the per-sample losses are combined, as for `softmax_cross_entropy`.
    label_smoothing : float, default: 0.0
        In [0, 1]: the target is mixed with the uniform distribution over the classes.
    ignore_index : int, optional
        For index targets: samples with this class contribute exactly 0 to the loss and
        the gradient.
    weight : array, optional
        Per-class weights, shape ``(n_classes,)``, of the logits' library.
    **other
        Any other keyword is a `TypeError` that says what to write instead.

    Raises
    ------
    TypeError
        If ``axis`` is not an int, an option has the wrong type, or a keyword is unknown.
    ValueError
        If ``reduction`` is unknown, ``label_smoothing`` is outside [0, 1], or
        ``ignore_index`` does not fit in 64 bits.

    See Also
    --------
    softmax_cross_entropy : The loss function.
    softmax_cross_entropy_backward : Its gradient.

    Examples
    --------
    >>> import numpy as np
    >>> from softmax_dispatch import SoftmaxCrossEntropy
    >>> loss_fn = SoftmaxCrossEntropy()
    >>> float(loss_fn.forward(np.array([[0.0, 0.0]]), np.array([1])))
    0.6931471805599453
    >>> loss_fn.backward()
    array([[ 0.5, -0.5]])
    >>> SoftmaxCrossEntropy(reduction="avg")
    Traceback (most recent call last):
    ...
    ValueError: reduction must be one of ('mean', 'sum', 'none'), got 'avg'
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
        """The loss of ``logits`` against ``target``; both are kept for `backward`.

        Calling the layer, ``loss_fn(logits, target)``, is the same. Each call replaces what
        the previous one kept.

        Parameters
        ----------
        logits : array
            Unnormalised scores; the layer's ``axis`` is the class axis.
        target : array
            Integer class indices with the logits' shape without the class axis, or class
            probabilities with the logits' shape.

        Returns
        -------
        array
            ``softmax_cross_entropy(logits, target, axis, ...)`` with the layer's options: 0-d
            for "mean" and "sum", per-sample losses for "none".

        Raises
        ------
        TypeError
            If an array has an unsupported dtype or the arrays come from different libraries.
        ValueError
            If ``target`` or ``weight`` does not fit the logits' shape.
        IndexError
            If a class index is out of range (where it can be read eagerly).

        See Also
        --------
        softmax_cross_entropy : The function.

        Examples
        --------
        >>> import numpy as np
        >>> from softmax_dispatch import SoftmaxCrossEntropy
        >>> loss_fn = SoftmaxCrossEntropy(label_smoothing=0.1)
        >>> logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]])
        >>> round(float(loss_fn.forward(logits, np.array([0, 2]))), 4)
        0.745
        """
        loss = softmax_cross_entropy(logits, target, self.axis, **self._options())
        self._saved = _Kept(logits=logits, target=target)
        return loss

    __call__ = forward

    def backward(self, grad: Array | float = 1.0) -> Array:
        """``grad`` times the gradient of the last `forward`'s loss with respect to its logits.

        Computed from the logits and target `forward` kept, with the layer's options; the
        layer keeps them, so ``backward`` may be called again (with another ``grad``).

        Parameters
        ----------
        grad : array or float, default: 1.0
            Upstream gradient of the loss: a scalar for "mean" and "sum", a scalar or a
            per-sample array for "none".

        Returns
        -------
        array
            ``softmax_cross_entropy_backward(logits, target, grad, axis, ...)`` for the kept
            logits and target: the logits' library, device, shape and dtype.

        Raises
        ------
        RuntimeError
            If `forward` has not been called yet, or (PyTorch) the kept logits or target were
            modified in place since.
        ValueError
            If ``grad`` has the wrong shape for the reduction.

        See Also
        --------
        softmax_cross_entropy_backward : The function.

        Examples
        --------
        >>> import numpy as np
        >>> from softmax_dispatch import SoftmaxCrossEntropy
        >>> loss_fn = SoftmaxCrossEntropy()
        >>> loss = loss_fn.forward(np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]]), np.array([0, 2]))
        >>> np.round(loss_fn.backward(), 4)
        array([[-0.1072,  0.0876,  0.0196],
               [ 0.1667,  0.1667, -0.3333]])
        >>> np.round(loss_fn.backward(2.0), 4)  # twice the upstream gradient
        array([[-0.2144,  0.1753,  0.0391],
               [ 0.3333,  0.3333, -0.6667]])
        """
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
