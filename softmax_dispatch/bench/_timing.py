"""Timing implementations against each other in one run, interleaved, as medians.

Every case times each implementation once per round, round after round, so that whatever
else the machine is doing falls on all of them alike. Before each sample the main thread
busy-waits a moment, so that the previous library's worker threads (PyTorch's OpenMP,
XLA's pool, ours) have stopped spin-waiting; sleeping instead would let the virtual CPUs
halt, and waking them costs milliseconds that land on whoever runs next. Then one untimed
call wakes the implementation's own threads, as they are awake in a loop of calls, and
the sample repeats the call until it lasts about `SAMPLE_S`: each implementation is
timed in the steady state its users' loops run in, not on a cold start that a sample
of a few calls would be dominated by (the first call after the pause waits for the
library's threads to wake: on this project's VM, PyTorch's 64x1000 softmax took 0.37 ms
per call measured that way and 0.05 ms in a loop).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Clock", "interleaved", "medians", "paired_ratio"]

#: Pause before each timed sample (see the module docstring).
SETTLE_S = 0.02


class Clock:
    """How one call is timed on a backend: its kit's device timer, or the host clock
    around the calls followed by waiting for the result (``finish``, ``synchronize``)."""

    def __init__(
        self,
        finish: Callable[[Any], Any] | None,
        synchronize: Callable[[], None] | None,
        timer: Callable[[Callable[[], Any], int], float] | None,
    ) -> None:
        self._finish = finish
        self._sync = synchronize
        self._timer = timer

    def done(self, result: Any) -> None:
        """Wait until ``result`` exists."""
        if self._finish is not None:
            self._finish(result)
        if self._sync is not None:
            self._sync()

    def ms(self, fn: Callable[[], Any], inner: int) -> float:
        """Milliseconds per call of ``fn``, from ``inner`` calls."""
        if self._timer is not None:
            return self._timer(fn, inner)
        t0 = time.perf_counter()
        for _ in range(inner):
            self.done(fn())
        return (time.perf_counter() - t0) / inner * 1e3


def _settle(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


#: A timed sample repeats a call (up to the case's ``inner``) until it lasts about this
#: long, so that the clock's resolution and per-sample costs do not show.
SAMPLE_S = 0.002


def interleaved(
    impls: Mapping[str, Callable[[], Any]], clock: Clock, rounds: int, inner: int
) -> dict[str, list[float]]:
    """Milliseconds per call of each implementation, one sample per round, after two
    warm-up calls each (the second sizes its samples: up to ``inner`` calls, about
    `SAMPLE_S` in all)."""
    calls: dict[str, int] = {}
    for name, fn in impls.items():
        clock.done(fn())  # compilation, thread pools, first touch
        t0 = time.perf_counter()
        clock.done(fn())
        took = time.perf_counter() - t0
        calls[name] = max(1, min(inner, int(SAMPLE_S / max(took, 1e-9))))
    samples: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(rounds):
        for name, fn in impls.items():
            _settle(SETTLE_S)
            clock.done(fn())  # its threads awake, as in a loop of calls
            samples[name].append(clock.ms(fn, calls[name]))
    return samples


def medians(samples: Mapping[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(v) for name, v in samples.items()}


def paired_ratio(samples: Mapping[str, list[float]], num: str, den: str) -> float:
    """The median over rounds of ``num``'s time over ``den``'s in the same round: what
    drifts between rounds (another process, the clock) cancels out."""
    return statistics.median(a / b for a, b in zip(samples[num], samples[den]))
