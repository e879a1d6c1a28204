"""Deterministic test data, generated on the host."""

from __future__ import annotations

import numpy as np

__all__ = ["logits", "rng"]


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def logits(shape: tuple[int, ...], seed: int = 0, scale: float = 4.0) -> np.ndarray:
    """Normal logits with a few large gaps, float64 on the host."""
    return rng(seed).normal(0.0, scale, size=shape)
