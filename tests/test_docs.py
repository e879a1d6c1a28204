"""The code shown in the README and on every page of the docs site runs.

Each page's Python blocks (```python and the site's ```{exec-python}, which the build
runs too) run in order in one namespace, as a reader pasting them would. No page is
skipped for a missing library: the test extras install what the pages use.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^(`{3,})(python|\{exec-python\})[^\n]*\n(.*?)^\1\s*$", flags=re.S | re.M)


def python_blocks(path: Path) -> list[str]:
    """The page's Python blocks in order, directive options (``:hide-code:``) removed."""
    blocks = []
    for _, _, body in _FENCE.findall(path.read_text()):
        lines = body.splitlines()
        while lines and re.match(r"^:[\w-]+:", lines[0]):
            lines.pop(0)
        blocks.append("\n".join(lines) + "\n")
    return blocks


def test_the_block_finder_finds_both_kinds(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "```python\na = 1\n```\n\n```bash\nls\n```\n\n"
        "````{exec-python}\n:hide-code:\n:output: markdown\nb = a\n````\n"
    )
    assert python_blocks(page) == ["a = 1\n", "b = a\n"]


@pytest.fixture
def example_plugin_installed(monkeypatch):
    """What the plugin tutorial's ``pip install ./examples/numpy-on-torch-backend`` gives
    (registered from the example's folder unless it is installed already)."""
    import softmax_dispatch as sd

    if "numpy_torch" in {b.name for b in sd.backends()}:
        yield
        return
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "numpy-on-torch-backend"))
    import sd_numpy_torch

    handle = sd.register(sd_numpy_torch)
    try:
        yield
    finally:
        sd.unregister(handle)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_python_examples_in_docs_run(path: Path, monkeypatch, tmp_path, request):
    monkeypatch.syspath_prepend(str(ROOT / "docs" / "_ext"))
    monkeypatch.chdir(tmp_path)  # blocks that write files write them here
    if path.name == "writing-a-backend.md":  # its blocks come after installing the example
        request.getfixturevalue("example_plugin_installed")
    namespace = {"__name__": "__docs__"}
    for i, block in enumerate(python_blocks(path)):
        try:
            exec(compile(block, f"{path.name} (block {i + 1})", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"{path.name}, block {i + 1} failed:\n{block}") from exc


def test_readme_quick_start_has_exactly_two_commands():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert len(commands) == 2
    assert all(len(c.strip().splitlines()) == 1 for c in commands)
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1].strip() in ci


def test_readme_speed_figures_come_from_the_committed_bench_file():
    import json

    text = " ".join((ROOT / "README.md").read_text().split())
    found = re.search(
        r"4096x4096 float32 softmax on NumPy took ([\d.]+)x the time of a fresh copy of the "
        r"same bytes and ([\d.]+)x PyTorch's time on the same memory; log_softmax "
        r"\(([\d.]+)x\), the backward \(([\d.]+)x\) and `out=` \(([\d.]+)x\)",
        text,
    )
    assert found, "the README's speed sentence changed: keep it tied to docs/bench/numpy.json"
    data = json.loads((ROOT / "docs" / "bench" / "numpy.json").read_text())
    ratio = {(t["case"].split(" 4096")[0], t["what"]): t["ratio"] for t in data["targets"]}
    expected = [
        ratio[("softmax", "ours / floor")],
        ratio[("softmax", "ours / torch")],
        ratio[("log_softmax", "ours / torch")],
        ratio[("softmax_backward", "ours / torch")],
        ratio[("softmax out=", "ours out= / torch out=")],
    ]
    assert [float(v) for v in found.groups()] == [round(v, 2) for v in expected]
