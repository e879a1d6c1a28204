"""Check the CuPy backend's CUDA kernels on a real GPU, in one command.

    python benchmarks/gpu_check.py OUTDIR

On a bare machine with an NVIDIA GPU and CuPy, PyTorch and nvcc already installed (no
network needed), from a checkout of this repository:

1. installs this package from the checkout without dependencies or network (``pip
   install --no-deps --no-index --no-build-isolation .``, which builds the compiled NumPy
   kernels where scikit-build-core and CMake are installed; elsewhere a wheel is put
   together from the checkout by hand: the same packages, data and entry points, the
   NumPy backend on its pure kernels);
2. ``softmax-dispatch check --backend cupy`` with ``SOFTMAX_DISPATCH_CUPY_KERNELS=fused``:
   the conformance suite on every GPU, every dtype, fused and generic kernels;
3. ``softmax-dispatch check --backend torch --device cuda:0``: PyTorch on CUDA;
4. ``softmax-dispatch bench --backend cupy --json`` (fused kernels), and its table;

and writes each step's output into OUTDIR (``env.txt``, ``backends.txt`` and ``.json``,
``check-cupy.json``, ``check-torch-cuda.txt``, ``bench-cupy.json`` and its table
``bench-cupy.md``; each step's stderr next to it as ``.log``), then ``summary.txt``: each
step's exit status and time. Each step has a time limit, so the
whole run stays under 8 minutes on one H100/H200 (``--budget`` seconds in all); a step
that runs out of time is reported as such. The exit status is 0 only when every step
passed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUSED = {"SOFTMAX_DISPATCH_CUPY_KERNELS": "fused"}


def _run(
    cmd: list[str], out: Path, limit: float, env: dict[str, str] | None = None
) -> tuple[int | str, float]:
    """``cmd``, its stdout into ``out`` and its stderr into ``out`` with ``.log``;
    (exit status, or "timeout" with it, and seconds). At the time limit the command gets
    SIGINT first (pytest then reports what ran so far, and ``check --json`` prints it),
    and is killed 30 s later if it is still running."""
    start = time.monotonic()
    with out.open("w") as stdout, out.with_suffix(".log").open("w") as stderr:
        stderr.write(f"$ {' '.join(cmd)}\n")
        stderr.flush()
        proc = subprocess.Popen(
            cmd,
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, **(env or {})},
            cwd=tempfile.gettempdir(),  # the installed package, not the checkout
        )
        try:
            status: int | str = proc.wait(timeout=max(1.0, limit))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            status = f"timeout (exit {code})"
            stderr.write(f"\n[gpu_check] interrupted after {limit:.0f} s\n")
    return status, time.monotonic() - start


def _record(path: Path, line: str) -> None:
    with path.open("a") as f:
        f.write(line + "\n")
    print(line, flush=True)


# ------------------------------------------------------------------------ installing
def _hand_wheel(dest: Path) -> Path:
    """A wheel of the checkout (packages, package data, entry points; no compiled
    kernels), made without a build backend: for machines that cannot build the package."""
    try:
        import tomllib  # Python 3.11+
    except ImportError:
        raise SystemExit(
            "gpu_check: pip could not build the package (see install.txt) and building it by "
            "hand needs Python 3.11+ (tomllib); install scikit-build-core and run again"
        ) from None

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    meta = project["project"]
    version = _version()
    name = meta["name"].replace("-", "_")
    dist_info = f"{name}-{version}.dist-info"
    files: dict[str, bytes] = {}
    for package_dir in project["tool"]["scikit-build"]["wheel"]["packages"]:
        src = ROOT / package_dir
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src)
            if not path.is_file() or rel.parts[0] == "_csrc" or "__pycache__" in rel.parts:
                continue
            files[f"{src.name}/{rel.as_posix()}"] = path.read_bytes()
    groups = meta.get("entry-points", {})
    entry = "".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()) + "\n"
        for group, points in groups.items()
    )
    entry += "[console_scripts]\n" + "".join(
        f"{k} = {v}\n" for k, v in meta.get("scripts", {}).items()
    )
    files[f"{dist_info}/entry_points.txt"] = entry.encode()
    files[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {version}\n".encode()
    )
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: gpu_check\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return wheel


def _version() -> str:
    text = (ROOT / "softmax_dispatch" / "_version.py").read_text()
    return text.split('__version__ = "', 1)[1].split('"', 1)[0]


def install(log: Path) -> bool:
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall"]
    status, _ = _run([*pip, "--no-build-isolation", str(ROOT)], log, 300)
    if status == 0:
        return True
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _hand_wheel(Path(tmp))
        status, _ = _run([*pip, str(wheel)], log.with_name("install-fallback.txt"), 120)
    return status == 0


# ------------------------------------------------------------------------------ main


def _cupy_unavailable(backends_json: Path) -> str | None:
    """Why the cupy backend cannot run, as the backend itself reports it (no driver, no
    device, CuPy missing, a bad setting), or None where it can."""
    try:
        rows = json.loads(backends_json.read_text())["backends"]
    except (OSError, ValueError, KeyError) as exc:
        return f"softmax-dispatch backends --json gave no listing ({exc})"
    cupy = next((row for row in rows if row["name"] == "cupy"), None)
    if cupy is None:
        return "no backend named cupy is registered"
    return None if cupy["available"] else cupy["reason"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path, help="where the tables, JSON and summary go")
    parser.add_argument(
        "--budget", type=float, default=450, help="seconds for all steps (default 450)"
    )
    parser.add_argument(
        "--skip-install", action="store_true", help="use the installed package as is"
    )
    args = parser.parse_args(argv)
    out: Path = args.outdir
    out.mkdir(parents=True, exist_ok=True)
    summary = out / "summary.txt"
    summary.write_text("")
    deadline = time.monotonic() + args.budget
    cli = [sys.executable, "-m", "softmax_dispatch"]

    env_txt = out / "env.txt"
    with env_txt.open("w") as f:
        for cmd in (["nvidia-smi"], ["nvcc", "--version"]):
            if shutil.which(cmd[0]):
                f.write(subprocess.run(cmd, capture_output=True, text=True).stdout + "\n")
    if not args.skip_install and not install(out / "install.txt"):
        _record(summary, "install: FAILED (see install.txt)")
        return 1
    _run([*cli, "--version"], out / "version.txt", 60)
    _run([*cli, "backends"], out / "backends.txt", 60, FUSED)
    _run([*cli, "backends", "--json"], out / "backends.json", 60, FUSED)
    why = _cupy_unavailable(out / "backends.json")
    if why is not None:
        _record(summary, f"no usable GPU through CuPy: {why}")
        return 2

    # (output file, command, extra environment, share of what is left of the budget)
    steps = [
        ("check-cupy.json", [*cli, "check", "--backend", "cupy", "--json"], FUSED, 0.55),
        (
            "check-torch-cuda.txt",
            [*cli, "check", "--backend", "torch", "--device", "cuda:0"],
            {},
            0.45,
        ),
        ("bench-cupy.json", [*cli, "bench", "--backend", "cupy", "--json"], FUSED, 1.0),
    ]
    failed = False
    for name, cmd, env, share in steps:
        left = deadline - time.monotonic()
        status, took = _run(cmd, out / name, left * share, env)
        _record(summary, f"{name}: {'passed' if status == 0 else status} in {took:.0f} s")
        failed |= status != 0
    bench = out / "bench-cupy.json"
    if bench.stat().st_size:
        table = [sys.executable, str(ROOT / "benchmarks" / "bench_table.py"), str(bench)]
        _run(table, out / "bench-cupy.md", 60)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
