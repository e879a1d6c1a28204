"""The public functions: validate arguments, pick a backend, hand off to a kernel."""

from __future__ import annotations

import contextlib
import numbers
from types import ModuleType
from typing import Any

from ._dispatch import Resolved, quick, resolve
from ._validate import (
    NO_GRAD,
    CrossEntropyArgs,
    as_float,
    check_cross_entropy,
    check_mask,
    check_out,
    deliver,
    dtype_kind,
    is_empty,
    normalize_axes,
    plain,
    refuse_keywords,
    shapes_match,
)

Array = Any

__all__ = [
    "log_softmax",
    "log_softmax_backward",
    "softmax",
    "softmax_backward",
    "softmax_cross_entropy",
    "softmax_cross_entropy_backward",
]


def _optional(**arrays: Any) -> tuple[tuple[str, Any], ...]:
    """(label, array) pairs for the optional array arguments that were given."""
    return tuple((k, v) for k, v in arrays.items() if v is not None)


# The common call — an array of a type dispatched before, real floating, one int axis in
# range, nothing else given (or backend= naming the array's owner) — goes from the
# public function to the kernel in one trip:
# no validation beyond those checks, each a type test or a look-up (`quick`). Anything
# else takes the full path, which resolves and validates every argument.
def _quick_forward(op: str, x: Array, axis: Any, backend: str | None) -> Array | None:
    res = quick(x)
    if res is None or type(axis) is not int:
        return None
    if backend is not None and (backend != res.name or not res.available):
        return None
    try:
        if x.dtype not in res.floats:
            return None
    except TypeError:  # an unhashable dtype
        return None
    nd = x.ndim
    if not -nd <= axis < nd or 0 in x.shape:
        return None
    return res.kernels[op](res.xp, x, (axis % nd,), None, None)


def _quick_backward(op: str, grad: Array, y: Array, axis: Any, backend: str | None) -> Array | None:
    res = quick(grad)
    if res is None or not res.single_device or type(y) is not type(grad) or type(axis) is not int:
        return None
    if backend is not None and (backend != res.name or not res.available):
        return None
    dt = y.dtype
    try:
        if grad.dtype != dt or dt not in res.floats:
            return None
    except TypeError:
        return None
    nd = y.ndim
    if not -nd <= axis < nd or grad.shape != y.shape or 0 in y.shape:
        return None
    return res.kernels[op](res.xp, grad, y, (axis % nd,), None, None)


def _seen_float(res: Resolved, dtype: Any) -> None:
    with contextlib.suppress(TypeError):  # (an unhashable dtype: never quick)
        res.floats.add(dtype)


def _forward(
    op: str, x: Array, axis: Any, where: Any, dtype: Any, out: Any, backend: str | None
) -> Array:
    x = plain(x, "x")
    if where is None and out is None:
        res, xp = resolve(x, (), backend)
        if dtype is not None or dtype_kind(xp, x.dtype) != "float":
            x = as_float(xp, x, dtype, "x")
        else:
            _seen_float(res, x.dtype)
        ndim = x.ndim
        axes = (axis % ndim,) if type(axis) is int and -ndim <= axis < ndim else None
        if axes is None:
            axes = normalize_axes(axis, ndim)
        if 0 in x.shape:
            return _array(xp, _empty(xp, x), x)
        return _array(xp, res.kernels[op](xp, x, axes, None, None), x)
    given_out, where, out = out, _plain_or_none(where, "where"), _plain_or_none(out, "out")
    res, xp = resolve(x, _optional(where=where, out=out), backend)
    x = as_float(xp, x, dtype, "x")
    axes = normalize_axes(axis, x.ndim)
    shape = tuple(x.shape)
    mask = None if where is None else check_mask(xp, where, shape)
    if out is not None:
        check_out(out, shape, x.dtype)
    if is_empty(shape):
        return _result(xp, _empty(xp, x), out, given_out, x)
    return _result(xp, res.kernels[op](xp, x, axes, mask, out), out, given_out, x)


def _plain_or_none(a: Any, label: str) -> Any:
    return None if a is None else plain(a, label)


def _result(xp: ModuleType, result: Array, out: Any, given_out: Any, like: Array) -> Array:
    """The value to return: ``result`` as an array, or written into ``out`` (the plain
    view of what the caller gave) and the caller's own ``out`` object returned."""
    if out is None:
        return _array(xp, result, like)
    deliver(result, out)
    return given_out


