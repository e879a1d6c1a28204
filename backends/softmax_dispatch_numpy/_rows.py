"""The row algorithm: softmax, log_softmax and their backward passes over the rows of a
C-contiguous ``(R, N)`` array, one cache-sized block of rows at a time.

A block goes through every step of the op while it is in L2, so memory sees one read of
each input and one write of the result. Every row is computed from its own values only,
by the same sequence of operations whatever the number of rows, the block it falls in or
the thread that takes it: ``op(x)[i]`` is bit-for-bit ``op(x[i:i+1])[0]`` (batch
invariance). Small inputs are one block on the calling thread; large ones are shared among
threads (`_threads`).
"""

from __future__ import annotations

import numpy as np

from ._half import store
from ._limits import compute_dtype, lowest, unshifted, unshifted_rows
from ._threads import quiet, run_blocks, unquiet

__all__ = ["BLOCK_BYTES", "FORWARD_BLOCK_BYTES", "SEGMENT", "backward", "forward", "row_sum"]

#: Bytes of one block of rows (per operand): a block goes through every step of the op
#: while it is in L2. ``python benchmarks/profile_numpy.py`` ("block sizes") times
#: 4096x4096 float32 with 256 KiB, 512 KiB and 1 MiB blocks against a same-run np.copy.
#: On a 2-core Xeon (2 MiB L2 per core): 512 KiB was the fastest or within noise of it
#: for softmax, log_softmax and the backward; 1 MiB spills L2 once x, y and a scratch
#: block are all in it, smaller blocks pay NumPy's per-call overhead more often.
BLOCK_BYTES = 1 << 19
FORWARD_BLOCK_BYTES = BLOCK_BYTES

try:  # the C function behind np.einsum: half the call overhead, the same sums
    from numpy._core.multiarray import c_einsum as _einsum
except ImportError:  # another NumPy layout
    _einsum = np.einsum

#: Rows are summed in segments of this many elements (see `row_sum`).
SEGMENT = 1 << 12


def row_sum(a: np.ndarray) -> np.ndarray:
    """The row sums of a (k, n) block whose rows are contiguous, as (k, 1): the same
    operations for a row whatever ``k`` is and wherever the row lies in memory.

    ``einsum`` sums a contiguous row with SIMD accumulators, 3x as fast as NumPy's
    pairwise ``add.reduce`` (``python benchmarks/profile_numpy.py``, "row sum"); its
    error grows with the length it accumulates, so rows longer than two segments are
    summed segment by segment (an error bound of about SEGMENT / 64 + log2(n / SEGMENT)
    roundings, PyTorch's vectorized sum has the same kind) and the segment sums pairwise.
    """
    k, n = a.shape
    if n < 2 * SEGMENT:
        return _einsum("ij->i", a)[:, None]
    f = n // SEGMENT
    parts = _einsum("ifw->if", a[:, : f * SEGMENT].reshape(k, f, SEGMENT))
    total = np.add.reduce(parts, axis=1, keepdims=True)
    if f * SEGMENT < n:
        total += _einsum("ij->i", a[:, f * SEGMENT :])[:, None]
    return total


