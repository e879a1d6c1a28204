"""The column algorithm: softmax or log_softmax down axis 1 of a C-contiguous
``(P, N, Q)`` array (one non-trailing softmax axis), float32/float64, no mask.

Passes over contiguous chunks of whole rows, each chunk shared among threads: every
operation runs on contiguous memory with the reduction vectorized across the Q columns.
Partial sums are added in chunk order, so the result does not depend on the thread count;
the chunk height does depend on P * Q, so a column's last bit may differ between a batch
of columns and a single one (only the row algorithm is batch-invariant).
"""

from __future__ import annotations

import math

import numpy as np

from ._limits import lowest
from ._rows import BLOCK_BYTES
from ._threads import ERRSTATE, run_blocks

__all__ = ["forward", "handles"]

_LOG_SUM_MAX = {np.dtype(t): float(np.log(1 / np.finfo(t).tiny)) for t in (np.float32, np.float64)}


def handles(dtype: np.dtype) -> bool:
    """float32 and float64 (others take the rows layout through a moved copy)."""
    return dtype in _LOG_SUM_MAX


def _shift(m: np.ndarray, dtype: np.dtype, n: int) -> np.ndarray | None:
    """What softmax subtracts from each column whose maximum is ``m``: nothing (``None``)
    when every max is in [0, log(1 / finfo.tiny) - log(n)], else per column 0 where its
    max is in that range and the max where it is not. In the range exp(x) cannot
    overflow, every column sum lies in [1, 1 / finfo.tiny], nothing underflows that
    exp(x - max) would keep, and x is not rounded by a subtraction. NaN maxima take the
    shift (and come out NaN)."""
    hi = _LOG_SUM_MAX[dtype] - math.log(max(n, 1))
    with np.errstate(invalid="ignore"):
        keep = (m >= 0.0) & (m <= hi)
    if keep.all():
        return None
    return np.where(keep, 0.0, m).astype(dtype, copy=False) if keep.any() else m


def forward(x3: np.ndarray, y3: np.ndarray, log: bool) -> None:
    """Column maxima; exp (straight into ``y`` for softmax) and column sums; scaling
    (softmax) or ``(x - max) - log(sum)`` (log_softmax)."""
    with np.errstate(**ERRSTATE):  # the steps between the threaded passes, too
        _passes(x3, y3, log)


def _passes(x3: np.ndarray, y3: np.ndarray, log: bool) -> None:
    p_count, n, q = x3.shape
    dt = x3.dtype
    per = max(1, BLOCK_BYTES // max(1, p_count * q * dt.itemsize))
    chunks = [(lo, min(n, lo + per)) for lo in range(0, n, per)]

    def each(fn, state=lambda: None):
        return run_blocks(lambda i, st: fn(*chunks[i], st), len(chunks), x3.nbytes, state)

    def col_max(lo, hi, _):
        return np.maximum.reduce(x3[:, lo:hi], axis=1, initial=lowest(dt))

    m = np.maximum.reduce(np.stack(each(col_max)), axis=0)[:, None, :]
    shift = m if log else _shift(m, dt, n)

    def col_sum(lo, hi, scratch):
        blk = scratch[:, : hi - lo] if log else y3[:, lo:hi]
        if shift is None:
            np.exp(x3[:, lo:hi], out=blk)
        else:
            np.subtract(x3[:, lo:hi], shift, out=blk)
            np.exp(blk, out=blk)
        return np.add.reduce(blk, axis=1)

    # one partial sum per chunk, added up in chunk order: the same bits whatever the
    # thread count and whichever thread took which chunk
    parts = each(col_sum, lambda: np.empty((p_count, per, q), dtype=dt) if log else None)
    total = np.add.reduce(np.stack(parts), axis=0)[:, None, :]
    if log:
        log_total = np.log(total)

        def finish(lo, hi, _):
            # (x - max) - log(total), never x - (max + log(total)): far from 0 the latter
            # rounds log(total) to the max's spacing (0.06 at 1e6 in float32)
            blk = y3[:, lo:hi]
            np.subtract(x3[:, lo:hi], m, out=blk)
            np.subtract(blk, log_total, out=blk)
    else:

        def finish(lo, hi, _):
            np.divide(y3[:, lo:hi], total, out=y3[:, lo:hi])

    each(finish)
