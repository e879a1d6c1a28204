"""The conformance suite's pytest configuration."""

from __future__ import annotations

from softmax_dispatch.conformance.fixtures import (  # noqa: F401  (re-exported hooks)
    pytest_generate_tests,
    pytest_report_header,
    xp,
)