def _array(xp: ModuleType, result: Array, like: Array) -> Array:
    """0-d results as 0-d arrays (NumPy reductions and ufuncs hand back scalars). Only
    results of another type than the input are converted: asarray on a tensor that
    requires grad would warn, and cut the autograd graph."""
    if result.ndim or type(result) is type(like):
        return result
    return xp.asarray(result)


def _empty(xp: ModuleType, like: Array) -> Array:
    # Computed from the (empty) input, not zeros(...): under jax.jit only results computed
    # from the input stay on its device, and a tensor that requires grad keeps its graph
    # (asarray(copy=True) would cut it, with a warning).
    return like + 0


def softmax(
    x: Array,
    /,
    axis: int | tuple[int, ...] | None = -1,
    *,
    where: Array | None = None,
    dtype: Any = None,
    out: Array | None = None,
    backend: str | None = None,
    **other: Any,
) -> Array:
    """Softmax of ``x`` over ``axis``: ``exp(x - max(x)) / sum(exp(x - max(x)))``.

    The maximum is subtracted first, so huge magnitudes do not overflow. The result is
    computed by the backend that owns ``x`` (or the one ``backend`` names), with its fused
    kernel where it has one and the generic Array API kernel otherwise.

    Parameters
    ----------
    x : array
        Array of any library a backend owns (NumPy, CuPy, PyTorch, JAX, Dask,
        array-api-strict, ...). Integers are cast to the library's default real floating
        dtype first; boolean and complex input raise `TypeError`.
    axis : int, tuple of int or None, default: -1
        The axis or axes to normalise over: an int, a tuple of ints, ``None`` (all axes)
        or ``()`` (each element on its own). The default, -1 (the last axis, as in
        PyTorch and JAX), differs from ``scipy.special.softmax(x)``, whose default
        ``axis=None`` normalises over all elements at once: pass ``axis=None`` for SciPy's
        result. PyTorch's ``dim=`` is spelled ``axis=`` here (the Array API name).
    where : array of bool, optional
        Boolean mask broadcastable to ``x``: masked entries get probability 0 and
        gradient 0, whatever the rest of their row holds; a row with nothing unmasked
        gives zeros, never NaN.
    dtype : dtype or str, optional
        Real floating dtype to compute in and return (an object, or a name such as
        ``"float32"`` meaning the array library's own); ``x`` is cast to it first.
    out : array, optional
        Array of ``x``'s library to write the result into; its shape and dtype must be
        the result's exactly. It may share memory with ``x`` (``out=x`` works in
        place); it is returned.
    backend : str, optional
        Name of the backend to use (see `backends`); default: the one chosen by
        `use_backend`, ``SOFTMAX_DISPATCH_BACKEND``, or else the highest-priority
        backend that owns ``x``.
    **other
        Any other keyword is a `TypeError` that says what to write instead (``dim=`` is
        ``axis=`` here).

    Returns
    -------
    array
        Same library, device and shape as ``x``; dtype ``dtype`` or ``x``'s floating dtype
        (``out`` itself when given). float16/bfloat16 are computed in float32. A row
        holding NaN or ``+inf``, or only ``-inf`` (without ``where``), is NaN.

    Raises
    ------
    TypeError
        If an array has an unsupported dtype (boolean, complex, ...), no backend owns it,
        the arrays of the call come from different libraries or devices, ``where`` is not
        boolean, ``out`` cannot be written to (read-only NumPy, JAX), or a keyword
        argument is unknown.
    ValueError
        If ``where`` does not broadcast to the input's shape, or ``out`` has another
        shape or dtype than the result.
    AxisError
        If an axis is out of range or repeated.
    LookupError
        If ``backend`` (or `use_backend`, or ``SOFTMAX_DISPATCH_BACKEND``) names no
        registered backend.
    BackendUnavailable
        If the chosen backend cannot run here (its library, driver or device is missing).

    See Also
    --------
    log_softmax : The log of the softmax, computed stably.
    softmax_backward : The gradient, from the saved output.
    Softmax : The same as a layer that keeps what its backward needs.

    Examples
    --------
    >>> import numpy as np
    >>> import softmax_dispatch as sd
    >>> x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    >>> np.round(sd.softmax(x), 4)  # each row (the last axis) sums to 1
    array([[0.09  , 0.2447, 0.6652],
           [0.3333, 0.3333, 0.3333]])
    >>> np.round(sd.softmax(x, axis=None), 4)  # all elements at once, as SciPy's default
    array([[0.0819, 0.2226, 0.6051],
           [0.0301, 0.0301, 0.0301]])
    >>> sd.softmax(np.array([1, 3]))  # integers are cast to float64 first
    array([0.11920292, 0.88079708])
    >>> np.round(sd.softmax(np.array([1.0, 2.0, 3.0]), where=np.array([True, True, False])), 4)
    array([0.2689, 0.7311, 0.    ])

    Any library a backend owns works the same way, here array-api-strict:

    >>> import array_api_strict as xp
    >>> sd.softmax(xp.asarray([1.0, 1.0, 1.0, 1.0]))
    Array([0.25, 0.25, 0.25, 0.25], dtype=array_api_strict.float64)
    >>> sd.softmax(xp.asarray([-128, 127], dtype=xp.int8))  # no integer wraparound
    Array([1.79848622e-111, 1.00000000e+000], dtype=array_api_strict.float64)

    PyTorch's ``dim=`` is refused with a hint:

    >>> sd.softmax(x, dim=1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: softmax() got an unexpected keyword argument 'dim'; use axis= (the Array ...
    """
    if other:
        refuse_keywords(softmax, other)
    if where is None and dtype is None and out is None:
        y = _quick_forward("softmax", x, axis, backend)
        if y is not None:
            return y
    return _forward("softmax", x, axis, where, dtype, out, backend)


