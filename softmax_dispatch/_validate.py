"""Argument checks shared by the public functions. Errors name the bad value and what
is allowed."""

from __future__ import annotations

import contextlib
import math
import numbers
import operator
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import array_api_compat

from ._backend import type_name

__all__ = [
    "NO_GRAD",
    "REDUCTIONS",
    "AxisError",
    "CrossEntropyArgs",
    "as_float",
    "check_cross_entropy",
    "check_mask",
    "cross_entropy_options",
    "check_out",
    "deliver",
    "dtype_kind",
    "normalize_axes",
    "plain",
]


class AxisError(ValueError, IndexError):
    """An axis is out of range or repeated.

    Both a `ValueError` and an `IndexError`, like NumPy's ``AxisError``, so that code
    catching either keeps working. The message names the axis and the number of
    dimensions.

    See Also
    --------
    softmax : Takes an int, a tuple of ints, ``None`` or ``()`` as ``axis``.

    Examples
    --------
    >>> import numpy as np, softmax_dispatch as sd
    >>> try:
    ...     sd.softmax(np.zeros((2, 3)), axis=2)
    ... except sd.AxisError as exc:
    ...     print(exc)
    axis 2 is out of bounds for array of dimension 2
    >>> try:
    ...     sd.softmax(np.zeros((2, 3)), axis=(1, -1))
    ... except ValueError as exc:  # an IndexError too
    ...     print(exc)
    repeated axis in (1, -1) for array of dimension 2
    """


def _one_axis(a: Any, ndim: int) -> int:
    if isinstance(a, bool):
        raise TypeError(f"axis must be an int, a tuple of ints or None, got {a!r}")
    try:
        i = operator.index(a)
    except TypeError:
        raise TypeError(
            f"axis must be an int, a tuple of ints or None, got {type(a).__name__} {a!r}"
        ) from None
    if not -ndim <= i < ndim:
        raise AxisError(f"axis {i} is out of bounds for array of dimension {ndim}")
    return i % ndim


def normalize_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """``axis`` as a tuple of distinct non-negative ints.

    ``None`` is every axis, ``()`` none (each element its own distribution). A 0-d array
    accepts ``axis=0`` and ``axis=-1``, as PyTorch does, meaning its single element.

    >>> normalize_axes(-1, 3), normalize_axes((0, -1), 3), normalize_axes(None, 2)
    ((2,), (0, 2), (0, 1))
    >>> normalize_axes(3, 2)
    Traceback (most recent call last):
    ...
    softmax_dispatch._validate.AxisError: axis 3 is out of bounds for array of dimension 2
    """
    if type(axis) is int and -ndim <= axis < ndim:  # the common case, fast
        return (axis % ndim,)
    if axis is None:
        return tuple(range(ndim))
    if ndim == 0 and not isinstance(axis, bool) and axis in (0, -1):
        return ()
    if isinstance(axis, (tuple, list)):
        axes = tuple(_one_axis(a, ndim) for a in axis)
        if len(set(axes)) != len(axes):
            raise AxisError(f"repeated axis in {tuple(axis)!r} for array of dimension {ndim}")
        return axes
    return (_one_axis(axis, ndim),)


#: Keywords users bring from other libraries, and what to write here instead.
_HABITS = {
    "dim": "use axis= (the Array API's name for PyTorch's dim)",
    "keepdim": "results always keep the input's shape",
    "keepdims": "results always keep the input's shape",
    "size_average": "use reduction='mean', 'sum' or 'none' (PyTorch's current spelling)",
    "reduce": "use reduction='mean', 'sum' or 'none' (PyTorch's current spelling)",
    "initial": "use where= to leave entries out",
}


def refuse_keywords(function: Callable[..., Any], given: dict[str, Any]) -> None:
    """`TypeError` for keyword arguments ``function`` (a public function or a layer
    class) does not take, with a hint for the ones other libraries use (``dim=`` is
    ``axis=`` here) and the accepted list."""
    import inspect

    params = inspect.signature(function).parameters.values()
    accepted = [
        p.name
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "other"
    ]
    name = next(iter(given))
    hint = _HABITS.get(name)
    hint = f"; {hint}" if hint else ""
    raise TypeError(
        f"{function.__name__}() got an unexpected keyword argument {name!r}{hint} "
        f"(accepted: {', '.join(accepted)})"
    )


