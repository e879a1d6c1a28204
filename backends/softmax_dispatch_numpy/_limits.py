"""The numeric limits every NumPy kernel shares: the dtype arithmetic runs in, the max's
starting point, and the per-row test for taking ``exp(x)`` without the shift."""

from __future__ import annotations

import numpy as np

__all__ = ["compute_dtype", "is_compute_dtype", "lowest", "unshifted", "unshifted_rows"]

#: The compute dtypes: float16 is computed in float32; long double in itself (its limits
#: are kept as NumPy scalars: as Python floats they would overflow to inf).
_COMPUTE = tuple(np.dtype(t) for t in (np.float32, np.float64, np.longdouble))
_LOWEST = {t: np.finfo(t).min for t in _COMPUTE}

#: softmax takes a row as exp(x) / sum, without subtracting its max, when that sum lies
#: in [SUM_MIN, _SUM_MAX]: nothing overflowed (every term is finite); a term exp(x) that
#: underflowed would give a result exp(x) / sum <= 2 exp(x), itself below float
#: resolution (at most 1 ulp off where it reaches the smallest normal); and x is not
#: rounded by a subtraction, so such a row is as accurate as the shifted form or more.
#: Other rows — NaN, +inf, all -inf, maxima far below 0 or above ~log(1/tiny) - log(n) —
#: take exp(x - max) / sum. The choice is made row by row: no row depends on another.
SUM_MIN = 0.5
_SUM_MAX = {t: 1 / np.finfo(t).tiny for t in _COMPUTE}


#: The compute dtype of each native floating dtype (the common case, a dict look-up).
_NATIVE = {np.dtype(np.float16): np.dtype(np.float32), **{t: t for t in _COMPUTE}}


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """float32 for float16; otherwise ``dtype`` in native byte order."""
    ct = _NATIVE.get(dtype)
    if ct is None:
        ct = np.dtype(np.float32) if dtype.itemsize < 4 else dtype.newbyteorder("=")
    return ct


def is_compute_dtype(dtype: np.dtype) -> bool:
    """float32, float64 or long double, in native byte order."""
    return dtype in _LOWEST


def lowest(dtype: np.dtype) -> np.generic:
    """The most negative finite value of a compute dtype: as the max's starting point it
    stands in for a row of only -inf, so -inf - -inf is never computed (at no extra pass)."""
    return _LOWEST[dtype]


def unshifted_rows(total: np.ndarray) -> np.ndarray:
    """Which rows, by their sums of exp(x), keep exp(x) without the shift (NaN: no)."""
    return (total >= SUM_MIN) & (total <= _SUM_MAX[total.dtype])


def unshifted(total: np.ndarray) -> bool:
    """`unshifted_rows` for every row (False if any sum is NaN); for a handful of values
    in Python, where a NumPy reduction would cost more than the whole check."""
    hi = _SUM_MAX[total.dtype]
    if total.size <= 64:
        vals = total.ravel().tolist()
        s = sum(vals)  # NaN if any is NaN (min and max would skip it)
        return s == s and min(vals) >= SUM_MIN and max(vals) <= hi
    return bool(np.minimum.reduce(total, axis=None) >= SUM_MIN) and bool(
        np.maximum.reduce(total, axis=None) <= hi
    )
