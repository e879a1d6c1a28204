"""Argument checks shared by the public functions. Errors name the bad value and what
is allowed."""

from __future__ import annotations

import operator
from types import ModuleType
from typing import Any

import array_api_compat

from ._backend import type_name

__all__ = ["AxisError", "as_float", "check_mask", "check_out", "deliver", "normalize_axes"]


class AxisError(ValueError, IndexError):
    """An axis is out of range or repeated (a ValueError and an IndexError, like NumPy's)."""


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


def default_float(xp: ModuleType, x: Any) -> Any:
    info = getattr(xp, "__array_namespace_info__", None)
    if info is not None:
        try:
            return info().default_dtypes(device=array_api_compat.device(x))["real floating"]
        except Exception:  # an incomplete info object: fall back to what float() gives
            pass
    return xp.asarray(0.0).dtype


#: (namespace, dtype) -> "float", "int" or "other": asked of isdtype once per pair.
_KIND: dict[tuple[ModuleType, Any], str] = {}


def _kind(xp: ModuleType, dtype: Any) -> str:
    key = (xp, dtype)
    kind = _KIND.get(key)
    if kind is None:
        if xp.isdtype(dtype, "real floating"):
            kind = "float"
        elif xp.isdtype(dtype, "integral"):
            kind = "int"
        else:
            kind = "other"
        _KIND[key] = kind
    return kind


def as_float(xp: ModuleType, x: Any, dtype: Any, label: str) -> Any:
    """``x`` cast to ``dtype``, or to its own real floating dtype; integers go to the
    namespace's default real floating dtype before anything else happens to them."""
    src = x.dtype
    if dtype is None:
        try:
            if _kind(xp, src) == "float":  # the common case: nothing to do
                return x
        except TypeError:  # unhashable dtype object: take the long way
            pass
    if dtype is not None:
        try:
            ok = xp.isdtype(dtype, "real floating")
        except Exception:
            ok = False
        if not ok:
            raise TypeError(
                f"dtype must be a real floating dtype of {xp.__name__} "
                f"(e.g. {xp.__name__}.float32), got {dtype!r}"
            )
    src = x.dtype
    if xp.isdtype(src, "bool") or xp.isdtype(src, "complex floating"):
        raise TypeError(
            f"{label} has dtype {src}; softmax_dispatch takes real floating or integer "
            "arrays (cast booleans explicitly; complex input has no softmax)"
        )
    if dtype is None:
        dtype = src if xp.isdtype(src, "real floating") else default_float(xp, x)
    return x if src == dtype else xp.astype(x, dtype)


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(reversed(shape), reversed(target)))


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


def check_out(out: Any, shape: tuple[int, ...], dtype: Any) -> None:
    if tuple(out.shape) != tuple(shape) or out.dtype != dtype:
        raise ValueError(
            f"out must have shape {tuple(shape)} and dtype {dtype}, got shape "
            f"{tuple(out.shape)} and dtype {out.dtype}"
        )
    if not array_api_compat.is_writeable_array(out):
        raise TypeError(
            f"out= needs an array that supports item assignment; {type_name(out)} "
            "does not (JAX arrays are immutable, read-only NumPy arrays too): "
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
