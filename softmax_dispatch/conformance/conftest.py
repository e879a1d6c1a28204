"""The conformance suite's pytest configuration."""

from __future__ import annotations

import os

# JAX: two virtual CPU devices, unless the caller configured XLA already.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

from hypothesis import HealthCheck, settings

from softmax_dispatch.conformance.fixtures import (  # noqa: F401  (re-exported hooks)
    hypothesis_profile,
    pytest_generate_tests,
    pytest_report_header,
    xp,
)

_common = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.register_profile("ci", max_examples=15, derandomize=True, **_common)
settings.register_profile("full", max_examples=300, **_common)
settings.load_profile(hypothesis_profile())
