"""The conformance suite's pytest configuration."""

from __future__ import annotations

import os

# JAX: two virtual CPU devices, unless the caller configured XLA already.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

from softmax_dispatch.conformance.fixtures import (  # noqa: F401  (re-exported hooks)
    pytest_generate_tests,
    pytest_report_header,
    xp,
)