def log_softmax(
    x: Array,
    /,
    axis: int | tuple[int, ...] | None = -1,
    *,
    where: Array | None = None,
    dtype: Any = None,
    out: Array | None = None,
    backend: str | None = None,
    **other: Any,
) -> Array:
    """Log of the softmax of ``x`` over ``axis``, computed stably.

    Computed as ``(x - max) - log(sum(exp(x - max)))``, never as ``log(softmax(x))``,
    which would give ``-inf`` where the softmax underflows to 0. Arguments, dtypes and
    policies are those of `softmax`; masked entries give ``-inf``, and a row with nothing
    unmasked gives ``-inf`` throughout.

    Parameters
    ----------
    x : array
        Array of any library a backend owns; integers are cast to the library's default
        real floating dtype first.
    axis : int, tuple of int or None, default: -1
        The axis or axes to normalise over: int, tuple of ints, ``None`` (all axes) or
        ``()`` (each element on its own). Not SciPy's default (``None``).
    where : array of bool, optional
        Boolean mask broadcastable to ``x``; masked entries give ``-inf`` and gradient 0.
    dtype : dtype or str, optional
        Real floating dtype to compute in and return; ``x`` is cast to it first.
    out : array, optional
        Array to write the result into (shape and dtype of the result; ``out=x`` works in
        place); returned.
    backend : str, optional
        Name of the backend to use; default: the one that owns ``x``.
    **other
        Any other keyword is a `TypeError` that says what to write instead.

    Returns
    -------
    array
        Same library, device and shape as ``x``; dtype ``dtype`` or ``x``'s floating
        dtype (``out`` itself when given). A row holding NaN or ``+inf``, or only
        ``-inf`` (without ``where``), is NaN.

    Raises
    ------
    TypeError
        If an array has an unsupported dtype (boolean, complex, ...), no backend owns it,
        the arrays of the call come from different libraries or devices, ``where`` is not
        boolean, ``out`` cannot be written to (read-only NumPy, JAX), or a keyword
        argument is unknown.
    ValueError
        If ``where`` does not broadcast to the input's shape, or ``out`` has another
        shape or dtype than the result.
    AxisError
        If an axis is out of range or repeated.
    LookupError
        If ``backend`` (or `use_backend`, or ``SOFTMAX_DISPATCH_BACKEND``) names no
        registered backend.
    BackendUnavailable
        If the chosen backend cannot run here (its library, driver or device is missing).

    See Also
    --------
    softmax : The softmax itself.
    log_softmax_backward : The gradient, from the saved output.
    LogSoftmax : The same as a layer.

    Examples
    --------
    >>> import numpy as np
    >>> import softmax_dispatch as sd
    >>> np.round(sd.log_softmax(np.array([1.0, 2.0, 3.0])), 4)
    array([-2.4076, -1.4076, -0.4076])
    >>> sd.log_softmax(np.array([0.0, -1000.0]))  # log(softmax) would give -inf
    array([    0., -1000.])
    >>> mask = np.array([True, True, False])
    >>> np.round(sd.log_softmax(np.array([1.0, 2.0, 3.0]), where=mask), 4)
    array([-1.3133, -0.3133,    -inf])
    >>> import array_api_strict as xp
    >>> sd.log_softmax(xp.asarray([0.0, 0.0]))
    Array([-0.69314718, -0.69314718], dtype=array_api_strict.float64)
    """
    if other:
        refuse_keywords(log_softmax, other)
    if where is None and dtype is None and out is None:
        y = _quick_forward("log_softmax", x, axis, backend)
        if y is not None:
            return y
    return _forward("log_softmax", x, axis, where, dtype, out, backend)


