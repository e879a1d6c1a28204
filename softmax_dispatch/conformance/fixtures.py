"""The suite's fixtures and parametrization, importable by a backend's own test suite.

In a backend repository's ``conftest.py``::

    pytest_plugins = ["softmax_dispatch.conformance.fixtures"]

then any test taking ``target`` (and optionally ``dtype``) runs once per selected
(backend, device, kernel path) — and per floating dtype that device supports — with the
same ``--sd-backend`` / ``--sd-device`` options as the suite.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from .targets import Target, Unrunnable, select_targets

__all__ = ["only", "pytest_generate_tests", "pytest_report_header", "targets_for", "xp"]

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


F = TypeVar("F", bound=Callable[..., Any])
_ONLY = "_softmax_dispatch_only"


def only(predicate: Callable[[Target], bool], reason: str) -> Callable[[F], F]:
    """Run the decorated test only on the targets ``predicate`` accepts (e.g. those whose
    library differentiates), rather than skipping it on every other one; where no target
    qualifies, it is skipped once with ``reason``."""

    def mark(fn: F) -> F:
        setattr(fn, _ONLY, (predicate, reason))
        return fn

    return mark


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target" not in metafunc.fixturenames:
        return
    targets = targets_for(metafunc.config)
    only_for = getattr(metafunc.function, _ONLY, None)
    if only_for is not None:
        predicate, reason = only_for
        targets = [t for t in targets if predicate(t)]
        if not targets:
            skip = pytest.mark.skip(reason=reason)
            names = ("target", "dtype") if "dtype" in metafunc.fixturenames else ("target",)
            values = (None, None) if len(names) == 2 else None
            metafunc.parametrize(
                names,
                [pytest.param(*([values] if len(names) == 1 else values), marks=skip, id="none")],
            )
            return
    if "dtype" in metafunc.fixturenames:
        pairs = [(t, d) for t in targets for d in t.dtypes]
        metafunc.parametrize(("target", "dtype"), pairs, ids=[f"{t.id}-{d}" for t, d in pairs])
    else:
        metafunc.parametrize("target", targets, ids=[t.id for t in targets])


@pytest.fixture
def xp(target: Target) -> Any:
    """The array namespace of the target under test."""
    return target.xp


def hypothesis_settings() -> Any:
    """The suite's hypothesis settings, applied test by test (no profile is registered
    or loaded: the caller's own hypothesis configuration stays as it is). ``ci`` by
    default (derandomized, few examples), ``SOFTMAX_DISPATCH_HYPOTHESIS=full`` for more;
    no example database is written to the working directory."""
    from hypothesis import HealthCheck, settings

    common: dict[str, Any] = dict(
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
        database=None,
    )
    profile = os.environ.get("SOFTMAX_DISPATCH_HYPOTHESIS", "ci")
    if profile == "full":
        return settings(max_examples=300, **common)
    if profile != "ci":
        raise ValueError(f"SOFTMAX_DISPATCH_HYPOTHESIS must be 'ci' or 'full', got {profile!r}")
    return settings(max_examples=15, derandomize=True, **common)
