"""Backend selection: backend= > use_backend > SOFTMAX_DISPATCH_BACKEND > owner by priority."""

from __future__ import annotations

import asyncio
import threading

import array_api_compat
import array_api_compat.numpy
import numpy as np
import pytest

import softmax_dispatch as sd
from softmax_dispatch import _dispatch, _ops


def _tagged(name: str, log: list[str], priority: int = 0) -> sd.Backend:
    """A NumPy backend whose softmax records that it ran."""

    def kernel(xp, x, axes, where=None, out=None):
        log.append(name)
        return _ops.softmax(xp, x, axes, where)

    return sd.Backend(
        name=name,
        owns=array_api_compat.is_numpy_array,
        namespace=lambda: array_api_compat.numpy,
        priority=priority,
        kernels={"softmax": kernel},
    )


@pytest.fixture
def tagged(fresh_registry):
    log: list[str] = []
    handles = [sd.register(_tagged(n, log)) for n in ("alpha", "beta", "gamma")]
    yield log
    for h in handles:
        sd.unregister(h)


def test_backend_argument_beats_context_and_environment(tagged, monkeypatch):
    monkeypatch.setenv(_dispatch.BACKEND_ENV, "gamma")
    _dispatch.reset()
    with sd.use_backend("beta"):
        sd.softmax(np.zeros(2), backend="alpha")
        sd.softmax(np.zeros(2))
    sd.softmax(np.zeros(2))
    assert tagged == ["alpha", "beta", "gamma"]


def test_owner_by_priority_when_nothing_is_chosen(fresh_registry):
    log: list[str] = []
    low, high = sd.register(_tagged("low", log, -5)), sd.register(_tagged("high", log, 5))
    sd.softmax(np.zeros(2))
    assert log == ["high"]
    sd.unregister(high)
    sd.softmax(np.zeros(2))  # numpy (priority 0) now wins over low: no record
    assert log == ["high"]
    sd.unregister(low)


def test_use_backend_is_private_to_each_thread(fresh_registry):
    ran_in: list[str] = []

    def kernel(xp, x, axes, where=None, out=None):
        ran_in.append(threading.current_thread().name)
        return _ops.softmax(xp, x, axes, where)

    handle = sd.register(
        sd.Backend(
            name="threadcheck",
            owns=array_api_compat.is_numpy_array,
            namespace=lambda: array_api_compat.numpy,
            kernels={"softmax": kernel},
        )
    )
    barrier = threading.Barrier(2)

    def chosen() -> None:
        with sd.use_backend("threadcheck"):
            barrier.wait()
            for _ in range(200):
                sd.softmax(np.zeros(2))

    def default() -> None:
        barrier.wait()
        for _ in range(200):
            sd.softmax(np.zeros(2))

    threads = [
        threading.Thread(target=chosen, name="chosen"),
        threading.Thread(target=default, name="default"),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sd.unregister(handle)
    assert ran_in == ["chosen"] * 200


def test_use_backend_is_private_to_each_asyncio_task(tagged):
    async def run(name: str) -> None:
        with sd.use_backend(name):
            await asyncio.sleep(0)
            sd.softmax(np.zeros(2))

    async def main() -> None:
        await asyncio.gather(run("alpha"), run("beta"))

    asyncio.run(main())
    assert sorted(tagged) == ["alpha", "beta"]


def test_use_backend_restores_previous_choice_and_nests(tagged):
    with sd.use_backend("alpha"):
        with sd.use_backend("beta"):
            sd.softmax(np.zeros(2))
        sd.softmax(np.zeros(2))
    sd.softmax(np.zeros(2))
    assert tagged == ["beta", "alpha"]


def test_unknown_backend_name_lists_known_ones(fresh_registry):
    with pytest.raises(LookupError, match=r"unknown backend 'nope'.*'numpy'"):
        sd.softmax(np.zeros(2), backend="nope")
    with pytest.raises(LookupError, match="'numpy'"), sd.use_backend("nope"):
        pass


def test_environment_variable_is_parsed_strictly(fresh_registry, monkeypatch):
    monkeypatch.setenv(_dispatch.BACKEND_ENV, "no_such_backend")
    with pytest.raises(LookupError, match="SOFTMAX_DISPATCH_BACKEND='no_such_backend'"):
        sd.softmax(np.zeros(2))


def test_environment_variable_chooses_backend(fresh_registry, monkeypatch):
    monkeypatch.setenv(_dispatch.BACKEND_ENV, "array_api")
    assert _dispatch.resolve(np.zeros(2), (), None)[0].name == "array_api"
    # ...and a type that backend does not own is a clear error naming the variable
    monkeypatch.setenv(_dispatch.BACKEND_ENV, "dask")
    _dispatch.reset()
    with pytest.raises(TypeError, match="chosen by SOFTMAX_DISPATCH_BACKEND"):
        sd.softmax(np.zeros(2))


def test_chosen_backend_that_does_not_own_the_array_says_how_to_move_it(fresh_registry):
    with pytest.raises(TypeError) as info:
        sd.softmax(np.zeros(2), backend="torch")
    msg = str(info.value)
    assert "backend 'torch'" in msg and "numpy.ndarray" in msg
    assert "asarray" in msg and "'numpy'" in msg  # how to move it, and who owns it


def test_unowned_type_names_the_type_and_registered_backends(fresh_registry):
    with pytest.raises(TypeError, match=r"no backend owns list; registered backends: .*'numpy'"):
        sd.softmax([1.0, 2.0])


def test_mixed_libraries_in_one_call_are_refused(fresh_registry):
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"y is a numpy.ndarray but grad is a torch.Tensor"):
        sd.softmax_backward(torch.ones(2), np.ones(2))
    with pytest.raises(TypeError, match=r"where is a torch\.Tensor"):
        sd.softmax(np.ones(2), where=torch.ones(2, dtype=torch.bool))


def test_generic_kernels_context_bypasses_fused_kernels(tagged):
    with sd.use_backend("alpha"):
        sd.softmax(np.zeros(2))
        with _dispatch.generic_kernels():
            y = sd.softmax(np.zeros(2))
    assert tagged == ["alpha"]
    np.testing.assert_allclose(y, [0.5, 0.5])


def test_resolution_is_cached_per_type(fresh_registry, monkeypatch):
    calls = []
    owns = array_api_compat.is_numpy_array

    def counting_owns(x):
        calls.append(type(x))
        return owns(x)

    handle = sd.register(
        sd.Backend(
            name="counted",
            owns=counting_owns,
            namespace=lambda: array_api_compat.numpy,
            priority=50,
        )
    )
    for _ in range(5):
        sd.softmax(np.zeros(3))
    assert calls == [np.ndarray]
    sd.unregister(handle)


def test_first_use_from_many_threads_at_once():
    """Plugins load once; threads arriving meanwhile wait instead of seeing an empty
    registry (a fresh process, so that loading really happens under contention)."""
    import subprocess
    import sys

    code = """
import threading, numpy as np, softmax_dispatch as sd
errors = []
bar = threading.Barrier(32)
def work():
    bar.wait()
    try:
        sd.softmax(np.zeros((2, 3)))
    except Exception as e:
        errors.append(repr(e))
ts = [threading.Thread(target=work) for _ in range(32)]
[t.start() for t in ts]
[t.join() for t in ts]
print(errors)
"""
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
        ).stdout
        assert out.strip() == "[]"
