"""Argument checks shared by the public functions. Errors name the bad value and what
is allowed."""

from __future__ import annotations

import contextlib
import operator
import sys
from types import ModuleType
from typing import Any

import array_api_compat

from ._backend import type_name

__all__ = [
    "AxisError",
    "as_float",
    "check_mask",
    "check_out",
    "deliver",
    "dtype_kind",
    "normalize_axes",
    "plain",
]


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


def dtype_kind(xp: ModuleType, dtype: Any) -> str:
    try:
        return _KIND[(xp, dtype)]
    except KeyError:
        pass
    except TypeError:  # an unhashable dtype object: ask every time
        return _ask_kind(xp, dtype)
    kind = _KIND[(xp, dtype)] = _ask_kind(xp, dtype)
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
        try:
            ok = xp.isdtype(dtype, "real floating")
        except Exception:
            ok = False
        if not ok:
            raise TypeError(
                f"dtype must be a real floating dtype of {xp.__name__} "
                f"(e.g. {xp.__name__}.float32), got {dtype!r}"
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