def _backward(
    op: str, grad: Array, y: Array, axis: Any, where: Any, out: Any, backend: str | None
) -> Array:
    grad, y = plain(grad, "grad"), plain(y, "y")
    given_out, where, out = out, _plain_or_none(where, "where"), _plain_or_none(out, "out")
    res, xp = resolve(grad, (("y", y), *_optional(where=where, out=out)), backend, label="grad")
    if dtype_kind(xp, y.dtype) != "float":
        raise TypeError(
            f"y must be the real floating output of the forward pass, got dtype {y.dtype}"
        )
    if not shapes_match(tuple(grad.shape), tuple(y.shape)):
        raise ValueError(
            f"grad has shape {tuple(grad.shape)} but y has shape {tuple(y.shape)}; "
            "they must be equal"
        )
    grad = as_float(xp, grad, y.dtype, "grad")
    _seen_float(res, y.dtype)
    axes = normalize_axes(axis, y.ndim)
    mask = check_mask(xp, where, tuple(y.shape))
    if out is not None:
        check_out(out, tuple(y.shape), y.dtype)
    if is_empty(tuple(y.shape)):
        return _result(xp, _empty(xp, y), out, given_out, y)
    return _result(xp, res.kernels[op](xp, grad, y, axes, mask, out), out, given_out, y)


def softmax_backward(
    grad: Array,
    y: Array,
    /,
    axis: int | tuple[int, ...] | None = -1,
    *,
    where: Array | None = None,
    out: Array | None = None,
    backend: str | None = None,
    **other: Any,
) -> Array:
    """Gradient of softmax with respect to its input, from the saved output.

    Given the upstream gradient ``grad`` and the saved output ``y = softmax(x, axis)``,
    returns ``y * (grad - sum(grad * y, axis))``. This is the full vector-Jacobian product
    ``grad @ (diag(y) - y yᵀ)``, not the diagonal-only ``grad * y * (1 - y)`` that
    tutorials copy (wrong whenever more than one entry of ``grad`` is non-zero). Only
    ``y`` is needed, so a layer need not keep ``x``.

    Parameters
    ----------
    grad : array
        Upstream gradient, the gradient of the loss with respect to ``y``; ``y``'s shape.
    y : array
        The output of ``softmax(x, axis, where=where)``, real floating.
    axis : int, tuple of int or None, default: -1
        The axis or axes of the forward call.
    where : array of bool, optional
        The forward call's mask, broadcastable to ``y``: masked entries get gradient
        exactly 0.
    out : array, optional
        Array to write the gradient into (``y``'s shape and dtype; it may be ``grad`` or
        ``y`` itself); returned.
    backend : str, optional
        Name of the backend to use; default: the one that owns ``grad``.
    **other
        Any other keyword is a `TypeError` that says what to write instead.

    Returns
    -------
    array
        The gradient with respect to the forward's input ``x``: same library, device and
        shape as ``y``, ``y``'s dtype (``grad`` is cast); ``out`` itself when given.

    Raises
    ------
    TypeError
        If ``y`` is not real floating, ``grad`` has an unsupported dtype, the arrays come
        from different libraries or devices, ``out`` cannot be written to, or a keyword
        argument is unknown.
    ValueError
        If ``grad`` and ``y`` have different shapes, ``where`` does not broadcast to
        them, or ``out`` has another shape or dtype than ``y``.
    AxisError
        If an axis is out of range or repeated.

    See Also
    --------
    softmax : The forward function.
    log_softmax_backward : The same for `log_softmax`.

    Examples
    --------
    >>> import numpy as np
    >>> import softmax_dispatch as sd
    >>> y = sd.softmax(np.array([1.0, 2.0, 3.0]))
    >>> np.round(sd.softmax_backward(np.array([1.0, 0.0, 0.0]), y), 4)
    array([ 0.0819, -0.022 , -0.0599])
    >>> import array_api_strict as xp
    >>> y = sd.softmax(xp.asarray([0.0, 0.0]))
    >>> sd.softmax_backward(xp.asarray([1.0, 0.0]), y)
    Array([ 0.25, -0.25], dtype=array_api_strict.float64)
    """
    if other:
        refuse_keywords(softmax_backward, other)
    if where is None and out is None:
        dx = _quick_backward("softmax_backward", grad, y, axis, backend)
        if dx is not None:
            return dx
    return _backward("softmax_backward", grad, y, axis, where, out, backend)


