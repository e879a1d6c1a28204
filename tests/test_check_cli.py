"""``softmax-dispatch check`` and ``pytest --pyargs softmax_dispatch.conformance``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

QUICK = ["--", "-k", "rows_sum_to_one or backward_matches_reference"]


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "softmax_dispatch", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_check_json_reports_each_target(capfd):
    proc = _run("check", "--backend", "numpy", "--json", *QUICK)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    (row,) = data["targets"]
    assert (row["backend"], row["device"]) == ("numpy", "cpu")
    assert row["failed"] == 0 and row["passed"] > 0
    assert {"float32", "float64"} <= set(row["dtypes"])


def test_bare_check_prints_table_and_lists_what_did_not_run():
    proc = _run("check", *QUICK)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("backend "))
    assert lines[header].split() == [
        "backend", "device", "kernels", "dtypes", "pass", "fail", "skip", "row-inv", "time",
    ]  # fmt: skip
    body = lines[header + 2 :]
    body = body[: next((i for i, line in enumerate(body) if line.startswith("row-inv:")), None)]
    rows = {tuple(line.split()[:2]) for line in body}
    assert ("numpy", "cpu") in rows
    cupy_available = "cupy" in {b for b, _ in rows}
    if not cupy_available:
        assert any(line.startswith("not run: cupy: ") for line in lines)
    # the catch-all is not a backend that failed to run: it is checked through the others
    assert not any(line.startswith("not run: array_api") for line in lines)
    assert max(map(len, lines)) <= 100


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--backend", "nope"], "unknown backend 'nope'"),
        (["--backend", "numpy", "--device", "cuda:7"], "has no device 'cuda:7'; its devices: cpu"),
    ],
)
def test_explicit_target_that_cannot_run_is_an_error(args, fragment):
    proc = _run("check", *args)
    assert proc.returncode == 2
    assert fragment in proc.stderr


def test_explicit_unavailable_backend_is_an_error_with_its_reason():
    import softmax_dispatch as sd

    if sd.get_backend("cupy").available:
        pytest.skip("CuPy can run here")
    proc = _run("check", "--backend", "cupy")
    assert proc.returncode == 2
    assert "backend 'cupy' cannot run here: " in proc.stderr and "CuPy" in proc.stderr


def test_pytest_pyargs_runs_the_same_suite(tmp_path):
    base = [sys.executable, "-m", "pytest", "--pyargs", "softmax_dispatch.conformance"]
    base += ["-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path)]
    ok = subprocess.run(
        [*base, "--sd-backend", "numpy", "-k", "rows_sum"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout[-2000:]
    assert "passed" in ok.stdout.splitlines()[-1]
    bad = subprocess.run(
        [*base, "--sd-backend", "numpy", "--sd-device", "cuda:7"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "has no device 'cuda:7'" in bad.stdout + bad.stderr


MINIMAL = """
from softmax_dispatch import Backend, hookimpl

def _namespace():
    import array_api_strict
    return array_api_strict

@hookimpl
def softmax_dispatch_backends():
    yield Backend(
        name="minimal",
        owns=lambda x: type(x).__module__.startswith("array_api_strict"),
        namespace=_namespace,
    )
"""


def test_backend_with_only_name_owns_and_namespace_is_checkable(tmp_path: Path):
    """Devices come from the namespace's inspection API, transfers from DLPack."""
    pytest.importorskip("array_api_strict")
    (tmp_path / "sd_minimal.py").write_text(textwrap.dedent(MINIMAL))
    info = tmp_path / "sd_minimal-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sd-minimal\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[softmax_dispatch]\nminimal = sd_minimal\n")
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    )
    proc = _run("check", "--backend", "minimal", "--json", *QUICK, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout)["targets"]
    assert {r["device"] for r in rows} >= {"CPU_DEVICE", "device1", "device2"}
    assert all(r["failed"] == 0 and r["passed"] > 0 for r in rows)


@pytest.mark.parametrize("count", [None, 2])
def test_check_runs_jax_on_the_devices_backends_lists(count):
    """One CPU device by default; two virtual ones when the user asks XLA for them, and
    then `softmax-dispatch backends` lists both too."""
    pytest.importorskip("jax")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if count:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={count}"
    proc = _run("check", "--backend", "jax", "--json", "--", "-k", "rows_sum", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout)["targets"]
    expected = {f"cpu:{i}" for i in range(count or 1)}
    assert {r["device"] for r in rows} == expected
    assert all(set(r["paths"]) == {"fused", "generic", "jit"} for r in rows)
    listed = json.loads(_run("backends", "--json", env=env).stdout)["backends"]
    (jax_row,) = [b for b in listed if b["name"] == "jax"]
    assert set(jax_row["devices"]) == expected


def test_check_with_no_test_selected_is_a_failure():
    proc = _run("check", "--backend", "numpy", "--", "-k", "zzz_no_such_test")
    assert proc.returncode == 1
    assert "no test ran" in proc.stderr