def _rows_per_block(n: int, itemsize: int, block_bytes: int) -> int:
    return max(1, block_bytes // max(1, n * itemsize))


# --------------------------------------------------------------------------- forward
def _forward_block(xb, yb, mb, log: bool, s1, s2) -> None:
    """softmax/log_softmax of the rows ``xb`` into ``yb`` (possibly ``xb``'s memory).
    ``s1`` holds the staged input (masked or float16), ``s2`` exp where it cannot go
    straight into ``yb``: each at least ``xb``'s shape in the compute dtype, or None
    where `forward` found it is not needed."""
    k = len(xb)
    ct = compute_dtype(yb.dtype)
    half = yb.dtype != ct
    if half or mb is not None:  # stage: float32 for float16, -inf at masked entries
        src = s1[:k]
        if mb is not None:
            src.fill(-np.inf)
            np.copyto(src, xb, where=mb, casting="unsafe")
        else:
            np.copyto(src, xb, casting="unsafe")
        work = src if half else yb
    else:
        src, work = xb, yb
    valid = None if mb is None else np.logical_or.reduce(mb, axis=1, keepdims=True)
    if log:
        m = np.maximum.reduce(src, axis=1, keepdims=True, initial=lowest(ct))
        np.subtract(src, m, out=work)
        e = np.exp(work, out=s2[:k])
        total = row_sum(e)
        if valid is not None:
            total[~valid] = 1.0  # nothing unmasked: -inf - log(1), not -inf - -inf
        np.subtract(work, np.log(total, out=total), out=work)
    else:
        # exp(x) first, where it does not overwrite src: rows it does not suit redo from src
        e = s2[:k] if work is src or np.may_share_memory(work, src) else work
        np.exp(src, out=e)
        total = row_sum(e)
        if unshifted(total):
            np.divide(e, total, out=work)
        else:
            _mixed_rows(src, e, work, total, valid, ct)
    if mb is not None:  # masked entries are constants, whatever the rest of the row holds
        np.copyto(work, -np.inf if log else 0.0, where=~mb)
    if half:
        store(yb, work)


def _mixed_rows(src, e, work, total, valid, ct) -> None:
    """softmax of a block where some rows' sums of exp(x) (``total``, with ``e =
    exp(src)``) are outside the unshifted range: those rows as exp(x - max) / sum, from
    ``src``; the others divided as usual. Results go to ``work`` (which may be ``src``)."""
    bad = np.flatnonzero(~unshifted_rows(total)[:, 0])
    z = src[bad]  # a copy: work may be src
    m = np.maximum.reduce(z, axis=1, keepdims=True, initial=lowest(ct))
    np.subtract(z, m, out=z)
    np.exp(z, out=z)
    t = row_sum(z)
    if valid is not None:
        t[~valid[bad]] = 1.0  # nothing unmasked: zeros
    np.divide(z, t, out=z)
    np.divide(e, total, out=work)
    work[bad] = z


def forward(x2: np.ndarray, y2: np.ndarray, m2: np.ndarray | None, log: bool) -> None:
    """softmax (or log_softmax) of each row of ``x2`` into ``y2`` (which may be ``x2``);
    ``m2`` is the boolean mask, broadcast to the same shape, or None."""
    rows, n = x2.shape
    ct = compute_dtype(y2.dtype)
    half = y2.dtype != ct
    # float16 is staged in float32 scratch: smaller blocks keep that small
    per = _rows_per_block(n, ct.itemsize * (4 if half else 1), FORWARD_BLOCK_BYTES)
    staged = m2 is not None or half
    # exp(x) needs its own memory unless it can go straight into y (see `_forward_block`)
    exp_scratch = log or half or (m2 is None and np.may_share_memory(x2, y2))
    k = min(per, rows)

    def scratch() -> tuple[np.ndarray | None, np.ndarray | None]:
        return (
            np.empty((k, n), ct) if staged else None,
            np.empty((k, n), ct) if exp_scratch else None,
        )

    if rows <= per:  # one block: no pool, no per-block bookkeeping (small inputs)
        s1, s2 = scratch()
        token = quiet()
        try:
            _forward_block(x2, y2, m2, log, s1, s2)
        finally:
            unquiet(token)
        return

    def block(b: int, bufs: tuple[np.ndarray | None, np.ndarray]) -> None:
        lo, hi = b * per, min(rows, (b + 1) * per)
        mb = None if m2 is None else m2[lo:hi]
        _forward_block(x2[lo:hi], y2[lo:hi], mb, log, *bufs)

    run_blocks(block, -(-rows // per), x2.nbytes, scratch)


# -------------------------------------------------------------------------- backward
def _backward_block(gb, yb, db, mb, log: bool, scratch) -> None:
    """dx of a block of rows: softmax ``y*(g - sum(g*y))``, log ``g - exp(y)*sum(g)``.
    ``scratch`` (3, k, n) is given when ``db`` shares memory with an input or the dtype
    is float16: the work is done there."""
    k = len(gb)
    ct = compute_dtype(yb.dtype)
    if gb.dtype != ct:  # float16: widen both operands into scratch
        g, y = scratch[0, :k], scratch[1, :k]
        np.copyto(g, gb, casting="unsafe")
        np.copyto(y, yb, casting="unsafe")
    else:
        g, y = gb, yb
    work = db if scratch is None else scratch[2, :k]
    if mb is not None:
        g = np.where(mb, g, 0.0).astype(ct, copy=False)
    if log:
        s = row_sum(g)
        np.exp(y, out=work)
        np.multiply(work, s, out=work)
        np.subtract(g, work, out=work)
    else:
        s = _row_dot(g, y)  # sum(g * y) without writing g * y anywhere
        np.subtract(g, s, out=work)
        np.multiply(work, y, out=work)
    if mb is not None:
        work[~mb] = 0.0
    if work is not db:
        store(db, work)


def _row_dot(g: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``sum(g * y)`` row by row, as (k, 1), segment by segment as in `row_sum`."""
    k, n = g.shape
    if n < 2 * SEGMENT:
        return np.vecdot(g, y)[:, None]
    f = n // SEGMENT
    head = (k, f, SEGMENT)
    parts = np.vecdot(g[:, : f * SEGMENT].reshape(head), y[:, : f * SEGMENT].reshape(head))
    total = np.add.reduce(parts, axis=1, keepdims=True)
    if f * SEGMENT < n:
        total += np.vecdot(g[:, f * SEGMENT :], y[:, f * SEGMENT :])[:, None]
    return total


def backward(g2, y2, d2, m2, log: bool, inplace: bool) -> None:
    """The VJP of softmax (or log_softmax) row by row into ``d2``; ``inplace``: ``d2``
    shares memory with ``g2`` or ``y2``."""
    rows, n = y2.shape
    ct = compute_dtype(y2.dtype)
    per = _rows_per_block(n, ct.itemsize, BLOCK_BYTES)
    staged = inplace or ct != y2.dtype
    k = min(per, rows)

    def scratch() -> np.ndarray | None:
        return np.empty((3, k, n), dtype=ct) if staged else None

    if rows <= per:
        token = quiet()
        try:
            _backward_block(g2, y2, d2, m2, log, scratch())
        finally:
            unquiet(token)
        return

    def block(b: int, buf: np.ndarray | None) -> None:
        lo, hi = b * per, min(rows, (b + 1) * per)
        mb = None if m2 is None else m2[lo:hi]
        _backward_block(g2[lo:hi], y2[lo:hi], d2[lo:hi], mb, log, buf)

    run_blocks(block, -(-rows // per), y2.nbytes * 2, scratch)
