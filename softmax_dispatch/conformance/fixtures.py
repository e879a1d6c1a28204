"""The suite's fixtures and parametrization, importable by a backend's own test suite.

In a backend repository's ``conftest.py``::

    pytest_plugins = ["softmax_dispatch.conformance.fixtures"]

then any test taking ``target`` (and optionally ``dtype``) runs once per selected
(backend, device, kernel path) — and per floating dtype that device supports — with the
same ``--backend`` / ``--device`` options as the suite.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from .targets import Target, Unrunnable, select_targets

__all__ = ["pytest_generate_tests", "pytest_report_header", "targets_for", "xp"]

_CACHE = "_softmax_dispatch_targets"


def targets_for(config: pytest.Config) -> list[Target]:
    """The targets the options select, computed once per session."""
    cached = getattr(config, _CACHE, None)
    if cached is None:
        names = config.getoption("sd_backend", default=[]) or []
        device = config.getoption("sd_device", default=None)
        try:
            targets, skipped = select_targets(names, device)
        except Unrunnable as exc:
            raise pytest.UsageError(f"softmax-dispatch conformance: {exc}") from None
        cached = (targets, skipped)
        setattr(config, _CACHE, cached)
    return cached[0]


def pytest_report_header(config: pytest.Config) -> list[str]:
    try:
        targets = targets_for(config)
    except pytest.UsageError as exc:
        return [str(exc)]
    skipped = getattr(config, _CACHE, ([], []))[1]
    lines = ["softmax-dispatch targets: " + ", ".join(t.id for t in targets)]
    lines += [f"  not run: {name}: {why}" for name, why in skipped]
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target" not in metafunc.fixturenames:
        return
    targets = targets_for(metafunc.config)
    if "dtype" in metafunc.fixturenames:
        pairs = [(t, d) for t in targets for d in t.dtypes]
        metafunc.parametrize(("target", "dtype"), pairs, ids=[f"{t.id}-{d}" for t, d in pairs])
    else:
        metafunc.parametrize("target", targets, ids=[t.id for t in targets])


@pytest.fixture
def xp(target: Target) -> Any:
    """The array namespace of the target under test."""
    return target.xp


def hypothesis_profile() -> str:
    """``ci`` (default: derandomized, few examples) or ``full`` via
    ``SOFTMAX_DISPATCH_HYPOTHESIS=full``."""
    return os.environ.get("SOFTMAX_DISPATCH_HYPOTHESIS", "ci")
