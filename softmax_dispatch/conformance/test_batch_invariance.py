"""Batch invariance over the last axis: ``op(x)[i]`` bit-for-bit ``op(x[i:i+1])[0]`` for
every op, so that a request's result does not depend on what it was batched with.

Every backend is checked and the outcome reported (``xfail`` where it does not hold and
the backend does not promise it: PyTorch, for one, makes no such promise); a backend that
promises it (``Backend.batch_invariant``) fails the suite where it does not hold, on its
fused path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import softmax_dispatch as sd
from softmax_dispatch.conformance._data import logits, rng

#: Row lengths from 1 to 10^6, across the blocking and summation cut-offs.
LENGTHS = (1, 7, 1000, 4097, 16_387, 100_001, 1_000_000)


def _rows(n: int) -> int:
    return 2 if n >= 100_000 else 9 if n >= 4096 else 33


def _ops(target, dtype: str, n: int) -> dict[str, tuple[Callable[..., Any], tuple[Any, ...]]]:
    """op name -> (call on a batch of rows, the batch's arrays: rows along axis 0)."""
    rows = _rows(n)
    x = target.asarray(logits((rows, n), seed=90 + n % 7, scale=3.0), dtype)
    g = target.asarray(logits((rows, n), seed=91, scale=1.0), dtype)
    y = target.call(sd.softmax, x)
    ly = target.call(sd.log_softmax, x)
    t = target.indices(rng(92).integers(0, n, size=rows))
    w = target.asarray(rng(93).random(rows) + 0.5, dtype)  # per-sample upstream gradient

    def ce(x_, t_):
        return target.call(sd.softmax_cross_entropy, x_, t_, reduction="none")

    def ce_backward(x_, t_, w_):
        return target.call(sd.softmax_cross_entropy_backward, x_, t_, w_, reduction="none")

    return {
        "softmax": (lambda a: target.call(sd.softmax, a), (x,)),
        "log_softmax": (lambda a: target.call(sd.log_softmax, a), (x,)),
        "softmax_backward": (lambda a, b: target.call(sd.softmax_backward, a, b), (g, y)),
        "log_softmax_backward": (
            lambda a, b: target.call(sd.log_softmax_backward, a, b),
            (g, ly),
        ),
        "cross_entropy (reduction=none)": (ce, (x, t)),
        "cross_entropy_backward (reduction=none)": (ce_backward, (x, t, w)),
    }


#: Where the backend does not promise invariance, longer rows are not checked: the
#: outcome is a report, and these lengths dominate the suite's time on JIT backends.
REPORT_MAX = 16_387


@pytest.mark.parametrize("n", LENGTHS)
def test_each_row_is_computed_from_itself_alone(target, dtype, n):
    promised = target.info.backend.batch_invariant and target.path == "fused"
    if not promised and n > REPORT_MAX:
        pytest.skip(f"rows over {REPORT_MAX} are checked where batch invariance is promised")
    ops = _ops(target, dtype, n)
    broken = []
    for name, (fn, arrays) in ops.items():
        batch = target.to_numpy(fn(*arrays))
        rows = batch.shape[0]
        for i in sorted({0, rows // 2, rows - 1}):
            single = target.to_numpy(fn(*(a[i : i + 1, ...] for a in arrays)))[0]
            if not np.array_equal(batch[i], single, equal_nan=True):
                differ = int(np.sum(batch[i] != single))
                broken.append(f"{name}: row {i} of {rows} ({differ} of {np.size(single)} values)")
    if not broken:
        return
    message = f"not batch-invariant at row length {n}: " + "; ".join(broken)
    if promised:
        pytest.fail(f"{target.backend} promises batch invariance but is {message}")
    pytest.xfail(message)
