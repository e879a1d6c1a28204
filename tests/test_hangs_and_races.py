"""No hang and no stale dispatch: finalizers that call the library while it holds a lock,
and threads dispatching while a backend is unregistered."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import array_api_compat
import array_api_compat.numpy
import numpy as np
import pytest

import softmax_dispatch as sd
from softmax_dispatch import _ops

FINALIZER = """
import gc
import numpy as np
import softmax_dispatch as sd

sd.softmax(np.ones(10))


class H:
    def __init__(self):
        self.me = self  # a cycle: only the collector frees it, at any allocation

    def __del__(self):
        sd.softmax(np.ones((1024, 2048), np.float32))


gc.collect()
gc.disable()
H()
gc.set_threshold({threshold})
gc.enable()
sd.softmax(np.ones((1024, 2048), np.float32))
print("done")
"""


@pytest.mark.parametrize("threshold", [1, 40, 60, 80, 120])
def test_a_finalizer_calling_softmax_while_the_thread_pool_starts_does_not_hang(threshold):
    """The garbage collector may run a finalizer at any allocation, including those made
    while the kernels' thread pool is created under its lock."""
    code = textwrap.dedent(FINALIZER.format(threshold=threshold))
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, SOFTMAX_DISPATCH_NUM_THREADS="2"),
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"deadlock: the process hung (gc threshold {threshold})")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "done"
    # the last finalizer runs at interpreter exit, when the thread pool takes no new work
    assert "Exception ignored" not in proc.stderr, proc.stderr[-2000:]


def test_no_call_made_after_unregister_returns_reaches_the_removed_backend(fresh_registry):
    """Threads dispatching through a slow ``owns`` while the backend is unregistered must
    not leave it in the dispatch cache: every call the main thread starts after
    ``unregister`` returned runs elsewhere."""
    main = threading.main_thread()
    stale: list[int] = []
    trials = 30
    for trial in range(trials):
        removed = threading.Event()

        def slow_owns(x, removed=removed):
            time.sleep(0.0005)
            return array_api_compat.is_numpy_array(x)

        def kernel(xp, x, axes, where=None, out=None, removed=removed, trial=trial):
            if removed.is_set() and threading.current_thread() is main:
                stale.append(trial)
            return _ops.softmax(xp, x, axes, where, out)

        handle = sd.register(
            sd.Backend(
                name=f"slow_{trial}",
                owns=slow_owns,
                namespace=lambda: array_api_compat.numpy,
                priority=100,
                kernels={"softmax": kernel},
            )
        )
        stop = threading.Event()

        def dispatch(stop=stop):
            while not stop.is_set():
                sd.softmax(np.zeros(3))

        workers = [threading.Thread(target=dispatch) for _ in range(4)]
        for w in workers:
            w.start()
        time.sleep(0.002)
        sd.unregister(handle)
        removed.set()
        deadline = time.perf_counter() + 0.02
        while time.perf_counter() < deadline:
            np.testing.assert_allclose(sd.softmax(np.zeros(3)), 1 / 3)
        stop.set()
        for w in workers:
            w.join()
    assert not stale, f"{len(set(stale))} of {trials} trials dispatched to a removed backend"
