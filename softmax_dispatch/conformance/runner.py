"""``softmax-dispatch check``: run the suite in-process and summarise it per target."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .targets import Target, Unrunnable, select_targets

__all__ = ["Row", "Unrunnable", "run"]

HERE = Path(__file__).resolve().parent
INVARIANCE_TEST = "test_each_row_is_computed_from_itself_alone"


@dataclass
class Row:
    """Outcome of the suite on one (backend, device)."""

    backend: str
    device: str
    paths: set[str] = field(default_factory=set)
    dtypes: set[str] = field(default_factory=set)
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    #: Batch invariance over the last axis: True (held everywhere it was checked),
    #: False (broken somewhere, reported as xfail or failed), None (not checked).
    batch_invariant: bool | None = None


class _Collector:
    """pytest plugin: outcomes grouped by the ``target`` parameter of each test."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Row] = {}
        self._where: dict[str, tuple[str, str]] = {}
        self._outcome: dict[str, str] = {}

    def pytest_collection_modifyitems(self, items: list[Any]) -> None:
        for item in items:
            params = getattr(getattr(item, "callspec", None), "params", {})
            target = params.get("target")
            if not isinstance(target, Target):  # None, or an empty parameter set
                continue
            key = (target.backend, target.device_name)
            row = self.rows.setdefault(key, Row(*key))
            row.paths.add(target.path)
            if "dtype" in params:
                row.dtypes.add(params["dtype"])
            self._where[item.nodeid] = key

    def pytest_runtest_logreport(self, report: Any) -> None:
        key = self._where.get(report.nodeid)
        if key is None:
            return
        row = self.rows[key]
        checked = not (report.skipped and not hasattr(report, "wasxfail"))
        if INVARIANCE_TEST in report.nodeid and report.when == "call" and checked:
            held = report.passed and not hasattr(report, "wasxfail")
            row.batch_invariant = held and row.batch_invariant is not False
        row.seconds += report.duration
        before = self._outcome.get(report.nodeid)
        if report.failed and before != "failed":
            self._outcome[report.nodeid] = "failed"
            row.failed += 1
            row.failures.append(report.nodeid)
            if before == "passed":
                row.passed -= 1
        elif report.skipped and before is None:
            self._outcome[report.nodeid] = "skipped"
            row.skipped += 1
        elif report.when == "call" and report.passed and before is None:
            self._outcome[report.nodeid] = "passed"
            row.passed += 1


def run(
    backends: Sequence[str],
    device: str | None,
    pytest_args: Sequence[str] = (),
    quiet: bool = False,
) -> tuple[int, list[Row], list[tuple[str, str]]]:
    """Run the suite; returns ``(exit_code, rows, not_run)``. Raises `Unrunnable` when a
    backend or device named explicitly cannot run."""
    import pytest

    _targets, not_run = select_targets(backends, device)  # fail fast, before pytest
    args = ["--pyargs", "softmax_dispatch.conformance", "-c", str(HERE / "pytest.ini")]
    args += ["--rootdir", str(HERE), "-q" if not quiet else "-qq", "-rf"]
    # this command imported the package before pytest started: nothing to rewrite there
    args += ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        args += ["-p", "softmax_dispatch.conformance.plugin"]
    for name in backends:
        args += ["--sd-backend", name]
    if device is not None:
        args += ["--sd-device", device]
    args += list(pytest_args)
    collector = _Collector()
    stream = sys.stderr if quiet else sys.stdout
    with contextlib.redirect_stdout(stream):
        code = int(pytest.main(args, plugins=[collector]))
    return code, sorted(collector.rows.values(), key=lambda r: (r.backend, r.device)), not_run
