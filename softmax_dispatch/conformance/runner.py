"""``softmax-dispatch check``: run the suite in-process and summarise it per target."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .targets import Target, Unrunnable, select_targets

__all__ = ["Row", "Unrunnable", "run"]

HERE = Path(__file__).resolve().parent
INVARIANCE_TEST = "test_each_row_is_computed_from_itself_alone"
#: The row that collects skips of tests with no target (shown only in the skip summary).
UNATTRIBUTED = ("", "")


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
    #: Why tests were skipped: reason -> count.
    skip_reasons: dict[str, int] = field(default_factory=dict)
    #: How many tests the target has (known after collection).
    total: int = 0
    #: Batch invariance over the last axis: True (held everywhere it was checked),
    #: False (broken somewhere, reported as xfail or failed), None (not checked).
    batch_invariant: bool | None = None


class _Collector:
    """pytest plugin: outcomes grouped by the ``target`` parameter of each test."""

    def __init__(self, talk: bool = True) -> None:
        self.rows: dict[tuple[str, str], Row] = {}
        self._where: dict[str, tuple[str, str]] = {}
        self._outcome: dict[str, str] = {}
        self._talk = talk
        self._current: tuple[str, str] | None = None
        self._start = time.perf_counter()

    def pytest_collection_modifyitems(self, items: list[Any]) -> None:
        # one target after another (stable within each), so that progress can say which
        order: dict[tuple[str, str] | None, int] = {}
        for item in items:
            order.setdefault(_key(item), len(order))
        items.sort(key=lambda it: order[_key(it)])
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
            row.total += 1

    def pytest_collection_finish(self, session: Any) -> None:
        """Count each target's tests after deselection (``-k``)."""
        for row in self.rows.values():
            row.total = 0
        for item in session.items:
            key = self._where.get(item.nodeid)
            if key is not None:
                self.rows[key].total += 1

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        key = self._where.get(nodeid)
        if key is None or key == self._current or not self._talk:
            return
        self._current = key
        row = self.rows[key]
        elapsed = time.perf_counter() - self._start
        kernels = ", ".join(sorted(row.paths))
        print(
            f"\n[{elapsed:6.1f}s] {row.backend} on {row.device}: {row.total} tests "
            f"({kernels}; {', '.join(sorted(row.dtypes)) or 'no dtype'})",
            file=sys.__stderr__,
            flush=True,
        )

    def pytest_runtest_logreport(self, report: Any) -> None:
        key = self._where.get(report.nodeid)
        if key is None:  # a test with no target (an empty parameter set): its skip reason
            if report.skipped and report.nodeid not in self._outcome:
                self._outcome[report.nodeid] = "skipped"
                row = self.rows.setdefault(UNATTRIBUTED, Row(*UNATTRIBUTED))
                reason = _skip_reason(report)
                row.skip_reasons[reason] = row.skip_reasons.get(reason, 0) + 1
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
            reason = _skip_reason(report)
            row.skip_reasons[reason] = row.skip_reasons.get(reason, 0) + 1
        elif report.when == "call" and report.passed and before is None:
            self._outcome[report.nodeid] = "passed"
            row.passed += 1


class _HypothesisHome:
    """pytest plugin: Hypothesis's storage in a directory of ours."""

    def __init__(self, path: str) -> None:
        self.path = path

    def pytest_configure(self, config: Any) -> None:
        try:
            from hypothesis.configuration import set_hypothesis_home_dir
        except ImportError:  # an older Hypothesis: its default stays
            return
        set_hypothesis_home_dir(self.path)

    def pytest_unconfigure(self, config: Any) -> None:
        try:
            from hypothesis.configuration import set_hypothesis_home_dir
        except ImportError:
            return
        set_hypothesis_home_dir(None)


def _key(item: Any) -> tuple[str, str] | None:
    params = getattr(getattr(item, "callspec", None), "params", {})
    target = params.get("target")
    return (target.backend, target.device_name) if isinstance(target, Target) else None


def _skip_reason(report: Any) -> str:
    """The reason a skip gives, without pytest's "Skipped: " prefix."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    if hasattr(report, "wasxfail"):
        text = f"expected failure: {report.wasxfail.split(':')[0]}"  # details vary by test
    return text.removeprefix("Skipped: ").strip()


def skip_summary(rows: Sequence[Row], limit: int = 8) -> list[tuple[int, str]]:
    """``(count, reason)`` over every row, most frequent first, at most ``limit``."""
    total: dict[str, int] = {}
    for row in rows:
        for reason, n in row.skip_reasons.items():
            total[reason] = total.get(reason, 0) + n
    ranked = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))
    out = [(n, reason) for reason, n in ranked[:limit]]
    rest = sum(n for _, n in ranked[limit:])
    if rest:
        out.append((rest, f"other reasons ({len(ranked) - limit}); --json lists every skip"))
    return out


def _plan(targets: Sequence[Target], not_run: Sequence[tuple[str, str]]) -> str:
    """What `check` is about to run, for stderr."""
    by_backend: dict[str, dict[str, set[str]]] = {}
    for t in targets:
        by_backend.setdefault(t.backend, {}).setdefault(t.device_name, set()).add(t.path)
    n = len(by_backend)
    parts = [
        f"{name} on {', '.join(devs)} ({', '.join(sorted(set().union(*devs.values())))})"
        for name, devs in sorted(by_backend.items())
    ]
    lines = [f"check: {n} backend{'s' if n != 1 else ''}: " + "; ".join(parts)]
    notes = {t.backend: t.info.kernels_status for t in targets if t.info.kernels_status}
    lines += [f"{name} kernels: {note}" for name, note in sorted(notes.items())]
    if not_run:
        lines.append("not run: " + ", ".join(name for name, _ in not_run) + " (why: at the end)")
    return "\n".join(textwrap.fill(line, 100, subsequent_indent="    ") for line in lines)


def run(
    backends: Sequence[str],
    device: str | None,
    pytest_args: Sequence[str] = (),
    quiet: bool = False,
) -> tuple[int, list[Row], list[tuple[str, str]]]:
    """Run the suite; returns ``(exit_code, rows, not_run)``. Raises `Unrunnable` when a
    backend or device named explicitly cannot run."""
    import pytest

    targets, not_run = select_targets(backends, device)  # fail fast, before pytest
    print(_plan(targets, not_run), file=sys.stderr, flush=True)
    args = ["--pyargs", "softmax_dispatch.conformance", "-c", str(HERE / "pytest.ini")]
    args += ["--rootdir", str(HERE), "-q" if not quiet else "-qq", "-rf"]
    # nothing written into the caller's directory (or the installed package): no cache
    args += ["-p", "no:cacheprovider"]
    # this command imported the package before pytest started: nothing to rewrite there
    args += ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        args += ["-p", "softmax_dispatch.conformance.plugin"]
    for name in backends:
        args += ["--sd-backend", name]
    if device is not None:
        args += ["--sd-device", device]
    args += list(pytest_args)
    collector = _Collector(talk=True)
    stream = sys.stderr if quiet else sys.stdout
    # Hypothesis keeps its files under .hypothesis/ in the working directory: a directory
    # of ours instead, removed afterwards (check leaves nothing behind).
    with (
        tempfile.TemporaryDirectory(prefix="sd-check-") as home,
        contextlib.redirect_stdout(stream),
    ):
        code = int(pytest.main(args, plugins=[collector, _HypothesisHome(home)]))
    rows = sorted(collector.rows.values(), key=lambda r: (r.backend, r.device))
    return code, rows, not_run