def log_softmax_backward(
    grad: Array,
    y: Array,
    /,
    axis: int | tuple[int, ...] | None = -1,
    *,
    where: Array | None = None,
    out: Array | None = None,
    backend: str | None = None,
    **other: Any,
) -> Array:
    """Gradient of log_softmax with respect to its input, from the saved output.

    Given the upstream gradient ``grad`` and the saved output
    ``y = log_softmax(x, axis)``, returns ``grad - exp(y) * sum(grad, axis)``. With
    ``where``, masked entries get gradient exactly 0.

    Parameters
    ----------
    grad : array
        Upstream gradient, the gradient of the loss with respect to ``y``; ``y``'s shape.
    y : array
        The output of ``log_softmax(x, axis, where=where)``, real floating.
    axis : int, tuple of int or None, default: -1
        The axis or axes of the forward call.
    where : array of bool, optional
        The forward call's mask, broadcastable to ``y``: masked entries get gradient
        exactly 0.
    out : array, optional
        Array to write the gradient into (``y``'s shape and dtype; it may be ``grad`` or
        ``y`` itself); returned.
    backend : str, optional
        Name of the backend to use; default: the one that owns ``grad``.
    **other
        Any other keyword is a `TypeError` that says what to write instead.

    Returns
    -------
    array
        The gradient with respect to the forward's input ``x``: same library, device and
        shape as ``y``, ``y``'s dtype (``grad`` is cast); ``out`` itself when given.

    Raises
    ------
    TypeError
        If ``y`` is not real floating, ``grad`` has an unsupported dtype, the arrays come
        from different libraries or devices, ``out`` cannot be written to, or a keyword
        argument is unknown.
    ValueError
        If ``grad`` and ``y`` have different shapes, ``where`` does not broadcast to
        them, or ``out`` has another shape or dtype than ``y``.
    AxisError
        If an axis is out of range or repeated.

    See Also
    --------
    log_softmax : The forward function.
    softmax_backward : The same for `softmax`.

    Examples
    --------
    >>> import numpy as np
    >>> import softmax_dispatch as sd
    >>> y = sd.log_softmax(np.array([1.0, 2.0, 3.0]))
    >>> np.round(sd.log_softmax_backward(np.array([1.0, 0.0, 0.0]), y), 4)
    array([ 0.91  , -0.2447, -0.6652])
    >>> import array_api_strict as xp
    >>> y = sd.log_softmax(xp.asarray([0.0, 0.0]))
    >>> sd.log_softmax_backward(xp.asarray([1.0, 0.0]), y)
    Array([ 0.5, -0.5], dtype=array_api_strict.float64)
    """
    if other:
        refuse_keywords(log_softmax_backward, other)
    if where is None and out is None:
        dx = _quick_backward("log_softmax_backward", grad, y, axis, backend)
        if dx is not None:
            return dx
    return _backward("log_softmax_backward", grad, y, axis, where, out, backend)


def _cross_entropy(
    logits: Array,
    target: Array,
    axis: Any,
    options: tuple[Any, Any, Any],
    weight: Any,
    backend: str | None,
    grad: Any = NO_GRAD,
) -> tuple[Resolved, ModuleType, CrossEntropyArgs]:
    """Resolve the backend for a cross-entropy call and validate its arguments."""
    logits, target = plain(logits, "logits"), plain(target, "target")
    weight = _plain_or_none(weight, "weight")
    others = (("target", target), *_optional(weight=weight))
    if grad is not NO_GRAD and not isinstance(grad, numbers.Number):
        grad = plain(grad, "grad")
        others += (("grad", grad),)
    res, xp = resolve(logits, others, backend, label="logits")
    args = check_cross_entropy(xp, logits, target, axis, options, weight, grad, res.cheap_reads)
    return res, xp, args


