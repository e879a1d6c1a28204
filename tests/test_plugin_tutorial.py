"""The plugin tutorial (docs/writing-a-backend.md), followed literally in a fresh virtual
environment, gives a backend that ``softmax-dispatch check`` passes.

The test copies the checkout (the files git knows), runs the page's "install it and check
it" commands there exactly as written, then the page's Python blocks with the new
environment's Python. Needs the package index (pip) and about two minutes.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "writing-a-backend.md"


def python_blocks(path: Path) -> list[str]:
    spec = importlib.util.spec_from_file_location("_docs_test", ROOT / "tests" / "test_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.python_blocks(path)


def tutorial_commands() -> str:
    section = PAGE.read_text().split("## Step 4", 1)[1].split("\n## ", 1)[0]
    (commands,) = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return commands


def _copy_checkout(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        src = ROOT / os.fsdecode(name)
        if src.is_file():
            target = dest / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


def test_the_tutorial_commands_are_the_ones_ci_relies_on():
    commands = tutorial_commands()
    assert "python -m venv" in commands.splitlines()[0]
    assert "pip install ./examples/numpy-on-torch-backend" in commands
    assert commands.strip().splitlines()[-1] == "softmax-dispatch check --backend numpy_torch"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to list the checkout")
def test_following_the_plugin_tutorial_in_a_fresh_venv_gives_a_passing_backend(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tutorial starts from one")
    checkout = tmp_path / "checkout"
    _copy_checkout(checkout)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # `python` is the interpreter running these tests, as in the reader's shell
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    script = "set -euo pipefail\n" + tutorial_commands()
    proc = subprocess.run(
        ["bash", "-c", script],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert re.search(r"^numpy_torch\s+yes\s+cpu", proc.stdout, flags=re.M), proc.stdout[-3000:]
    assert re.search(r"\b\d+ passed\b", output) and not re.search(r"\b\d+ failed\b", output)
    python = checkout / ".venv-plugin" / "bin" / "python"
    code = "\n".join(python_blocks(PAGE))
    proc = subprocess.run(
        [str(python), "-c", code], cwd=checkout, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
