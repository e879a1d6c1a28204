"""The CuPy backend's registration: generic kernels by default, the fused CUDA kernels only
with ``SOFTMAX_DISPATCH_CUPY_KERNELS=fused`` (until a GPU has passed the conformance suite
with them), a bad value reported as the reason, and its bench kit."""

from __future__ import annotations

import pytest
from softmax_dispatch_cupy import KERNELS_VARIABLE
from softmax_dispatch_cupy import _bench as cupy_bench

import softmax_dispatch as sd
from softmax_dispatch import KERNEL_NAMES
from softmax_dispatch.bench import _cases


def _backends(env_value: str | None, monkeypatch: pytest.MonkeyPatch) -> dict:
    """``softmax-dispatch backends --json``'s rows, with the variable as given, read as
    the plugins load (``fresh_registry`` reloads them)."""
    from softmax_dispatch import _dispatch, _plugins, cli

    if env_value is None:
        monkeypatch.delenv(KERNELS_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(KERNELS_VARIABLE, env_value)
    _plugins._reset()
    _dispatch.reset()
    return {row["name"]: row for row in cli._backends_rows()[0]}


def test_generic_kernels_by_default_and_backends_says_the_fused_ones_are_opt_in(
    fresh_registry, monkeypatch, capsys
):
    cupy = _backends(None, monkeypatch)["cupy"]
    assert "generic kernels" in cupy["description"]
    assert f"{KERNELS_VARIABLE}=fused" in cupy["description"] and "opt-in" in cupy["description"]
    from softmax_dispatch import cli

    assert cli.main(["backends"]) == 0
    text = capsys.readouterr().out
    assert f"{KERNELS_VARIABLE}=fused" in text and "what each runs:" in text


def test_the_fused_kernels_are_registered_only_when_asked_for(fresh_registry, monkeypatch):
    from softmax_dispatch import _dispatch, _plugins

    monkeypatch.delenv(KERNELS_VARIABLE, raising=False)
    assert dict(sd.get_backend("cupy").backend.kernel_table()) == {}
    monkeypatch.setenv(KERNELS_VARIABLE, "fused")  # read when the plugins load
    _plugins._reset()
    _dispatch.reset()
    assert set(sd.get_backend("cupy").backend.kernel_table()) == set(KERNEL_NAMES)


@pytest.mark.parametrize("value", ["fused", "FUSED", " fused "])
def test_fused_is_read_case_and_space_insensitively(value, fresh_registry, monkeypatch):
    cupy = _backends(value, monkeypatch)["cupy"]
    assert (
        "on fused CUDA kernels" in cupy["description"] and "not yet verified" in cupy["description"]
    )


def test_any_other_value_makes_the_backend_unavailable_naming_it(fresh_registry, monkeypatch):
    cupy = _backends("fussed", monkeypatch)["cupy"]
    assert not cupy["available"]
    assert cupy["reason"] == f"{KERNELS_VARIABLE}='fussed' is not one of 'generic', 'fused'"


def test_the_bench_kit_names_existing_cases_and_its_peers():
    assert set(cupy_bench.CUPY_CASES) <= set(_cases.CATALOG)
    for target in cupy_bench.CUPY_TARGETS:
        assert target.case in cupy_bench.CUPY_CASES
        assert target.denominator in ("floor", "torch")
    big = [_cases.CATALOG[c] for c in cupy_bench.CUPY_CASES if "x4096 " in c or "x16384 " in c]
    assert all(s.shape[0] * s.shape[1] * 4 >= 256 * 2**20 for s in big if s.dtype == "float32")