def softmax_cross_entropy(
    logits: Array,
    target: Array,
    /,
    axis: int = -1,
    *,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    weight: Array | None = None,
    backend: str | None = None,
    **other: Any,
) -> Array:
    """Cross-entropy between ``softmax(logits, axis)`` and ``target``.

    The semantics of ``torch.nn.functional.cross_entropy`` on class axis ``axis`` (whose
    default, -1, differs from PyTorch's 1: pass ``axis=1`` for NCHW logits), except that
    ignored samples contribute exactly 0 even when their logits are ``-inf`` or NaN, and
    "mean" over no counted sample is 0, not NaN.

    Parameters
    ----------
    logits : array
        Unnormalised scores, real floating or integer; ``axis`` is the class axis.
    target : array
        Integer class indices with the logits' shape without ``axis``, or class
        probabilities (real floating) with the logits' shape.
    axis : int, default: -1
        The class axis of ``logits``.
    reduction : {"mean", "sum", "none"}, default: "mean"
        ``"mean"`` (PyTorch's weighted mean: divided by the summed ``weight`` of the
        counted index targets, or by the number of samples for probability targets),
        ``"sum"`` or ``"none"`` (per-sample losses, the logits' shape without ``axis``).
    label_smoothing : float, default: 0.0
        In [0, 1]: the target is mixed with the uniform distribution over the classes.
    ignore_index : int, optional
        For index targets: samples with this class contribute exactly 0 to the loss and
        the gradient, whatever their logits (even ``-inf`` or NaN). If every sample is
        ignored, "mean" gives 0 (PyTorch: NaN).
    weight : array, optional
        Per-class weights, shape ``(n_classes,)``, of the logits' library.
    backend : str, optional
        Name of the backend to use; default: the one that owns ``logits``.
    **other
        Any other keyword is a `TypeError` that says what to write instead
        (``size_average=`` and ``reduce=`` are ``reduction=`` here).

    Returns
    -------
    array
        The loss, of the logits' library, device and floating dtype: 0-d for "mean" and
        "sum", the per-sample losses (the logits' shape without ``axis``) for "none".

    Raises
    ------
    TypeError
        If an array has an unsupported dtype, ``axis`` is not one int, an option has the
        wrong type, the arrays come from different libraries or devices, or a keyword
        argument is unknown.
    ValueError
        If ``target`` has neither the class indices' shape nor the logits' shape (the
        message says ``pass axis=1`` for PyTorch's NCHW layout), a floating target has
        the class indices' shape, ``weight`` has the wrong shape, ``logits`` is 0-d or has
        no classes, ``ignore_index`` is given with probability targets, ``reduction`` is
        unknown, or ``label_smoothing`` is outside [0, 1].
    IndexError
        If a class index is out of range, where the target can be read without a device
        synchronisation (NumPy, PyTorch CPU, array-api-strict). Elsewhere (CuPy, CUDA
        tensors, Dask, JAX) the loss of such a sample is NaN instead.
    AxisError
        If ``axis`` is out of range.

    See Also
    --------
    softmax_cross_entropy_backward : The gradient with respect to ``logits``.
    SoftmaxCrossEntropy : The same as a layer.
    log_softmax : The log-probabilities the loss is computed from.

    Examples
    --------
    >>> import numpy as np
    >>> import softmax_dispatch as sd
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]])
    >>> round(float(sd.softmax_cross_entropy(logits, np.array([0, 2]))), 4)
    0.67
    >>> np.round(sd.softmax_cross_entropy(logits, np.array([0, 2]), reduction="none"), 4)
    array([0.2413, 1.0986])
    >>> target = np.array([0, -100])
    >>> np.round(sd.softmax_cross_entropy(logits, target, ignore_index=-100, reduction="none"), 4)
    array([0.2413, 0.    ])
    >>> sd.softmax_cross_entropy(logits, np.array([0, 3]))
    Traceback (most recent call last):
    ...
    IndexError: target holds class index 3, out of range for 3 classes (allowed: 0 to 2)
    """
    if other:
        refuse_keywords(softmax_cross_entropy, other)
    options = (reduction, label_smoothing, ignore_index)
    res, xp, a = _cross_entropy(logits, target, axis, options, weight, backend)
    loss = res.kernels["cross_entropy"](xp, a.logits, a.target, a.axis, **a.options())
    return _array(xp, loss, a.logits)


