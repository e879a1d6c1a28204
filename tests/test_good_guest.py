"""Installing softmax-dispatch never changes another project's test run: what our pytest
plugin registers globally is prefixed, and a foreign conftest's options, fixtures,
markers and hypothesis profiles keep working."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FOREIGN_CONFTEST = """
import pytest
from hypothesis import settings

# Names an ML project commonly uses; ours must not clash with any of them.
settings.register_profile("ci", max_examples=3)
settings.register_profile("full", max_examples=4)
settings.load_profile("ci")


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="the project's own device option")
    parser.addoption("--backend", default="numpy", help="the project's own backend option")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: the project's own marker")


@pytest.fixture
def device(request):
    return request.config.getoption("--device")


@pytest.fixture
def backend(request):
    return request.config.getoption("--backend")


@pytest.fixture
def xp():
    import numpy
    return numpy


@pytest.fixture
def target():
    return "the project's own target"


@pytest.fixture
def dtype():
    return "the project's own dtype"
"""

FOREIGN_TESTS = """
import os

import pytest
from hypothesis import given, settings, strategies as st


def test_own_options_and_fixtures(device, backend, xp, target, dtype):
    assert device == "cuda:3" and backend == "jaxish"
    assert xp.__name__ == "numpy"
    assert target == "the project's own target" and dtype == "the project's own dtype"


@pytest.mark.gpu
def test_own_marker():
    pass


def test_own_hypothesis_profile_is_active():
    assert settings.default.max_examples == 3


@given(st.integers())
def test_property(i):
    assert isinstance(i, int)


def test_no_environment_variable_was_set_for_us():
    assert "XLA_FLAGS" not in os.environ


def test_softmax_works_inside_the_project():
    import numpy as np
    import softmax_dispatch as sd

    np.testing.assert_allclose(sd.softmax(np.zeros(4)), 0.25)
"""


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("XLA_FLAGS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTEST_ADDOPTS"):
        env.pop(var, None)
    return env


def test_a_foreign_project_with_its_own_device_and_backend_options_runs_green(tmp_path: Path):
    (tmp_path / "conftest.py").write_text(textwrap.dedent(FOREIGN_CONFTEST))
    (tmp_path / "test_foreign.py").write_text(textwrap.dedent(FOREIGN_TESTS))
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--device", "cuda:3", "--backend", "jaxish"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "6 passed" in proc.stdout, proc.stdout[-2000:]


def test_our_plugin_registers_only_prefixed_options():
    from softmax_dispatch.conformance import plugin

    seen: list[tuple[str, ...]] = []

    class Group:
        def addoption(self, *names, **kwargs):
            seen.append(names)

    class Parser:
        def getgroup(self, *args, **kwargs):
            return Group()

        def addoption(self, *names, **kwargs):
            seen.append(names)

    plugin.pytest_addoption(Parser())
    assert seen, "the plugin adds the suite's options"
    for names in seen:
        assert all(n.startswith("--sd-") for n in names), names
    public = {n for n in dir(plugin) if n.startswith("pytest_")}
    assert public == {"pytest_addoption"}, "hooks beyond options would act on every run"


@pytest.mark.parametrize("spelling", [["--sd-backend", "numpy"], ["--sd-backend=numpy"]])
def test_the_documented_pytest_spelling_runs_our_suite(spelling):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--pyargs",
            "softmax_dispatch.conformance",
            *spelling,
            "-v",
            "-k",
            "rows_sum",
        ],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "passed" in proc.stdout.splitlines()[-1]
    assert "[numpy-cpu-fused" in proc.stdout and "[array_api_strict" not in proc.stdout
