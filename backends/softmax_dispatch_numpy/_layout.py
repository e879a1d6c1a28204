"""Bringing any softmax axes to the layouts the kernels run on: rows (the softmax axes are
the trailing axes of a C-contiguous array, seen as ``(R, N)``), columns (one non-trailing
axis, seen as ``(P, N, Q)``), or a contiguous copy with the axes moved last."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["as_columns", "as_rows", "moved", "put_back"]


def _trailing(axes: tuple[int, ...], ndim: int) -> bool:
    return sorted(axes) == list(range(ndim - len(axes), ndim))


def as_rows(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray | None:
    """``a`` as an (R, N) view when ``axes`` are its trailing axes (``()``: N = 1) and it
    is C-contiguous; None otherwise."""
    if not a.flags.c_contiguous or not _trailing(axes, a.ndim):
        return None
    n = math.prod(a.shape[a.ndim - len(axes) :])
    return a.reshape(-1, n)


def as_columns(a: np.ndarray, axes: tuple[int, ...]) -> tuple[int, int, int] | None:
    """(P, N, Q) when ``axes`` is one non-trailing axis of a C-contiguous array."""
    if len(axes) != 1 or not a.flags.c_contiguous or axes[0] == a.ndim - 1:
        return None
    ax = axes[0]
    return math.prod(a.shape[:ax]), a.shape[ax], math.prod(a.shape[ax + 1 :])


def moved(a: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, list[int]]:
    """``a`` with ``axes`` moved last, as a contiguous (R, N) copy, and the permutation."""
    perm = [d for d in range(a.ndim) if d not in axes] + list(axes)
    t = np.ascontiguousarray(a.transpose(perm))
    return t.reshape(-1, math.prod(a.shape[d] for d in axes)), perm


def put_back(
    res2: np.ndarray, like: np.ndarray, perm: list[int], out: np.ndarray | None
) -> np.ndarray:
    """The (R, N) result of a `moved` input, in ``like``'s layout (into ``out`` if given)."""
    shape = tuple(like.shape[d] for d in perm)
    back = res2.reshape(shape).transpose(np.argsort(perm))
    if out is None:
        out = np.empty(back.shape, back.dtype)
    np.copyto(out, back)
    return out
