"""``softmax-dispatch bench`` runs and reports what it promises (not timed assertions)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "softmax_dispatch", "bench", "--case", "8x10", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_bench_json_has_medians_ratios_and_machine():
    proc = _bench("--json", "--threads", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    impls = {r["impl"] for r in data["rows"]}
    assert {"ours", "ours out=", "textbook"} <= impls
    assert all(r["ms"] > 0 and r["gbs"] > 0 for r in data["rows"])
    assert data["machine"]["threads"] == 2 and data["machine"]["dispatch_us"] > 0
    if "scipy" in impls:
        (target,) = [t for t in data["targets"] if t["case"] == "softmax 8x10 f64"]
        assert target["target"] == "<= 0.8" and target["ratio"] > 0


def test_bench_table_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "bench.png"
    proc = _bench("--plot", str(png))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "median ms" in proc.stdout and "dispatch" in proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_profile_script_prints_every_figure_the_docs_quote():
    """benchmarks/profile_numpy.py, which docs/performance.md quotes, still runs."""
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "profile_numpy.py"
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    quoted = ("fresh/reused", "log_softmax 4096x4096 f32", "row sum, two-stage", "1 MiB/512 KiB")
    for line in quoted:
        assert line in proc.stdout
