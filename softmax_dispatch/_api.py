"""The public functions: validate arguments, pick a backend, hand off to a kernel."""

from __future__ import annotations

import numbers
from types import ModuleType
from typing import Any

from ._dispatch import Resolved, resolve
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


def _forward(
    op: str, x: Array, axis: Any, where: Any, dtype: Any, out: Any, backend: str | None
) -> Array:
    # Kept lean, the common call inlined: on an 8x10 tensor PyTorch's own softmax takes
    # ~5 us, and every call through this layer is measured against that.
    x = plain(x, "x")
    if where is None and out is None:
        res, xp = resolve(x, (), backend)
        if dtype is not None or dtype_kind(xp, x.dtype) != "float":
            x = as_float(xp, x, dtype, "x")
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

    Parameters
    ----------
    x
        Array of any library a backend owns (NumPy, CuPy, PyTorch, JAX, Dask,
        array-api-strict, ...). Integers are cast to the library's default real floating
        dtype first; boolean and complex input raise `TypeError`.
    axis
        int, tuple of ints, ``None`` (all axes) or ``()`` (each element on its own).
        The default, -1 (the last axis, as in PyTorch and JAX), differs from
        ``scipy.special.softmax(x)``, whose default ``axis=None`` normalises over all
        elements at once: pass ``axis=None`` for SciPy's result. PyTorch's ``dim=`` is
        spelled ``axis=`` here (the Array API name).
    where
        Boolean mask broadcastable to ``x``: masked entries get probability 0, a row with
        nothing unmasked gives zeros.
    dtype
        Real floating dtype to compute in and return; ``x`` is cast to it first.
    out
        Array to write the result into (``out is x`` works in place); returned.
    backend
        Name of the backend to use (see `backends`); default: the one that owns ``x``.
    **other
        Any other keyword is a `TypeError` that says what to write instead (``dim=`` is
        ``axis=`` here).

    Returns
    -------
    Array
        Same library, device and shape as ``x``; dtype ``dtype`` or ``x``'s floating dtype.
        float16/bfloat16 are computed in float32. A row holding NaN or ``+inf``, or only
        ``-inf`` (without ``where``), is NaN.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> import softmax_dispatch as sd
    >>> sd.softmax(xp.asarray([1.0, 1.0, 1.0, 1.0]))
    Array([0.25, 0.25, 0.25, 0.25], dtype=array_api_strict.float64)
    >>> sd.softmax(xp.asarray([-128, 127], dtype=xp.int8))  # no integer wraparound
    Array([1.79848622e-111, 1.00000000e+000], dtype=array_api_strict.float64)
    >>> sd.softmax(xp.asarray([1.0, 2.0, 3.0]), where=xp.asarray([True, True, False]))
    Array([0.26894142, 0.73105858, 0.        ], dtype=array_api_strict.float64)
    """
    if other:
        refuse_keywords(softmax, other)
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
    """Log of the softmax of ``x`` over ``axis``, computed stably as
    ``(x - max) - log(sum(exp(x - max)))``.

    Parameters and policies as for `softmax`; masked entries give ``-inf``.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> import softmax_dispatch as sd
    >>> sd.log_softmax(xp.asarray([0.0, 0.0]))
    Array([-0.69314718, -0.69314718], dtype=array_api_strict.float64)
    >>> sd.log_softmax(xp.asarray([0.0, -1000.0]))  # log(softmax) would give -inf
    Array([    0., -1000.], dtype=array_api_strict.float64)
    """
    if other:
        refuse_keywords(log_softmax, other)
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
    """Gradient of softmax with respect to its input, from the upstream gradient and the
    saved output ``y = softmax(x, axis)``: ``y * (grad - sum(grad * y, axis))``.

    This is the full vector-Jacobian product ``grad @ (diag(y) - y yᵀ)``, not the
    diagonal-only ``grad * y * (1 - y)`` that tutorials copy. With ``where``, masked
    entries get gradient exactly 0. The result has ``y``'s dtype (``grad`` is cast).

    Examples
    --------
    >>> import array_api_strict as xp
    >>> import softmax_dispatch as sd
    >>> y = sd.softmax(xp.asarray([0.0, 0.0]))
    >>> sd.softmax_backward(xp.asarray([1.0, 0.0]), y)
    Array([ 0.25, -0.25], dtype=array_api_strict.float64)
    """
    if other:
        refuse_keywords(softmax_backward, other)
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
    """Gradient of log_softmax with respect to its input, from the upstream gradient and
    the saved output ``y = log_softmax(x, axis)``: ``grad - exp(y) * sum(grad, axis)``.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> import softmax_dispatch as sd
    >>> y = sd.log_softmax(xp.asarray([0.0, 0.0]))
    >>> sd.log_softmax_backward(xp.asarray([1.0, 0.0]), y)
    Array([ 0.5, -0.5], dtype=array_api_strict.float64)
    """
    if other:
        refuse_keywords(log_softmax_backward, other)
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
    """Cross-entropy between ``softmax(logits, axis)`` and ``target``, with the semantics
    of ``torch.nn.functional.cross_entropy`` on class axis ``axis``.

    Parameters
    ----------
    logits
        Unnormalised scores; ``axis`` is the class axis.
    target
        Integer class indices with the logits' shape without ``axis``, or class
        probabilities with the logits' shape.
    reduction
        ``"mean"`` (PyTorch's weighted mean: divided by the summed ``weight`` of the
        counted index targets, or by the number of samples for probability targets),
        ``"sum"`` or ``"none"`` (per-sample losses).
    label_smoothing
        In [0, 1]: the target is mixed with the uniform distribution.
    ignore_index
        For index targets: samples with this class contribute exactly 0 to the loss and
        the gradient, whatever their logits. If every sample is ignored, "mean" gives 0.
    weight
        Per-class weights, shape ``(n_classes,)``.

    Out-of-range class indices raise `IndexError` (under ``jax.jit`` or Dask, where values
    cannot be read eagerly, their loss is NaN instead).

    Examples
    --------
    >>> import array_api_strict as xp
    >>> import softmax_dispatch as sd
    >>> logits = xp.asarray([[0.0, 0.0], [0.0, 0.0]])
    >>> sd.softmax_cross_entropy(logits, xp.asarray([0, 1]))  # log(2)
    Array(0.69314718, dtype=array_api_strict.float64)
    >>> sd.softmax_cross_entropy(logits, xp.asarray([0, -100]), ignore_index=-100,
    ...                          reduction="none")
    Array([0.69314718, 0.        ], dtype=array_api_strict.float64)
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

    ``grad`` is the upstream gradient of the loss: a scalar for "mean" and "sum", a
    scalar or per-sample array for "none". Options as for `softmax_cross_entropy`.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> import softmax_dispatch as sd
    >>> logits = xp.asarray([[0.0, 0.0]])
    >>> sd.softmax_cross_entropy_backward(logits, xp.asarray([0]))  # softmax - onehot
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