def library_name(xp: ModuleType) -> str:
    """The array library as its users import it: ``numpy`` for
    ``array_api_compat.numpy``, ``torch``, ``jax.numpy``, ``dask.array``, ..."""
    name = xp.__name__
    return name.removeprefix("array_api_compat.")


def default_float(xp: ModuleType, x: Any) -> Any:
    info = getattr(xp, "__array_namespace_info__", None)
    if info is not None:
        try:
            return info().default_dtypes(device=array_api_compat.device(x))["real floating"]
        except Exception:  # an incomplete info object: fall back to what float() gives
            pass
    return xp.asarray(0.0).dtype


#: (namespace name, dtype) -> "float", "int" or "other": asked of isdtype once per pair.
#: Keyed by the module's name, not the module: torch.compile traces this lookup, and
#: Dynamo cannot compare modules as dictionary keys (a hash collision breaks the graph).
_KIND: dict[tuple[str, Any], str] = {}


def dtype_kind(xp: ModuleType, dtype: Any) -> str:
    key = (xp.__name__, dtype)
    try:
        return _KIND[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable dtype object: ask every time
        return _ask_kind(xp, dtype)
    kind = _KIND[key] = _ask_kind(xp, dtype)
    return kind


def _ask_kind(xp: ModuleType, dtype: Any) -> str:
    try:
        if xp.isdtype(dtype, "real floating"):
            return "float"
        if xp.isdtype(dtype, "integral"):
            return "int"
    except Exception:  # datetime, str, structured...: not a kind the standard knows
        pass
    return "other"


def _refuse_kind(xp: ModuleType, dtype: Any, label: str) -> None:
    hint = ""
    try:
        if xp.isdtype(dtype, "bool"):
            hint = " (cast booleans explicitly)"
        elif xp.isdtype(dtype, "complex floating"):
            hint = " (complex input has no softmax)"
    except Exception:
        pass
    raise TypeError(
        f"{label} has dtype {dtype}; softmax_dispatch takes real floating or integer arrays{hint}"
    )


def as_float(xp: ModuleType, x: Any, dtype: Any, label: str) -> Any:
    """``x`` cast to ``dtype``, or to its own real floating dtype; integers go to the
    namespace's default real floating dtype before anything else happens to them. Any
    other kind of dtype (bool, complex, datetime, object, ...) is a `TypeError`."""
    src = x.dtype
    kind = dtype_kind(xp, src)
    if dtype is None and kind == "float":  # the common case: nothing to do
        return x
    if dtype is not None:
        given = dtype
        if isinstance(dtype, str):  # "float32": the namespace's dtype of that name
            dtype = getattr(xp, dtype, dtype)
        try:
            ok = xp.isdtype(dtype, "real floating")
        except Exception:
            ok = False
        if not ok:
            lib = library_name(xp)
            raise TypeError(
                f"dtype must be a real floating dtype of {lib}, by name or object "
                f"(e.g. 'float32' or {lib}.float32), got {given!r}"
            )
    if kind == "other":
        _refuse_kind(xp, src, label)
    if dtype is None:
        dtype = default_float(xp, x)
    return x if src == dtype else xp.astype(x, dtype)


#: Types known to need no conversion by `plain` (anything but an ndarray subclass).
_PLAIN: set[type] = set()


def plain(a: Any, label: str) -> Any:
    """``a`` itself, or for an ndarray subclass the plain ndarray it holds (one rule for
    every op, size and kernel path: np.matrix, memmap, a user's subclass all compute as
    ``np.asarray(a)`` would). Masked arrays are refused: their mask would be ignored."""
    if type(a) in _PLAIN:
        return a
    np = sys.modules.get("numpy")
    if np is None or not isinstance(a, np.ndarray) or type(a) is np.ndarray:
        with contextlib.suppress(TypeError):  # unhashable types are asked every time
            _PLAIN.add(type(a))
        return a
    if isinstance(a, np.ma.MaskedArray):
        raise TypeError(
            f"{label} is a numpy.ma.MaskedArray, whose mask softmax_dispatch would ignore; "
            f"pass its data and the mask as where= (where=~numpy.ma.getmaskarray({label}))"
            ", or for cross-entropy targets mark the ignored samples with ignore_index"
        )
    return a.view(np.ndarray)


def _unknown(n: Any) -> bool:
    """A size Dask does not know yet (after boolean indexing): None or nan."""
    return n is None or (isinstance(n, float) and math.isnan(n))


def shapes_match(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Equal shapes, a size that is not known yet matching any size: such shapes are
    unknown, not unequal (the values decide when they are computed)."""
    return len(a) == len(b) and all(
        _unknown(p) or _unknown(q) or p == q for p, q in zip(a, b, strict=True)
    )


def _broadcasts_to(shape: tuple[Any, ...], target: tuple[Any, ...]) -> bool:
    if len(shape) > len(target):
        return False
    return all(
        s == 1 or _unknown(s) or _unknown(t) or s == t
        for s, t in zip(reversed(shape), reversed(target))
    )


def check_mask(xp: ModuleType, where: Any, shape: tuple[int, ...]) -> Any:
    if where is None:
        return None
    if not xp.isdtype(where.dtype, "bool"):
        raise TypeError(f"where must be a boolean array, got dtype {where.dtype}")
    if not _broadcasts_to(tuple(where.shape), shape):
        raise ValueError(
            f"where has shape {tuple(where.shape)}, which does not broadcast to the "
            f"input's shape {shape}"
        )
    return where


def supports_item_assignment(a: Any) -> bool:
    """Whether ``a[...] = value`` works: not for JAX or Cubed arrays, nor read-only
    NumPy arrays."""
    return array_api_compat.is_writeable_array(a) and hasattr(type(a), "__setitem__")


def check_out(out: Any, shape: tuple[int, ...], dtype: Any) -> None:
    if not shapes_match(tuple(out.shape), tuple(shape)) or out.dtype != dtype:
        raise ValueError(
            f"out must have shape {tuple(shape)} and dtype {dtype}, got shape "
            f"{tuple(out.shape)} and dtype {out.dtype}"
        )
    if not supports_item_assignment(out):
        raise TypeError(
            f"out= needs an array that supports item assignment; {type_name(out)} "
            "does not (JAX and Cubed arrays are immutable, read-only NumPy arrays too): "
            "use the returned array instead"
        )


def deliver(result: Any, out: Any) -> Any:
    if out is None:
        return result
    if result is not out:
        out[...] = result
    return out


def is_empty(shape: tuple[Any, ...]) -> bool:
    """Whether a dimension is known to be 0 (Dask may not know a size: None or nan,
    which compare unequal to 0)."""
    return 0 in shape


# ------------------------------------------------------------------- cross-entropy
REDUCTIONS = ("mean", "sum", "none")
_INT64_MAX = 2**63 - 1
#: ``grad`` as the forward function passes it: it has none (``None`` itself is a
#: caller's mistake, reported as such).
NO_GRAD: Any = object()


@dataclass(frozen=True)
class CrossEntropyArgs:
    """A validated cross-entropy call, in the form the kernels take it."""

    logits: Any
    target: Any
    axis: int
    weight: Any
    ignore_index: int | None
    label_smoothing: float
    reduction: str
    index_target: bool
    grad: Any = None

    def options(self) -> dict[str, Any]:
        """The kernels' keyword arguments."""
        return dict(
            weight=self.weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            reduction=self.reduction,
            index_target=self.index_target,
        )


def cross_entropy_options(
    reduction: Any, label_smoothing: Any, ignore_index: Any
) -> tuple[str, float, int | None]:
    """The scalar options, checked: ``(reduction, label_smoothing, ignore_index)``."""
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


def check_cross_entropy(
    xp: ModuleType,
    logits: Any,
    target: Any,
    axis: Any,
    options: tuple[Any, Any, Any],
    weight: Any,
    grad: Any = NO_GRAD,
    cheap_reads: Callable[[Any], bool] | None = None,
) -> CrossEntropyArgs:
    """Every argument of a cross-entropy call checked against the others (shapes, dtypes,
    class indices where they can be read without a device sync)."""
    reduction, ls, ignore_index = cross_entropy_options(*options)
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
    kind = dtype_kind(xp, target.dtype)
    if kind == "int":
        if not shapes_match(tuple(target.shape), sample_shape):
            raise ValueError(
                f"class-index target must have the logits' shape without axis {axis}, "
                f"{sample_shape}, got {tuple(target.shape)}"
                + _class_axis_hint(shape, tuple(target.shape), axis)
            )
        if (cheap_reads or reads_are_cheap)(target):
            check_class_indices(xp, target, n_classes, ignore_index)
    elif kind == "float":
        if not shapes_match(tuple(target.shape), shape):
            if _class_axis_hint(shape, tuple(target.shape), axis) or shapes_match(
                tuple(target.shape), sample_shape
            ):
                raise ValueError(
                    f"target has dtype {target.dtype} and shape {tuple(target.shape)}, the "
                    "shape of class indices: class indices must be integers (cast them, "
                    "e.g. astype(int64) or .long()); a floating target is read as class "
                    f"probabilities, which need the logits' shape {shape}"
                )
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
        if not shapes_match(tuple(weight.shape), (n_classes,)):
            raise ValueError(
                f"weight must have shape ({n_classes},), one entry per class, "
                f"got {tuple(weight.shape)}"
            )
    if grad is not NO_GRAD:
        grad = _check_grad(xp, grad, reduction, sample_shape)
    return CrossEntropyArgs(
        logits, target, axis, weight, ignore_index, ls, reduction, kind == "int", grad
    )


def _class_axis_hint(shape: tuple[Any, ...], target_shape: tuple[Any, ...], axis: int) -> str:
    """``"; ... pass axis=1"`` where the target would fit the logits with another class
    axis (PyTorch's class axis is 1, ours defaults to the last)."""
    fits = [
        a
        for a in range(len(shape))
        if a != axis and shapes_match(shape[:a] + shape[a + 1 :], target_shape)
    ]
    if not fits:
        return ""
    return (
        f"; it fits with the classes on axis {fits[0]}: pass axis={fits[0]} (PyTorch's "
        "cross_entropy takes classes on axis 1; here the default is the last axis)"
    )


def _check_grad(xp: ModuleType, grad: Any, reduction: str, sample_shape: tuple[int, ...]) -> Any:
    if isinstance(grad, numbers.Number):
        if isinstance(grad, bool) or not isinstance(grad, numbers.Real):
            raise TypeError(f"grad must be a real number or an array, got {grad!r}")
        return float(grad)
    allowed = [()] if reduction != "none" else [(), sample_shape]
    if not any(shapes_match(tuple(grad.shape), a) for a in allowed):
        want = "a scalar (0-d)" if reduction != "none" else f"0-d or of shape {sample_shape}"
        raise ValueError(
            f"grad for reduction={reduction!r} must be {want}, got shape {tuple(grad.shape)}"
        )
    if dtype_kind(xp, grad.dtype) == "other":
        raise TypeError(f"grad must be real, got dtype {grad.dtype}")
    return grad


def reads_are_cheap(a: Any) -> bool:
    """Whether reading ``a``'s values now costs no device synchronisation and no
    computation — the default where a backend gives no ``Backend.cheap_reads``: not lazy
    (Dask; JAX, whose arrays may be tracers, so eager calls behave as jitted ones do) and
    not CuPy. Class indices are checked eagerly only then; elsewhere an out-of-range
    index gives that sample a NaN loss and gradient."""
    return not (array_api_compat.is_lazy_array(a) or array_api_compat.is_cupy_array(a))


def check_class_indices(
    xp: ModuleType, target: Any, n_classes: int, ignore_index: int | None
) -> None:
    """`IndexError` naming an out-of-range class index (one that is not ``ignore_index``)."""
    if is_empty(tuple(target.shape)):
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


def index_dtype_target(xp: ModuleType, target: Any) -> Any:
    """Class indices in the namespace's indexing dtype (int64, or int32 where 64-bit
    integers are off), so comparisons with class counts and ``ignore_index`` never
    overflow a small integer dtype."""
    try:
        info = xp.__array_namespace_info__()
        idx = info.default_dtypes(device=array_api_compat.device(target))["indexing"]
    except Exception:  # no inspection API: the widest the namespace surely has
        idx = xp.int64
    return target if target.dtype == idx else xp.astype(target, idx)
