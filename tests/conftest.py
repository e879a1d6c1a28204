"""Shared fixtures for the core's tests."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from softmax_dispatch import _dispatch, _plugins

#: Source of a working plugin module; format with ``name`` and ``priority``.
GOOD_PLUGIN = """
import array_api_compat
from softmax_dispatch import Backend, hookimpl

def _namespace():
    import array_api_compat.numpy
    return array_api_compat.numpy

@hookimpl
def softmax_dispatch_backends():
    yield Backend(name="{name}", owns=array_api_compat.is_numpy_array,
                  namespace=_namespace, priority={priority})
"""


@pytest.fixture
def good_plugin() -> Callable[[str, int], str]:
    """Source of a working plugin module with one NumPy backend ``name``."""
    return lambda name, priority=0: GOOD_PLUGIN.format(name=name, priority=priority)


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch):
    """A registry reloaded from entry points for this test, and restored afterwards."""
    for var in (_dispatch.BACKEND_ENV, _plugins.STRICT_ENV):
        monkeypatch.delenv(var, raising=False)
    _plugins._reset()
    _dispatch.reset()
    yield
    _plugins._reset()
    _dispatch.reset()


@pytest.fixture
def install_plugins(
    fresh_registry: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str, str, dict[str, str]], Path]:
    """Factory: write a throw-away distribution (``{module: source}``, one entry point per
    module in the ``softmax_dispatch`` group) and put it on ``sys.path``."""

    def make(dist: str, version: str, modules: dict[str, str]) -> Path:
        root = tmp_path / dist
        root.mkdir()
        for name, source in modules.items():
            (root / f"{name}.py").write_text(textwrap.dedent(source))
        info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        eps = "\n".join(f"{name} = {name}" for name in modules)
        (info / "entry_points.txt").write_text(f"[softmax_dispatch]\n{eps}\n")
        monkeypatch.syspath_prepend(str(root))
        for name in modules:
            sys.modules.pop(name, None)
        _plugins._reset()
        _dispatch.reset()
        return root

    return make
