"""The public functions: validate arguments, pick a backend, hand off to a kernel."""

from __future__ import annotations

import numbers
import operator
from types import ModuleType
from typing import Any

import array_api_compat

from ._dispatch import Resolved, resolve
from ._ops import index_dtype_target
from ._validate import (
    as_float,
    check_mask,
    check_out,
    deliver,
    dtype_kind,
    is_empty,
    normalize_axes,
    plain,
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

REDUCTIONS = ("mean", "sum", "none")
_INT64_MAX = 2**63 - 1


def _optional(**arrays: Any) -> tuple[tuple[str, Any], ...]:
    """(label, array) pairs for the optional array arguments that were given."""
    return tuple((k, v) for k, v in arrays.items() if v is not None)


#: What `_prepare_ce` is given for ``grad`` by the forward function, which has none
#: (``None`` itself is a caller's mistake, reported as such).
_NO_GRAD: Any = object()


def _forward(
    op: str, x: Array, axis: Any, where: Any, dtype: Any, out: Any, backend: str | None
) -> Array:
    # Kept lean: for an 8x10 array this layer is a fifth of the whole call.
    x = plain(x, "x")
    if where is None and out is None:
        given_out, others = None, ()
    else:
        given_out, where, out = out, _plain_or_none(where, "where"), _plain_or_none(out, "out")
        others = _optional(where=where, out=out)
    res, xp = resolve(x, others, backend)
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
    where
        Boolean mask broadcastable to ``x``: masked entries get probability 0, a row with
        nothing unmasked gives zeros.
    dtype
        Real floating dtype to compute in and return; ``x`` is cast to it first.
    out
        Array to write the result into (``out is x`` works in place); returned.
    backend
        Name of the backend to use (see `backends`); default: the one that owns ``x``.

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
    if tuple(grad.shape) != tuple(y.shape):
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
    return _backward("log_softmax_backward", grad, y, axis, where, out, backend)


def _ce_options(
    reduction: Any, label_smoothing: Any, ignore_index: Any
) -> tuple[str, float, int | None]:
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real):
        raise TypeError(f"label_smoothing must be a float in [0, 1], got {label_smoothing!r}")
    ls = float(label_smoothing)
    if not 0.0 <= ls <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    if ignore_index is not None:
        if isinstance(ignore_index, bool):
            raise TypeError(f"ignore_index must be an int or None, got {ignore_index!r}")
        try:
            ignore_index = operator.index(ignore_index)
        except TypeError:
            raise TypeError(
                f"ignore_index must be an int or None, got {type(ignore_index).__name__} "
                f"{ignore_index!r}"
            ) from None
        if not -_INT64_MAX - 1 <= ignore_index <= _INT64_MAX:
            raise ValueError(
                f"ignore_index must be between -2**63 and 2**63 - 1 (class indices are "
                f"compared as 64-bit integers), got {ignore_index}"
            )
    return reduction, ls, ignore_index


def _check_class_indices(
    xp: ModuleType, target: Array, n_classes: int, ignore_index: int | None
) -> None:
    """Eagerly reject out-of-range class indices where reading values is cheap; under
    ``jax.jit`` or Dask the kernel marks those samples NaN instead."""
    if array_api_compat.is_lazy_array(target) or is_empty(tuple(target.shape)):
        return
    # in the target's own dtype: exact, where a cast of a uint64 would wrap 2**64 - 1 to -1
    lo, hi = int(xp.min(target)), int(xp.max(target))
    if lo >= 0 and hi < n_classes:
        return
    if hi > _INT64_MAX:  # cannot be ignore_index (checked to fit int64): out of range
        _out_of_range(hi, n_classes, ignore_index)
    target = index_dtype_target(xp, target)  # no overflow comparing a uint8 with 300
    bad = (target < 0) | (target >= n_classes)
    if ignore_index is not None:
        bad = bad & (target != ignore_index)
    if bool(xp.any(bad)):
        lo = int(xp.min(xp.where(bad, target, xp.zeros_like(target) + n_classes)))
        hi = int(xp.max(xp.where(bad, target, xp.zeros_like(target))))
        _out_of_range(lo if lo < 0 else hi, n_classes, ignore_index)


def _out_of_range(value: int, n_classes: int, ignore_index: int | None) -> None:
    raise IndexError(
        f"target holds class index {value}, out of range for {n_classes} classes "
        f"(allowed: 0 to {n_classes - 1}"
        + (f", or ignore_index={ignore_index})" if ignore_index is not None else ")")
    )


