"""``benchmarks/gpu_check.py`` without a GPU: it installs what CI builds and says clearly
when there is no GPU (what it does on one is its own run's to show)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="Python 3.11+")

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_hand_made_wheel_installs_the_packages_data_and_entry_points(tmp_path):
    """The fallback for machines that cannot build the package."""
    wheel = _script()._hand_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for package_dir in project["tool"]["scikit-build"]["wheel"]["packages"]:
        assert f"{Path(package_dir).name}/__init__.py" in names
    for sub in ("conformance", "bench"):
        assert f"softmax_dispatch/{sub}/__init__.py" in names
    assert not any("_csrc" in n or "__pycache__" in n for n in names)
    assert "softmax_dispatch_cupy/cuda/softmax.cu" in names
    assert "softmax_dispatch/conformance/pytest.ini" in names
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target"]
    subprocess.run([*pip, str(target), str(wheel)], check=True, capture_output=True)
    (dist,) = importlib.metadata.distributions(path=[str(target)])
    declared = project["project"]["entry-points"]
    for group, points in declared.items():
        found = {ep.name: ep.value for ep in dist.entry_points if ep.group == group}
        assert found == points
    assert (target / "softmax_dispatch_cupy" / "cuda" / "softmax.cu").is_file()


def test_without_a_gpu_it_says_so_and_exits_2(tmp_path):
    probe = "import cupy, sys; sys.exit(cupy.cuda.runtime.getDeviceCount() == 0)"
    try:
        has_gpu = subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0
    except Exception:
        has_gpu = False
    if has_gpu:
        pytest.skip("a GPU is here: gpu_check.py would run for real")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), "--skip-install"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    summary = (tmp_path / "summary.txt").read_text()
    assert summary.startswith("no usable GPU through CuPy: ")
    assert "Traceback" not in summary
    assert "cupy" in (tmp_path / "backends.txt").read_text()