def softmax_cross_entropy_backward(
    logits: Array,
    target: Array,
    /,
    grad: Array | float = 1.0,
    axis: int = -1,
    *,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    weight: Array | None = None,
    backend: str | None = None,
    **other: Any,
) -> Array:
    """``grad`` times the gradient of `softmax_cross_entropy` with respect to ``logits``.

    For one sample with index target and no options, the gradient is
    ``softmax(logits) - onehot(target)``; ``weight``, ``label_smoothing``,
    ``ignore_index`` and ``reduction`` act on it as on the loss. Ignored samples get
    exactly 0, whatever their logits or ``grad`` hold.

    Parameters
    ----------
    logits : array
        Unnormalised scores, as given to `softmax_cross_entropy`.
    target : array
        Class indices or class probabilities, as given to `softmax_cross_entropy`.
    grad : array or float, default: 1.0
        Upstream gradient of the loss: a scalar for "mean" and "sum", a scalar or a
        per-sample array (the loss's shape) for "none".
    axis : int, default: -1
        The class axis of ``logits``.
    reduction : {"mean", "sum", "none"}, default: "mean"
        ``"mean"`` (PyTorch's weighted mean: divided by the summed ``weight`` of the
        counted index targets, or by the number of samples for probability targets),
        ``"sum"`` or ``"none"`` (per-sample losses, the logits' shape without ``axis``).
    label_smoothing : float, default: 0.0
        In [0, 1]: the target is mixed with the uniform distribution over the classes.
    ignore_index : int, optional
        For index targets: samples with this class contribute exactly 0 to the loss and
        the gradient, whatever their logits (even ``-inf`` or NaN). If every sample is
        ignored, "mean" gives 0 (PyTorch: NaN).
    weight : array, optional
        Per-class weights, shape ``(n_classes,)``, of the logits' library.
    backend : str, optional
        Name of the backend to use; default: the one that owns ``logits``.
    **other
        Any other keyword is a `TypeError` that says what to write instead
        (``size_average=`` and ``reduce=`` are ``reduction=`` here).

    Returns
    -------
    array
        The gradient with respect to ``logits``: same library, device, shape and floating
        dtype as ``logits``.

    Raises
    ------
    TypeError
        If an array has an unsupported dtype, ``grad`` is ``None`` or not real, ``axis``
        is not one int, an option has the wrong type, the arrays come from different
        libraries or devices, or a keyword argument is unknown.
    ValueError
        If ``target`` has neither the class indices' shape nor the logits' shape (the
        message says ``pass axis=1`` for PyTorch's NCHW layout), a floating target has
        the class indices' shape, ``weight`` or ``grad`` has the wrong shape, ``logits``
        is 0-d or has no classes, ``ignore_index`` is given with probability targets,
        ``reduction`` is unknown, or ``label_smoothing`` is outside [0, 1].
    IndexError
        If a class index is out of range, where the target can be read without a device
        synchronisation (NumPy, PyTorch CPU, array-api-strict). Elsewhere (CuPy, CUDA
        tensors, Dask, JAX) the loss of such a sample is NaN instead.
    AxisError
        If ``axis`` is out of range.

    See Also
    --------
    softmax_cross_entropy : The loss.
    SoftmaxCrossEntropy : The same as a layer.

    Examples
    --------
    >>> import numpy as np
    >>> import softmax_dispatch as sd
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]])
    >>> target = np.array([0, 2])
    >>> np.round(sd.softmax_cross_entropy_backward(logits, target), 4)  # mean over 2
    array([[-0.1072,  0.0876,  0.0196],
           [ 0.1667,  0.1667, -0.3333]])
    >>> import array_api_strict as xp
    >>> sd.softmax_cross_entropy_backward(xp.asarray([[0.0, 0.0]]), xp.asarray([0]))
    Array([[-0.5,  0.5]], dtype=array_api_strict.float64)
    """
    if other:
        refuse_keywords(softmax_cross_entropy_backward, other)
    options = (reduction, label_smoothing, ignore_index)
    res, xp, a = _cross_entropy(logits, target, axis, options, weight, backend, grad)
    dx = res.kernels["cross_entropy_backward"](
        xp, a.logits, a.target, a.grad, a.axis, **a.options()
    )
    return _array(xp, dx, a.logits)
