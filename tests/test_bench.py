"""``softmax-dispatch bench`` runs and reports what it promises (not timed assertions), and
the core imports no backend."""

from __future__ import annotations

import ast
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

import array_api_compat
import array_api_compat.numpy
import numpy as np
import pytest

import softmax_dispatch as sd
from softmax_dispatch import bench

ROOT = Path(__file__).resolve().parents[1]


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "softmax_dispatch", "bench", *args],
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_numpy_bench_json_has_medians_floor_peers_and_targets():
    proc = _bench("--backend", "numpy", "--case", "8x10 f32", "--json", "--rounds", "3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    rows = {(r["case"], r["impl"]): r for r in data["rows"]}
    assert ("softmax 8x10 f32", "ours") in rows and ("softmax 8x10 f32", "floor") in rows
    assert rows[("softmax 8x10 f32", "floor")]["of_floor"] == 1.0
    assert all(r["ms"] > 0 for r in data["rows"])
    assert data["machine"]["backend"] == "numpy" and data["machine"]["threads"] >= 1
    assert "numpy" in data["machine"]["versions"]
    # what the docs site prints beside each committed file's tables
    assert data["machine"]["command"] == (
        "softmax-dispatch bench --backend numpy --case '8x10 f32' --json --rounds 3"
    )
    assert datetime.date.fromisoformat(data["machine"]["date"]) >= datetime.date(2026, 1, 1)
    impls = {impl for _, impl in rows}
    skipped = {s["peer"] for s in data["skipped"]}  # a peer in a bad state, with why
    for peer in ("torch", "scipy"):
        if peer in data["machine"]["versions"]:
            assert peer in impls or peer in skipped
    # progress: one line per case, on stderr, while stdout holds only the JSON
    assert "[1/2] softmax 8x10 f32: ours" in proc.stderr


@pytest.mark.parametrize("backend", ["torch", "jax", "dask"])
def test_every_available_backend_benches(backend):
    if not sd.get_backend(backend).available:
        pytest.skip(f"{backend} is not installed here")
    case = "softmax 64x1000" if backend != "dask" else "softmax 256x32000"
    proc = _bench("--backend", backend, "--case", case, "--rounds", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"backend {backend} on " in proc.stdout
    lines = [line for line in proc.stdout.splitlines() if line.startswith(case)]
    assert {line.split()[3] for line in lines} >= {"ours", "floor"}, proc.stdout


def test_a_case_that_matches_nothing_is_an_error_and_list_names_them():
    proc = _bench("--case", "no such case")
    assert proc.returncode == 2 and "no case matches 'no such case'" in proc.stderr
    listed = _bench("--list")
    assert listed.returncode == 0
    assert "softmax 4096x4096 f32" in listed.stdout.splitlines()


def test_an_unavailable_backend_is_an_error():
    proc = _bench("--backend", "no_such_backend")
    assert proc.returncode == 2 and "unknown backend 'no_such_backend'" in proc.stderr


def test_a_peer_in_a_state_its_users_would_not_run_is_not_reported(fresh_registry, capsys):
    """A peer far slower than a copy on the small case (as PyTorch is with a second
    OpenMP runtime loaded) is left out, with why; a healthy one is reported."""

    def slow(case):
        x = case.arrays.get("x")

        def run():
            time.sleep(0.01)  # 10 ms for a 256 KB softmax: ~1000x a copy
            return x

        return {"sluggish": run, "healthy": lambda: np.exp(x) if x is not None else None}

    sd.register(
        sd.Backend(
            name="benched",
            owns=array_api_compat.is_numpy_array,
            namespace=lambda: array_api_compat.numpy,
            priority=-5,
            bench=lambda device: sd.BenchKit(peers=slow, cases=("softmax 64x1000 f32",)),
        )
    )
    assert bench.main("benched", as_json=True, rounds=2) == 0
    out = capsys.readouterr()
    data = json.loads(out.out)
    impls = {r["impl"] for r in data["rows"]}
    assert "healthy" in impls and "sluggish" not in impls
    (refused,) = [s for s in data["skipped"] if s["peer"] == "sluggish"]
    assert "a copy of the same bytes" in refused["reason"]
    assert "not reporting sluggish" in out.err


def test_bench_table_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "bench.png"
    proc = _bench("--case", "softmax 8x10 f32", "--rounds", "2", "--plot", str(png))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "median ms" in proc.stdout and "/floor" in proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


BACKEND_PACKAGES = ("softmax_dispatch_numpy", "softmax_dispatch_cupy", "softmax_dispatch_interop")
ARRAY_LIBRARIES = ("torch", "jax", "cupy", "cupyx", "dask", "scipy", "array_api_strict")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_core_imports_no_backend_package():
    """No module under softmax_dispatch/ imports a backend package; outside the shipped
    conformance suite (which differentiates with PyTorch and JAX and jits with JAX) none
    imports an array library but NumPy either."""
    offenders = []
    for path in sorted((ROOT / "softmax_dispatch").rglob("*.py")):
        conformance = "conformance" in path.parts
        for name in _imports(path):
            top = name.split(".")[0]
            if top in BACKEND_PACKAGES or (top in ARRAY_LIBRARIES and not conformance):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, offenders


def test_the_import_rule_sees_imports_inside_functions(tmp_path):
    """The walk the rule relies on finds nested and `from` imports (a rule that cannot
    fail is none)."""
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    import softmax_dispatch_numpy._kernels\n    from torch import nn\n"
    )
    assert {"softmax_dispatch_numpy._kernels", "torch"} <= _imports(module)


def test_profile_script_prints_every_figure_the_docs_quote():
    """benchmarks/profile_numpy.py, which docs/performance.md quotes, still runs."""
    script = ROOT / "benchmarks" / "profile_numpy.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for line in ("fresh / out=", "row sum", "block runs", "block sizes"):
        assert line in proc.stdout, proc.stdout
