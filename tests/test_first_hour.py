"""The first hour of a new user: commands that talk and survive a closed pipe, tables that
fit 100 columns, errors that answer the habits users bring from SciPy and PyTorch, and a
package ready to publish (version, license, typing marker)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import softmax_dispatch as sd

ROOT = Path(__file__).resolve().parents[1]
QUICK = ("--", "-q", "-k", "rows_sum_to_one")


def _cli(*args: str, cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "softmax_dispatch", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )


# ----------------------------------------------------------------------------- commands
@pytest.mark.parametrize(
    "args", [("backends",), ("backends", "--json"), ("bench", "--list"), ("--version",)]
)
def test_every_command_survives_a_closed_pipe(args):
    """``softmax-dispatch backends | head -1``: no traceback, the exit status of a
    command killed by SIGPIPE (141), as ``yes | head -1`` gives."""
    reader, writer = os.pipe()
    os.close(reader)  # nobody reads: the first write fails with EPIPE
    proc = subprocess.run(
        [sys.executable, "-m", "softmax_dispatch", *args],
        stdout=writer,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )
    os.close(writer)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr
    assert proc.returncode == 141


def test_backends_table_fits_100_columns_and_json_keeps_everything():
    proc = _cli("backends")
    assert proc.returncode == 0
    assert max(map(len, proc.stdout.splitlines())) <= 100
    data = json.loads(_cli("backends", "--json").stdout)
    reasons = [b["reason"] for b in data["backends"] if b["reason"]]
    for reason in reasons:  # every reason is shown, wrapped, not cut
        assert " ".join(reason.split()[:4]) in " ".join(proc.stdout.split())


def test_version_names_the_package_and_each_backend_library():
    proc = _cli("--version")
    assert proc.returncode == 0
    first = proc.stdout.splitlines()[0]
    assert first == f"softmax-dispatch {sd.__version__}"
    assert re.search(r"^numpy\s+numpy \d", proc.stdout, flags=re.M)


def test_check_talks_as_it_goes_and_leaves_no_files(tmp_path):
    proc = _cli("check", "--backend", "numpy", *QUICK, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "check: 1 backend" in proc.stderr  # the plan
    assert re.search(r"\[\s*\d+\.\ds\] numpy on cpu: \d+ tests", proc.stderr)  # a header
    assert list(tmp_path.iterdir()) == []  # no .hypothesis/, no .pytest_cache/
    assert max(map(len, proc.stdout.splitlines())) <= 100
    assert max(map(len, proc.stderr.splitlines())) <= 100


def test_check_summary_gives_skip_reasons():
    proc = _cli("check", "--backend", "numpy", "--", "-q", "-k", "autodiff or complex")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "skipped:" in proc.stdout
    assert re.search(r"^\s+\d+ x .*(PyTorch|JAX|autodiff|complex)", proc.stdout, flags=re.M)
    data = json.loads(
        _cli("check", "--backend", "numpy", "--json", "--", "-q", "-k", "autodiff").stdout
    )
    assert any("autodiff" in s["reason"] for s in data["skip_reasons"])


def test_not_run_lines_say_how_to_install_and_omit_the_catch_all():
    proc = _cli("check", *QUICK)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "not run: array_api:" not in proc.stdout
    entries = re.findall(r"^not run:.*(?:\n {2,}.*)*", proc.stdout, flags=re.M)  # wrapped
    for entry in entries:
        if "not installed" in entry:
            assert "pip install" in entry, entry


def test_bench_footer_explains_targets_and_noise():
    proc = _cli("bench", "--backend", "numpy", "--case", "8x10", "--rounds", "3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "A loaded machine moves every ratio" in " ".join(proc.stdout.split())
    assert max(map(len, proc.stdout.splitlines())) <= 100
    assert "[1/2] softmax 8x10 f32" in proc.stderr


def test_bench_works_without_sched_getaffinity(monkeypatch):
    from softmax_dispatch import bench

    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    assert bench.cores() >= 1


# ---------------------------------------------------------------------- errors that teach
@pytest.mark.parametrize(
    "call",
    [
        lambda x: sd.softmax(x, dim=1),
        lambda x: sd.log_softmax(x, dim=-1),
        lambda x: sd.softmax_backward(x, x, dim=0),
        lambda x: sd.log_softmax_backward(x, x, dim=0),
        lambda x: sd.softmax_cross_entropy(x, np.array([0, 1]), dim=1),
        lambda x: sd.softmax_cross_entropy_backward(x, np.array([0, 1]), dim=1),
    ],
)
def test_dim_is_refused_with_a_hint_to_use_axis(call):
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'dim'.*axis="):
        call(np.zeros((2, 3)))


def test_other_unexpected_keywords_list_the_accepted_ones():
    with pytest.raises(TypeError, match=r"'keepdim'.*accepted.*axis, where, dtype, out"):
        sd.softmax(np.zeros(3), keepdim=True)
    with pytest.raises(TypeError, match=r"'size_average'.*reduction="):
        sd.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1]), size_average=True)


def test_layers_refuse_dim_with_the_same_hint():
    with pytest.raises(TypeError, match=r"'dim'.*axis="):
        sd.Softmax(dim=1)


def test_float_class_indices_are_told_to_be_integers():
    logits = np.zeros((4, 5))
    with pytest.raises(ValueError, match=r"float64.*class indices must be integers"):
        sd.softmax_cross_entropy(logits, np.array([0.0, 1.0, 2.0, 3.0]))


def test_pytorch_class_axis_gets_a_hint_to_pass_axis_1():
    logits = np.zeros((2, 5, 3, 3))  # NCHW logits, PyTorch's class axis 1
    target = np.zeros((2, 3, 3), dtype=np.int64)
    with pytest.raises(ValueError, match=r"pass axis=1"):
        sd.softmax_cross_entropy(logits, target)
    loss = sd.softmax_cross_entropy(logits, target, axis=1)
    np.testing.assert_allclose(loss, np.log(5))


def test_dtype_names_are_accepted_and_a_bad_name_names_the_library():
    x = np.array([1.0, 2.0])
    y = sd.softmax(x, dtype="float32")
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, sd.softmax(x.astype(np.float32)))
    with pytest.raises(TypeError, match=r"numpy.*'float32'.*got 'float33'"):
        sd.softmax(x, dtype="float33")
    torch = pytest.importorskip("torch")
    t = sd.log_softmax(torch.tensor([1, 2, 3]), dtype="float64")
    assert t.dtype == torch.float64
    with pytest.raises(TypeError, match=r"torch"):
        sd.softmax(torch.zeros(2), dtype="int32")


def test_the_default_axis_is_documented_against_scipy():
    assert "scipy.special.softmax" in sd.softmax.__doc__
    assert "axis=None" in sd.softmax.__doc__


# ------------------------------------------------------------------------- publishing
def test_one_version_everywhere():
    from softmax_dispatch._version import __version__

    assert sd.__version__ == __version__
    cff = (ROOT / "CITATION.cff").read_text()
    assert f'version: "{__version__}"' in cff
    assert f"## [{__version__}]" in (ROOT / "CHANGELOG.md").read_text()
    assert 'dynamic = ["version"]' in (ROOT / "pyproject.toml").read_text()


def test_the_wheel_has_license_typing_marker_every_package_and_the_compiled_kernels(tmp_path):
    pytest.importorskip("scikit_build_core", minversion="0.11")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("softmax_dispatch-*.whl")
    assert f"-{sd.__version__}-" in wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert "softmax_dispatch/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    packages = [
        p.parent.relative_to(ROOT / "softmax_dispatch").as_posix()
        for p in (ROOT / "softmax_dispatch").rglob("__init__.py")
    ]
    for package in packages:  # every subpackage of the source tree ships
        name = "softmax_dispatch" if package == "." else f"softmax_dispatch/{package}"
        assert f"{name}/__init__.py" in names, name
    for package in ("softmax_dispatch_numpy", "softmax_dispatch_interop", "softmax_dispatch_cupy"):
        assert f"{package}/__init__.py" in names
    assert any(n.startswith("softmax_dispatch_numpy/_native.") for n in names)  # compiled
    assert not any("/_csrc/" in n or "__pycache__" in n for n in names)  # sources stay out
