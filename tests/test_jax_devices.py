"""JAX on two devices, in a process of its own: JAX reads ``XLA_FLAGS`` once, when it
initialises, and the rest of the session keeps its one default CPU device (the
conformance suite, for one, checks the devices JAX lists, as `softmax-dispatch backends`
shows them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def test_results_stay_on_the_second_of_two_jax_devices():
    pytest.importorskip("jax")
    module = Path(__file__).parent / "jax_devices" / "two_devices.py"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(module)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "4 passed" in proc.stdout, proc.stdout[-2000:]