def _prepare_ce(
    logits: Array,
    target: Array,
    axis: Any,
    reduction: Any,
    label_smoothing: Any,
    ignore_index: Any,
    weight: Any,
    backend: str | None,
    grad: Any = _NO_GRAD,
) -> tuple[Resolved, ModuleType, Array, Array, int, dict[str, Any], Any]:
    reduction, ls, ignore_index = _ce_options(reduction, label_smoothing, ignore_index)
    logits, target = plain(logits, "logits"), plain(target, "target")
    weight = _plain_or_none(weight, "weight")
    others = (("target", target), *_optional(weight=weight))
    if grad is not _NO_GRAD and not isinstance(grad, numbers.Number):
        grad = plain(grad, "grad")
        others += (("grad", grad),)
    res, xp = resolve(logits, others, backend, label="logits")
    logits = as_float(xp, logits, None, "logits")
    if logits.ndim == 0:
        raise ValueError("logits must have at least one dimension (the class axis)")
    if axis is None or isinstance(axis, (tuple, list)):
        raise TypeError(f"axis for cross-entropy must be one int (the class axis), got {axis!r}")
    (axis,) = normalize_axes(axis, logits.ndim)
    shape = tuple(logits.shape)
    n_classes = shape[axis]
    if n_classes == 0:
        raise ValueError(f"logits have 0 classes along axis {axis}; need at least one")
    sample_shape = shape[:axis] + shape[axis + 1 :]
    if xp.isdtype(target.dtype, "integral"):
        index_target = True
        if tuple(target.shape) != sample_shape:
            raise ValueError(
                f"class-index target must have the logits' shape without axis {axis}, "
                f"{sample_shape}, got {tuple(target.shape)}"
            )
        _check_class_indices(xp, target, n_classes, ignore_index)
    elif xp.isdtype(target.dtype, "real floating"):
        index_target = False
        if tuple(target.shape) != shape:
            raise ValueError(
                f"probability target must have the logits' shape {shape}, got {tuple(target.shape)}"
            )
        if ignore_index is not None:
            raise ValueError(
                "ignore_index applies to class-index (integer) targets only; "
                "give probability targets zero rows instead"
            )
    else:
        raise TypeError(
            f"target must hold integer class indices or real floating class "
            f"probabilities, got dtype {target.dtype}"
        )
    if weight is not None:
        weight = as_float(xp, weight, None, "weight")
        if tuple(weight.shape) != (n_classes,):
            raise ValueError(
                f"weight must have shape ({n_classes},), one entry per class, "
                f"got {tuple(weight.shape)}"
            )
    if grad is not _NO_GRAD:
        grad = _check_grad(xp, grad, reduction, sample_shape)
    options = dict(
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=ls,
        reduction=reduction,
        index_target=index_target,
    )
    return res, xp, logits, target, axis, options, grad


def _check_grad(xp: ModuleType, grad: Any, reduction: str, sample_shape: tuple[int, ...]) -> Any:
    if isinstance(grad, numbers.Number):
        if isinstance(grad, bool) or not isinstance(grad, numbers.Real):
            raise TypeError(f"grad must be a real number or an array, got {grad!r}")
        return float(grad)
    allowed = [()] if reduction != "none" else [(), sample_shape]
    if tuple(grad.shape) not in allowed:
        want = "a scalar (0-d)" if reduction != "none" else f"0-d or of shape {sample_shape}"
        raise ValueError(
            f"grad for reduction={reduction!r} must be {want}, got shape {tuple(grad.shape)}"
        )
    if not (xp.isdtype(grad.dtype, "real floating") or xp.isdtype(grad.dtype, "integral")):
        raise TypeError(f"grad must be real, got dtype {grad.dtype}")
    return grad


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
    res, xp, logits, target, axis, options, _ = _prepare_ce(
        logits, target, axis, reduction, label_smoothing, ignore_index, weight, backend
    )
    return _array(xp, res.kernels["cross_entropy"](xp, logits, target, axis, **options), logits)


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
    res, xp, logits, target, axis, options, grad = _prepare_ce(
        logits, target, axis, reduction, label_smoothing, ignore_index, weight, backend, grad
    )
    dx = res.kernels["cross_entropy_backward"](xp, logits, target, grad, axis, **options)
    return _array(xp, dx, logits)
