"""Fused NumPy kernels: cache-sized blocks, in-place ufuncs, a thread per core.

Softmax is memory-bound: the floor is one read of ``x`` and one write of ``y``. The
textbook version (and SciPy's) makes about five passes over memory and allocates two
input-sized temporaries. Here every op is brought to one of two layouts:

rows
    the softmax axes are the trailing axes of a C-contiguous array, seen as ``(R, N)``.
    A block of rows small enough to stay in L2 goes through max, subtract, exp, sum and
    scale while it is in cache; memory sees one read and one write.
columns
    one non-trailing axis of a C-contiguous array, seen as ``(P, N, Q)``: the reduction
    runs down contiguous rows of length ``Q``, streaming, with running maxima and sums
    per column (online softmax), so ``x`` is read twice and ``y`` written once.

Anything else (several non-trailing axes, non-contiguous input) is first copied to the
rows layout. float16 blocks are computed in float32 scratch and cast on the way out.
Blocks are shared among threads (NumPy releases the GIL in ufuncs); the scratch each
thread uses is one block, so the extra memory is the output plus a few blocks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._half import store
from ._outputs import empty
from ._threads import ERRSTATE, quiet, run_blocks, unquiet

__all__ = [
    "cross_entropy",
    "cross_entropy_backward",
    "log_softmax",
    "log_softmax_backward",
    "softmax",
    "softmax_backward",
]

#: Bytes of one block of work (per operand). ``python benchmarks/profile_numpy.py`` on a
#: 2-core AMD EPYC (1 MiB L2 per core), 4096x4096 float32 into out=: the backward (two
#: inputs and the output per block) takes 1.07x as long with 1 MiB blocks as with 512 KiB.
BLOCK_BYTES = 1 << 19
#: The forward's row blocks, where fewer, larger blocks win (same script: 1 MiB takes
#: 0.94-0.96x the time of 512 KiB for softmax, log_softmax and softmax 256x32000).
FORWARD_BLOCK_BYTES = 1 << 20
#: Below this many elements a single unblocked pass is cheapest (Python overhead rules).
SMALL = 1 << 14


#: The compute dtypes: float16 is computed in float32; long double in itself (its limits
#: are kept as NumPy scalars: as Python floats they would overflow to inf).
_COMPUTE = tuple(np.dtype(t) for t in (np.float32, np.float64, np.longdouble))
_LOWEST = {t: np.finfo(t).min for t in _COMPUTE}


def _lowest(dtype: np.dtype) -> float:
    """The most negative finite value of a compute dtype: as the max's starting point it
    stands in for a row of only -inf, so -inf - -inf is never computed (at no extra pass)."""
    return _LOWEST[dtype]


#: softmax takes a row as exp(x) / sum, without subtracting its max, when that sum lies in
#: [_SUM_MIN, _SUM_MAX]: nothing overflowed (every term is finite); a term exp(x) that
#: underflowed would give a result exp(x) / sum <= 2 exp(x), itself below float
#: resolution (at most 1 ulp off where it reaches the smallest normal); and the sum's
#: reciprocal is a normal number, so scaling by it loses nothing. x is not rounded by a
#: subtraction, so such a row is as accurate as the shifted form or more. Other rows —
#: NaN, +inf, all -inf, maxima far below 0 or above ~log(1/tiny) - log(n) — take
#: exp(x - max) / sum. The choice is made row by row: no row depends on another.
_SUM_MIN = 0.5
_SUM_MAX = {t: 1 / np.finfo(t).tiny for t in _COMPUTE}
_LOG_SUM_MAX = {t: float(np.log(v)) for t, v in _SUM_MAX.items()}


def _unshifted_rows(total: np.ndarray) -> np.ndarray:
    """Which rows, by their sums of exp(x), keep exp(x) without the shift (NaN: no)."""
    return (total >= _SUM_MIN) & (total <= _SUM_MAX[total.dtype])


def _shift(m: np.ndarray, dtype: np.dtype, n: int) -> np.ndarray | None:
    """What softmax subtracts from each row (or column) whose maximum is ``m``: nothing
    (``None``) when every max is in [0, log(1 / finfo.tiny) - log(n)], else per row 0
    where its max is in that range and the max where it is not.

    In the range, exp(x) without the shift cannot overflow, every row sum lies in
    [1, 1 / finfo.tiny] (so its reciprocal is a normal number), nothing underflows that
    exp(x - max) would keep, and x is not rounded by a subtraction. ``x - 0`` is exactly
    ``x``, so each row's result depends on that row alone — not on its neighbours in the
    block or the batch. NaN maxima take the shift (and come out NaN). log_softmax always
    shifts: ``x - max`` keeps every result <= 0 exactly.
    """
    hi = _LOG_SUM_MAX[dtype] - math.log(max(n, 1))
    if m.size and _all_between(m, 0.0, hi):
        return None
    with np.errstate(invalid="ignore"):
        keep = (m >= 0.0) & (m <= hi)
    return np.where(keep, 0.0, m).astype(dtype, copy=False) if keep.any() else m


#: Rows at least this long are summed in two stages (see `_row_sum`).
WIDE = 1 << 14
_FOLD = 16


def _row_sum(a: np.ndarray) -> np.ndarray:
    """The row sums of a (k, n) block whose rows are contiguous, as (k, 1).

    Wide rows are folded first: each row's 16 contiguous segments are added element by
    element (vector adds down the segments), then the segment-long partial sums pairwise.
    At n = 32000 that takes 0.78x the time of NumPy's pairwise row sum
    (``python benchmarks/profile_numpy.py``), with the same kind of error bound (16
    sequential additions, then pairwise).
    """
    k, n = a.shape
    if n < WIDE:
        return np.add.reduce(a, axis=1, keepdims=True)
    w = n // _FOLD
    folded = np.add.reduce(a[:, : w * _FOLD].reshape(k, _FOLD, w), axis=1)
    total = np.add.reduce(folded, axis=1, keepdims=True)
    if w * _FOLD < n:
        total += np.add.reduce(a[:, w * _FOLD :], axis=1, keepdims=True)
    return total


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    """float32 for float16; otherwise ``dtype`` in native byte order."""
    return np.dtype(np.float32) if dtype.itemsize < 4 else dtype.newbyteorder("=")


def _rows_per_block(n: int, itemsize: int, block_bytes: int | None = None) -> int:
    return max(1, (block_bytes or BLOCK_BYTES) // max(1, n * itemsize))


def _fresh(x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """Where a result goes: ``out``, or a new array (pooled when large, see `_outputs`)."""
    return empty(x.shape, x.dtype) if out is None else out


# --------------------------------------------------------------------------- layouts
def _trailing(axes: tuple[int, ...], ndim: int) -> bool:
    return sorted(axes) == list(range(ndim - len(axes), ndim))


def _as_rows(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray | None:
    """``a`` as an (R, N) view when ``axes`` are its trailing axes and it is C-contiguous."""
    if not a.flags.c_contiguous or not _trailing(axes, a.ndim):
        return None
    n = math.prod(a.shape[a.ndim - len(axes) :])
    return a.reshape(-1, n) if n else None


def _mask_rows(mask: np.ndarray | None, shape: tuple[int, ...], rows: tuple[int, int]):
    if mask is None:
        return None
    return np.broadcast_to(mask, shape).reshape(rows)


def _moved(a: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, list[int]]:
    """``a`` with ``axes`` moved last, as a contiguous (R, N) copy, and the permutation."""
    perm = [d for d in range(a.ndim) if d not in axes] + list(axes)
    t = np.ascontiguousarray(a.transpose(perm))
    n = math.prod(a.shape[d] for d in axes)
    return t.reshape(-1, n), perm


def _put_back(res2: np.ndarray, like: np.ndarray, perm: list[int], out: np.ndarray | None):
    shape = tuple(like.shape[d] for d in perm)
    moved = res2.reshape(shape).transpose(np.argsort(perm))
    if out is None:
        if not like.ndim:
            return moved
        out = empty(moved.shape, moved.dtype)
    np.copyto(out, moved)
    return out


def _columns(a: np.ndarray, axes: tuple[int, ...]) -> tuple[int, int, int] | None:
    """(P, N, Q) when ``axes`` is one non-trailing axis of a C-contiguous array."""
    if len(axes) != 1 or not a.flags.c_contiguous or axes[0] == a.ndim - 1:
        return None
    ax = axes[0]
    return math.prod(a.shape[:ax]), a.shape[ax], math.prod(a.shape[ax + 1 :])


# --------------------------------------------------------------- forward: rows layout
def _forward_block(
    xb: np.ndarray,
    yb: np.ndarray,
    mb: np.ndarray | None,
    log: bool,
    s1: np.ndarray,
    s2: np.ndarray,
    inplace: bool = False,
) -> None:
    """softmax/log_softmax of a block of rows ``xb`` into ``yb`` (which is ``xb``'s memory
    when ``inplace``); ``s1``, ``s2`` are block-sized scratch in the compute dtype."""
    k = len(xb)
    half = yb.dtype.itemsize < 4  # float16: stage in float32 scratch
    if half:  # float16 in and out: compute in float32 scratch
        work = src = s1[:k]
        if mb is not None:
            work.fill(-np.inf)
            np.copyto(work, xb, where=mb, casting="unsafe")
        else:
            np.copyto(work, xb, casting="unsafe")
    else:
        work, src = yb, xb
        if mb is not None:  # masked copy in scratch: yb may be xb itself
            src = s1[:k]
            src.fill(-np.inf)
            np.copyto(src, xb, where=mb)
    ct = work.dtype
    valid = None if mb is None else np.logical_or.reduce(mb, axis=1, keepdims=True)
    if log:
        m = np.maximum.reduce(src, axis=1, keepdims=True, initial=_lowest(ct))
        np.subtract(src, m, out=work)
        e = s2[:k]
        np.exp(work, out=e)
        lse = np.log(_row_sum(e))
        if valid is not None:
            lse[~valid] = 0.0
        np.subtract(work, lse, out=work)
    else:
        # exp(x) first, into memory that is not src's: rows it does not suit redo from src
        e = s2[:k] if half or (inplace and mb is None) else work
        np.exp(src, out=e)
        total = _row_sum(e)
        if _all_between(total, _SUM_MIN, _SUM_MAX[ct]):
            # a division, as every path does: a row's bits never depend on the path it
            # took, and a row of length 1 is exactly 1 (x / x), where x * (1 / x) need not be
            np.divide(e, total, out=work)
        else:
            _mixed_rows(src, e, work, total, valid)
    if half:
        store(yb, work)


def _mixed_rows(
    src: np.ndarray, e: np.ndarray, work: np.ndarray, total: np.ndarray, valid: np.ndarray | None
) -> None:
    """softmax of a block where some rows' sums of exp(x) (``total``, with ``e = exp(src)``)
    are outside [_SUM_MIN, _SUM_MAX]: those rows as exp(x - max) / sum, from ``src``; the
    others scaled as usual. Results go to ``work`` (which may be ``src``)."""
    ct = work.dtype
    bad = np.flatnonzero(~_unshifted_rows(total)[:, 0])
    z = src[bad]  # a copy: work may be src
    m = np.maximum.reduce(z, axis=1, keepdims=True, initial=_lowest(ct))
    np.subtract(z, m, out=z)
    np.exp(z, out=z)
    t = _row_sum(z)
    if valid is not None:
        t[~valid[bad]] = 1.0  # nothing unmasked: zeros
    np.divide(z, t, out=z)
    np.divide(e, total, out=work)
    work[bad] = z


def _forward_rows(x2: np.ndarray, y2: np.ndarray, m2: np.ndarray | None, log: bool) -> None:
    rows, n = x2.shape
    ct = _compute_dtype(x2.dtype)
    inplace = np.may_share_memory(x2, y2)
    # scratch for exp(x) where it cannot go straight into y (see `_forward_block`)
    exp_scratch = log or x2.dtype != ct or (inplace and m2 is None)
    if x2.dtype != ct:  # float16 is staged in float32 scratch: smaller blocks keep it small
        per = _rows_per_block(n, ct.itemsize * 4)
    elif exp_scratch and not log:  # in place: half-size blocks keep the scratch small
        per = _rows_per_block(n, ct.itemsize)
    else:
        per = _rows_per_block(n, ct.itemsize, FORWARD_BLOCK_BYTES)

    staged = m2 is not None or x2.dtype != ct

    def scratch() -> tuple[np.ndarray | None, np.ndarray | None]:
        # only where needed: masked or float16 staging (s1), exp(x) (s2)
        shape = (min(per, rows), n)
        s1 = np.empty(shape, dtype=ct) if staged else None
        s2 = np.empty(shape, dtype=ct) if exp_scratch else None
        return s1, s2

    def block(b: int, bufs: tuple[np.ndarray | None, np.ndarray | None]) -> None:
        lo, hi = b * per, min(rows, (b + 1) * per)
        mb = None if m2 is None else m2[lo:hi]
        _forward_block(x2[lo:hi], y2[lo:hi], mb, log, *bufs, inplace)

    run_blocks(block, -(-rows // per), x2.nbytes, scratch)


# ------------------------------------------------------------ forward: columns layout
def _forward_columns(x3: np.ndarray, y3: np.ndarray, m3: np.ndarray | None, log: bool) -> None:
    """Online softmax down axis 1 of (P, N, Q): running max and rescaled running sum per
    column, then one more pass writing the result."""
    p_count, n, q = x3.shape
    ct = _compute_dtype(x3.dtype)
    width = min(q, max(16, 4096 // ct.itemsize))  # columns per task: long contiguous runs
    tiles = [(p, q0, min(q, q0 + width)) for p in range(p_count) for q0 in range(0, q, width)]
    per = _rows_per_block(width, ct.itemsize)

    # No mask and no float16: read x and write y directly, without staging copies.
    direct = m3 is None and x3.dtype == ct

    def tile(p: int, q0: int, q1: int, scratch: np.ndarray) -> None:
        xs, ys = x3[p, :, q0:q1], y3[p, :, q0:q1]
        ms = None if m3 is None else m3[p, :, q0:q1]
        w = q1 - q0

        def staged(lo: int, hi: int) -> np.ndarray:
            blk = scratch[: hi - lo, :w]
            if ms is not None:
                blk.fill(-np.inf)
                np.copyto(blk, xs[lo:hi], where=ms[lo:hi], casting="unsafe")
            else:
                np.copyto(blk, xs[lo:hi], casting="unsafe")
            return blk

        # pass 1: running max and running sum of exp(x - max), rescaled as the max grows
        run_max = np.full(w, -np.inf, dtype=ct)
        run_sum = np.zeros(w, dtype=ct)
        for lo in range(0, n, per):
            hi = min(n, lo + per)
            src = xs[lo:hi] if direct else staged(lo, hi)
            new_max = np.maximum(run_max, np.maximum.reduce(src, axis=0))
            safe_new = np.where(new_max == -np.inf, 0.0, new_max).astype(ct, copy=False)
            safe_old = np.where(run_max == -np.inf, safe_new, run_max)
            run_sum *= np.exp(safe_old - safe_new)
            blk = scratch[: hi - lo, :w]
            np.subtract(src, safe_new, out=blk)
            np.exp(blk, out=blk)
            run_sum += np.add.reduce(blk, axis=0)
            run_max = new_max
        shift = np.where(run_max == -np.inf, 0.0, run_max).astype(ct, copy=False)
        valid = None if ms is None else np.logical_or.reduce(ms, axis=0)
        if valid is not None:
            run_sum[~valid] = 1.0
        scale = np.log(run_sum) if log else run_sum
        if log and valid is not None:
            scale[~valid] = 0.0
        # pass 2: the result, straight into y where possible
        for lo in range(0, n, per):
            hi = min(n, lo + per)
            if direct:
                blk = ys[lo:hi]
                np.subtract(xs[lo:hi], shift, out=blk)
            else:
                blk = staged(lo, hi)
                np.subtract(blk, shift, out=blk)
            if log:
                np.subtract(blk, scale, out=blk)
            else:
                np.exp(blk, out=blk)
                np.divide(blk, scale, out=blk)
            if not direct:
                store(ys[lo:hi], blk)

    run_blocks(
        lambda i, scratch: tile(*tiles[i], scratch),
        len(tiles),
        x3.nbytes,
        lambda: np.empty((min(per, n), width), dtype=ct),
    )


def _forward_columns_fast(x3: np.ndarray, y3: np.ndarray, log: bool) -> None:
    """No mask, no float16, (P, N, Q) reduced over N. Three passes over contiguous chunks
    of full rows, each split across threads by rows: column maxima; exp (straight into
    ``y`` for softmax) and column sums; scaling (softmax) or ``x - logsumexp`` (log).
    Every op runs on contiguous memory with the reduction vectorized across Q, which
    beats tiling columns (short strided runs) by ~3x on a 4096x4096 float32."""
    with np.errstate(**ERRSTATE):  # the steps between the threaded passes, too
        _columns_passes(x3, y3, log)


def _columns_passes(x3: np.ndarray, y3: np.ndarray, log: bool) -> None:
    p_count, n, q = x3.shape
    dt = x3.dtype
    per = max(1, BLOCK_BYTES // max(1, p_count * q * dt.itemsize))
    chunks = [(lo, min(n, lo + per)) for lo in range(0, n, per)]

    def each(fn, state=lambda: None):
        return run_blocks(lambda i, st: fn(*chunks[i], st), len(chunks), x3.nbytes, state)

    def col_max(lo, hi, _):
        return np.maximum.reduce(x3[:, lo:hi], axis=1, initial=_lowest(dt))

    m = np.maximum.reduce(np.stack(each(col_max)), axis=0)[:, None, :]
    shift = m if log else _shift(m, dt, n)  # per column, as `_shift` says for rows

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


def _small_forward(x: np.ndarray, axes, where, out, log: bool) -> np.ndarray:
    """Unblocked, for small inputs: the fewest NumPy calls."""
    ct = _compute_dtype(x.dtype)
    with np.errstate(**ERRSTATE):
        src = x if x.dtype == ct else x.astype(ct)
        if where is not None:
            src = np.where(where, src, -np.inf).astype(ct, copy=False)
        if axes:
            m = np.maximum.reduce(src, axis=axes, keepdims=True, initial=_lowest(ct))
        else:
            m = np.where(src == -np.inf, 0.0, src)
        z = np.subtract(src, m, out=np.empty(src.shape, dtype=ct))  # 0-d stays an array
        valid = None
        if where is not None and axes:
            valid = np.logical_or.reduce(np.broadcast_to(where, x.shape), axis=axes, keepdims=True)
        if log:
            s = np.add.reduce(np.exp(z), axis=axes, keepdims=True) if axes else np.exp(z)
            lse = np.log(s)
            if valid is not None:
                lse[~valid] = 0.0
            elif where is not None:
                lse = np.where(where, lse, 0.0)
            y = np.subtract(z, lse, out=z)
        else:
            e = np.exp(z, out=z)
            s = np.add.reduce(e, axis=axes, keepdims=True) if axes else e.copy()
            if valid is not None:
                s[~valid] = 1.0
            elif where is not None:
                s = np.where(where, s, 1.0)
            y = np.divide(e, s, out=e)
    return _deliver(y, x.dtype, out)


def _tiny_forward(x: np.ndarray, axis: int, log: bool, out: np.ndarray | None) -> np.ndarray:
    """The common small case (one axis, float32/64, no mask), where call overhead is most
    of the cost. softmax tries exp(x) first, without the max, and keeps it for the rows
    whose sums are in [_SUM_MIN, _SUM_MAX] (see there); other rows, and every row of
    log_softmax (x - max keeps every result <= 0 exactly), take the shifted form."""
    token = quiet()
    try:
        if not log:
            e = np.exp(x)
            total = np.add.reduce(e, axis=axis, keepdims=True)
            if _all_between(total, _SUM_MIN, _SUM_MAX[x.dtype]):
                return _deliver(np.divide(e, total, out=e), x.dtype, out)
        m = np.maximum.reduce(x, axis=axis, keepdims=True, initial=_LOWEST[x.dtype])
        z = np.subtract(x, m)
        if log:
            lse = np.log(np.add.reduce(np.exp(z), axis=axis, keepdims=True))
            return _deliver(np.subtract(z, lse, out=z), x.dtype, out)
        np.exp(z, out=z)
        y = np.divide(z, np.add.reduce(z, axis=axis, keepdims=True), out=z)
        keep = _unshifted_rows(total)
        if keep.any():
            y = np.where(keep, np.divide(e, total, out=e), y)
        return _deliver(y, x.dtype, out)
    finally:
        unquiet(token)


def _all_between(v: np.ndarray, lo: float, hi: float) -> bool:
    """``lo <= v <= hi`` everywhere (False for NaN); in Python for a handful of values,
    where a NumPy reduction would cost more than the whole check."""
    if v.size <= 64:
        vals = v.ravel().tolist()
        total = sum(vals)  # NaN if any is NaN (min and max would skip it)
        return total == total and lo <= min(vals) and max(vals) <= hi
    return bool(np.minimum.reduce(v, axis=None) >= lo) and bool(
        np.maximum.reduce(v, axis=None) <= hi
    )


def _deliver(result: np.ndarray, dtype: np.dtype, out: np.ndarray | None) -> np.ndarray:
    """``result`` (computed in float32 for float16, in native byte order) as ``dtype``, or
    written into ``out``."""
    if out is None:
        if result.dtype == dtype:
            return result
        out = np.empty(result.shape, dtype=dtype)
    store(out, result)
    return out


def _partial_overlap(
    out: np.ndarray | None, inputs: tuple[np.ndarray, ...], mask: np.ndarray | None
) -> bool:
    """``out`` shares memory with an input without being laid out exactly on it, or with
    the mask at all (its bytes are not the result's): blocks written early would then be
    read later, so the result must go through a fresh array."""
    if out is None:
        return False
    if mask is not None and np.may_share_memory(mask, out):
        return True
    for a in inputs:
        same = (
            a.__array_interface__["data"][0] == out.__array_interface__["data"][0]
            and a.strides == out.strides
            and a.shape == out.shape
        )
        if not same and np.may_share_memory(a, out):
            return True
    return False


def _forward(x: np.ndarray, axes, where, out, log: bool) -> np.ndarray:
    # the other byte order (a big-endian float32): computed natively, handed back as is
    if not x.dtype.isnative or (out is not None and not out.dtype.isnative):
        return _deliver(_forward(_native(x), axes, where, None, log), x.dtype, out)
    if _partial_overlap(out, (x,), where):
        np.copyto(out, _forward(x, axes, where, None, log))
        return out
    if x.size <= SMALL and where is None and len(axes) == 1 and x.dtype in _LOWEST:
        return _tiny_forward(x, axes[0], log, out)
    if x.size <= SMALL or not axes:
        return _small_forward(x, axes, where, out, log)
    x2 = _as_rows(x, axes)
    if x2 is not None:
        y = _fresh(x, out)
        y2 = y.reshape(x2.shape) if y.flags.c_contiguous else None
        if y2 is not None:
            _forward_rows(x2, y2, _mask_rows(where, x.shape, x2.shape), log)
            return y
    cols = _columns(x, axes)
    if cols is not None:
        y = _fresh(x, out)
        if y.flags.c_contiguous:
            if where is None and x.dtype.itemsize >= 4:
                _forward_columns_fast(x.reshape(cols), y.reshape(cols), log)
                return y
            m3 = None if where is None else np.broadcast_to(where, x.shape).reshape(cols)
            _forward_columns(x.reshape(cols), y.reshape(cols), m3, log)
            return y
    # Any other layout: copy to rows, compute, put back.
    x2, perm = _moved(x, axes)
    m2 = None if where is None else _moved(np.broadcast_to(where, x.shape), axes)[0]
    y2 = np.empty_like(x2)
    _forward_rows(x2, y2, m2, log)
    return _put_back(y2, x, perm, out)


def _foreign(*arrays: np.ndarray | None) -> bool:
    """Any of ``arrays`` in the other byte order (a big-endian float32, say)."""
    return any(a is not None and not a.dtype.isnative for a in arrays)


def _native(a: np.ndarray) -> np.ndarray:
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def softmax(xp: Any, x: np.ndarray, axes, where=None, out=None) -> np.ndarray:
    """Fused softmax (see the module docstring for the layouts)."""
    return _forward(x, axes, where, out, log=False)


def log_softmax(xp: Any, x: np.ndarray, axes, where=None, out=None) -> np.ndarray:
    """Fused log_softmax."""
    return _forward(x, axes, where, out, log=True)


# ----------------------------------------------------------------------- backward
def _backward_block(gb, yb, db, mb, log: bool, scratch: np.ndarray, inplace: bool) -> None:
    """dx of a block of rows: softmax ``y*(g - sum(g*y))``, log ``g - exp(y)*sum(g)``.
    ``inplace``: ``db`` shares memory with ``gb`` or ``yb``, so work in scratch."""
    k = len(gb)
    ct = _compute_dtype(yb.dtype)
    if gb.dtype != ct:  # float16: widen both operands into scratch
        g, y = scratch[0, :k], scratch[1, :k]
        np.copyto(g, gb, casting="unsafe")
        np.copyto(y, yb, casting="unsafe")
        work = scratch[2, :k]
    else:
        g, y = gb, yb
        work = scratch[2, :k] if inplace else db
    if mb is not None:
        g = np.where(mb, g, 0.0).astype(ct, copy=False)
    if log:
        s = _row_sum(g)
        np.exp(y, out=work)
        np.multiply(work, s, out=work)
        np.subtract(g, work, out=work)
    else:
        np.multiply(g, y, out=work)
        s = _row_sum(work)
        np.subtract(g, s, out=work)
        np.multiply(work, y, out=work)
    if mb is not None:
        work[~mb] = 0.0
    if work is not db:
        store(db, work)


def _backward_rows(g2, y2, d2, m2, log: bool, inplace: bool = False) -> None:
    rows, n = y2.shape
    ct = _compute_dtype(y2.dtype)
    per = _rows_per_block(n, ct.itemsize)

    def block(b: int, scratch: np.ndarray) -> None:
        lo, hi = b * per, min(rows, (b + 1) * per)
        mb = None if m2 is None else m2[lo:hi]
        _backward_block(g2[lo:hi], y2[lo:hi], d2[lo:hi], mb, log, scratch, inplace)

    # scratch only for float16 staging or when writing over an input
    staged = inplace or ct != y2.dtype
    run_blocks(
        block,
        -(-rows // per),
        y2.nbytes * 2,
        lambda: np.empty((3, min(per, rows), n), dtype=ct) if staged else None,
    )


def _small_backward(grad, y, axes, where, out, log: bool) -> np.ndarray:
    ct = _compute_dtype(y.dtype)
    with np.errstate(**ERRSTATE):
        g = grad if grad.dtype == ct else grad.astype(ct)
        yc = y if y.dtype == ct else y.astype(ct)
        if where is not None:
            g = np.where(where, g, 0.0).astype(ct, copy=False)
        if not axes:
            dx = np.zeros_like(yc)
        elif log:
            dx = g - np.exp(yc) * np.add.reduce(g, axis=axes, keepdims=True)
        else:
            dx = g * yc
            s = np.add.reduce(dx, axis=axes, keepdims=True)
            np.subtract(g, s, out=dx)
            np.multiply(dx, yc, out=dx)
        if where is not None:
            dx = np.where(where, dx, 0.0).astype(ct, copy=False)
    return _deliver(dx, y.dtype, out)


def _backward(grad, y, axes, where, out, log: bool) -> np.ndarray:
    if _foreign(grad, y, out):  # as in `_forward`
        d = _backward(_native(grad), _native(y), axes, where, None, log)
        return _deliver(d, y.dtype, out)
    if _partial_overlap(out, (grad, y), where):
        np.copyto(out, _backward(grad, y, axes, where, None, log))
        return out
    if y.size <= SMALL or not axes:
        return _small_backward(grad, y, axes, where, out, log)
    y2, g2 = _as_rows(y, axes), _as_rows(grad, axes)
    if y2 is not None and g2 is not None:
        d = _fresh(y, out)
        d2 = d.reshape(y2.shape) if d.flags.c_contiguous else None
        if d2 is not None:
            inplace = out is not None and (
                np.may_share_memory(out, grad) or np.may_share_memory(out, y)
            )
            _backward_rows(g2, y2, d2, _mask_rows(where, y.shape, y2.shape), log, inplace)
            return d
    y2, perm = _moved(y, axes)
    g2 = _moved(grad, axes)[0]
    m2 = None if where is None else _moved(np.broadcast_to(where, y.shape), axes)[0]
    d2 = np.empty_like(y2)
    _backward_rows(g2, y2, d2, m2, log)
    return _put_back(d2, y, perm, out)


def softmax_backward(xp: Any, grad, y, axes, where=None, out=None) -> np.ndarray:
    """Fused softmax VJP."""
    return _backward(grad, y, axes, where, out, log=False)


def log_softmax_backward(xp: Any, grad, y, axes, where=None, out=None) -> np.ndarray:
    """Fused log_softmax VJP."""
    return _backward(grad, y, axes, where, out, log=True)


# ------------------------------------------------------------------ cross-entropy
def _ce_rows(logits: np.ndarray, target: np.ndarray, axis: int, index_target: bool):
    """Logits as (R, C) rows (class axis last) and the target as (R,) or (R, C)."""
    x = np.moveaxis(logits, axis, -1)
    x2 = np.ascontiguousarray(x).reshape(-1, logits.shape[axis])
    if index_target:  # intp: comparisons with class counts cannot overflow a uint8
        return x2, target.reshape(-1).astype(np.intp, copy=False)
    return x2, np.ascontiguousarray(np.moveaxis(target, axis, -1)).reshape(x2.shape)


def _ce_block(x, t, w, opts, log_scratch, want_grad: bool):
    """Per-sample loss (R,) and, if asked, the unscaled gradient rows for a block."""
    ct = log_scratch.dtype
    eps = opts["label_smoothing"]
    n_classes = x.shape[1]
    z = log_scratch[: len(x)]
    np.copyto(z, x, casting="unsafe")
    m = np.maximum.reduce(z, axis=1, keepdims=True, initial=_lowest(ct))
    np.subtract(z, m, out=z)
    e = np.exp(z)
    s = _row_sum(e)
    np.subtract(z, np.log(s), out=z)  # z = log p
    rows = np.arange(len(x))
    if opts["index_target"]:
        ignore = opts["ignore_index"]
        keep = np.ones(len(x), dtype=bool) if ignore is None else t != ignore
        bad = ((t < 0) | (t >= n_classes)) & keep
        tt = np.where(keep & ~bad, t, 0)
        a = np.zeros_like(z)
        a[rows, tt] = (1.0 - eps) * (1.0 if w is None else w[tt])
        if eps:
            a += eps / n_classes * (1.0 if w is None else w)
        a[~keep | bad] = 0.0
        counted = np.where(keep & ~bad, 1.0 if w is None else w[tt], 0.0)
        wsum = np.add.reduce(counted, dtype=np.promote_types(ct, np.float64))
    else:
        keep = np.ones(len(x), dtype=bool)
        bad = np.zeros(len(x), dtype=bool)
        a = t.astype(ct, copy=True)
        if eps:
            a *= 1.0 - eps
            a += eps / n_classes
        if w is not None:
            a *= w
        wsum = float(len(x))
    terms = np.where(a != 0, a * z, 0.0)
    per = -np.add.reduce(terms, axis=1)
    per[~keep] = 0.0
    per[bad] = np.nan
    grad = None
    if want_grad:
        np.divide(e, s, out=e)  # p
        grad = e * np.add.reduce(a, axis=1, keepdims=True) - a
        grad[~keep] = 0.0
        grad[bad] = np.nan
    return per, grad, wsum


def _ce(logits, target, axis, opts, grad=None, want_grad=False):
    x2, t2 = _ce_rows(logits, target, axis, opts["index_target"])
    ct = _compute_dtype(logits.dtype)
    w = None if opts["weight"] is None else opts["weight"].astype(ct, copy=False)
    rows, n = x2.shape
    per_rows = _rows_per_block(n, ct.itemsize)
    losses = np.empty(rows, dtype=ct)
    # the gradient in the compute dtype: float16 is scaled in float32, rounded once at the end
    dx2 = np.empty(x2.shape, dtype=ct) if want_grad else None

    def block(b: int, scratch: np.ndarray) -> float:
        lo, hi = b * per_rows, min(rows, (b + 1) * per_rows)
        per, g, wsum = _ce_block(x2[lo:hi], t2[lo:hi], w, opts, scratch, want_grad)
        losses[lo:hi] = per
        if want_grad:
            dx2[lo:hi] = g
        return wsum

    wsums = run_blocks(
        block,
        -(-rows // per_rows) if rows else 0,
        x2.nbytes,
        lambda: np.empty((min(per_rows, rows), n), dtype=ct),
    )
    # block by block, in block order: the same bits whatever the thread count (long
    # double sums stay long double)
    acc = np.promote_types(ct, np.float64)
    return losses, dx2, np.add.reduce(np.asarray(wsums, dtype=acc)), x2.shape


def cross_entropy(xp: Any, logits, target, axis, **opts) -> np.ndarray:
    """Fused softmax cross-entropy (class axis moved last, blocks of rows)."""
    losses, _, wsum, _ = _ce(logits, target, axis, opts)
    sample_shape = logits.shape[:axis] + logits.shape[axis + 1 :]
    red = opts["reduction"]
    with np.errstate(**ERRSTATE):
        if red == "none":
            return losses.reshape(sample_shape).astype(logits.dtype, copy=False)
        total = losses.sum(dtype=np.promote_types(losses.dtype, np.float64))
        if red == "mean":
            total = total / wsum if wsum else total * 0.0
    return np.asarray(total, dtype=logits.dtype)


def cross_entropy_backward(xp: Any, logits, target, grad, axis, **opts) -> np.ndarray:
    """Fused gradient of the cross-entropy with respect to the logits, times ``grad``."""
    _, dx2, wsum, _ = _ce(logits, target, axis, opts, want_grad=True)
    red = opts["reduction"]
    with np.errstate(**ERRSTATE):
        g = np.asarray(grad, dtype=dx2.dtype)
        np.multiply(dx2, g.reshape(-1, 1) if red == "none" and g.ndim else g, out=dx2)
        if red == "mean":
            np.divide(dx2, wsum, out=dx2) if wsum else np.multiply(dx2, 0.0, out=dx2)
        if opts["index_target"] and opts["ignore_index"] is not None:
            # exact zeros for ignored samples, even where grad was inf or NaN
            dx2[target.reshape(-1).astype(np.intp) == opts["ignore_index"]] = 0.0
    moved = logits.shape[:axis] + logits.shape[axis + 1 :] + (logits.shape[axis],)
    dx = np.moveaxis(dx2.reshape(moved), -1, axis)
    result = empty(logits.shape, logits.dtype)
    store(result, dx)
    return result
