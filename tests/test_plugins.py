"""Plugin discovery: entry points, run-time registration, isolation of broken plugins."""

from __future__ import annotations

import subprocess
import sys
import warnings

import array_api_compat
import array_api_compat.numpy
import numpy as np
import pytest

import softmax_dispatch as sd
from softmax_dispatch import _dispatch, _ops

BUILTIN = {"numpy", "cupy", "torch", "jax", "array_api_strict", "dask", "array_api"}


def _numpy_backend(name: str, **kw) -> sd.Backend:
    return sd.Backend(
        name=name,
        owns=array_api_compat.is_numpy_array,
        namespace=lambda: array_api_compat.numpy,
        **kw,
    )


def test_builtin_backends_come_from_the_entry_point_group(fresh_registry):
    infos = {b.name: b for b in sd.backends()}
    assert set(infos) >= BUILTIN
    for name in BUILTIN:
        assert infos[name].distribution == "softmax-dispatch"
        assert infos[name].version == sd.__version__
    assert infos["numpy"].available and infos["numpy"].reason is None
    assert [str(d) for d in infos["numpy"].devices] == ["cpu"]
    assert sd.failed_plugins() == []


def test_generic_backend_has_the_lowest_priority(fresh_registry):
    infos = sd.backends()
    assert infos[-1].name == "array_api"
    assert [b.priority for b in infos] == sorted((b.priority for b in infos), reverse=True)


def test_backend_found_through_an_entry_point_of_another_distribution(install_plugins, good_plugin):
    install_plugins("third-party-softmax", "2.5.1", {"tp_plugin": good_plugin("tp", 7)})
    info = sd.get_backend("tp")
    assert (info.distribution, info.version, info.priority) == ("third-party-softmax", "2.5.1", 7)
    assert info.available
    # priority 7 beats the built-in numpy backend (0) for NumPy arrays
    assert _dispatch.resolve(np.zeros(1), (), None)[0].name == "tp"
    np.testing.assert_allclose(sd.softmax(np.array([0.0, 0.0])), [0.5, 0.5])


BROKEN = {
    "bad_import": "raise ImportError('libfoo.so: cannot open shared object file')\n",
    "bad_hook": """
        from softmax_dispatch import hookimpl

        @hookimpl
        def softmax_dispatch_backends():
            raise RuntimeError("driver exploded")
            yield
    """,
    "bad_yield": """
        from softmax_dispatch import hookimpl

        @hookimpl
        def softmax_dispatch_backends():
            yield 42
    """,
    "no_hook": "x = 1\n",
}


def test_broken_plugins_are_isolated_and_reported(install_plugins, good_plugin):
    broken = {**BROKEN, "dup_name": good_plugin("numpy")}
    install_plugins("broken-dist", "0.0.1", {**broken, "fine_plugin": good_plugin("fine")})
    with pytest.warns(sd.PluginWarning) as record:
        names = {b.name for b in sd.backends()}
    assert len(record) == len(broken)
    assert BUILTIN | {"fine"} <= names
    failures = {f.plugin: f for f in sd.failed_plugins()}
    assert set(failures) == set(broken)
    assert all(f.distribution == "broken-dist" and f.version == "0.0.1" for f in failures.values())
    assert "libfoo.so" in failures["bad_import"].error
    assert "driver exploded" in failures["bad_hook"].error
    assert "yielded int" in failures["bad_yield"].error
    assert "no softmax_dispatch_backends hook" in failures["no_hook"].error
    # the duplicate names both distributions; the built-in numpy backend is kept
    assert "softmax-dispatch" in failures["dup_name"].error
    assert "broken-dist" in failures["dup_name"].error
    assert sd.get_backend("numpy").distribution == "softmax-dispatch"
    np.testing.assert_allclose(sd.softmax(np.zeros(2), backend="fine"), [0.5, 0.5])


def test_strict_mode_raises_on_every_call_while_a_plugin_is_broken(install_plugins, monkeypatch):
    install_plugins("broken-dist", "0.0.1", {"bad_hook": BROKEN["bad_hook"]})
    monkeypatch.setenv("SOFTMAX_DISPATCH_STRICT_PLUGINS", "1")
    for _ in range(3):
        with pytest.raises(sd.PluginError, match="driver exploded"):
            sd.softmax(np.zeros(2))
        with pytest.raises(sd.PluginError, match="driver exploded"):
            sd.log_softmax(np.zeros(2), backend="numpy")
    # the listing still works: it is where the user sees what is broken
    assert [f.plugin for f in sd.failed_plugins()] == ["bad_hook"]
    assert "numpy" in {b.name for b in sd.backends()}


def test_a_broken_plugin_is_warned_about_once_naming_it(install_plugins, good_plugin):
    install_plugins("broken-dist", "0.0.1", {"bad_hook": BROKEN["bad_hook"]})
    with pytest.warns(sd.PluginWarning) as record:
        sd.softmax(np.zeros(2))
    assert len(record) == 1
    msg = str(record[0].message)
    assert "'bad_hook'" in msg and "broken-dist 0.0.1" in msg and "driver exploded" in msg
    assert "softmax-dispatch backends" in msg
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sd.softmax(np.zeros(2))  # once: later calls are quiet
        sd.backends()


def test_register_failure_says_plugin_error_once():
    with pytest.raises(sd.PluginError) as info:
        sd.register(None)
    assert "PluginError" not in str(info.value)
    assert str(info.value).startswith("cannot register None: it implements no ")
    assert "softmax_dispatch_backends" in str(info.value)


def test_strict_mode_value_is_parsed_strictly(fresh_registry, monkeypatch):
    monkeypatch.setenv("SOFTMAX_DISPATCH_STRICT_PLUGINS", "yes")
    with pytest.raises(ValueError, match="SOFTMAX_DISPATCH_STRICT_PLUGINS"):
        sd.backends()


def test_register_and_unregister_at_run_time(fresh_registry):
    seen = []

    def recording_softmax(xp, x, axes, where=None, out=None):
        seen.append(x.shape)
        return _ops.softmax(xp, x, axes, where)

    handle = sd.register(_numpy_backend("recorder", kernels={"softmax": recording_softmax}))
    info = sd.get_backend("recorder")
    assert info.distribution is None and info.available
    y = sd.softmax(np.ones((2, 3)), backend="recorder")
    np.testing.assert_allclose(y, np.full((2, 3), 1 / 3))
    assert seen == [(2, 3)]
    sd.unregister(handle)
    with pytest.raises(LookupError, match="recorder"):
        sd.get_backend("recorder")
    with pytest.raises(ValueError, match="not registered"):
        sd.unregister(handle)


def test_register_plugin_object_with_hookimpl(fresh_registry):
    class Plugin:
        @sd.hookimpl
        def softmax_dispatch_backends(self):
            yield _numpy_backend("obj_a")
            yield _numpy_backend("obj_b")

    plugin = sd.register(Plugin())
    assert {"obj_a", "obj_b"} <= {b.name for b in sd.backends()}
    sd.unregister(plugin)
    assert not {"obj_a", "obj_b"} & {b.name for b in sd.backends()}


def test_register_rejects_duplicate_name_and_wrong_objects(fresh_registry):
    with pytest.raises(sd.PluginError, match="already provided by plugin 'numpy'"):
        sd.register(_numpy_backend("numpy"))

    class Bad:
        @sd.hookimpl
        def softmax_dispatch_backends(self):
            yield "not a backend"

    with pytest.raises(sd.PluginError, match=r"expected softmax_dispatch\.Backend"):
        sd.register(Bad())
    # nothing half-registered is left behind
    assert sd.get_backend("numpy").distribution == "softmax-dispatch"


def test_higher_priority_runtime_backend_takes_over_and_cache_is_invalidated(fresh_registry):
    x = np.zeros(3)
    assert _dispatch.resolve(x, (), None)[0].name == "numpy"  # fills the per-type cache
    handle = sd.register(_numpy_backend("fast_numpy", priority=100))
    assert _dispatch.resolve(x, (), None)[0].name == "fast_numpy"
    sd.unregister(handle)
    assert _dispatch.resolve(x, (), None)[0].name == "numpy"


@pytest.mark.parametrize(
    ("kwargs", "exc", "fragment"),
    [
        ({"name": "not an id"}, ValueError, "identifier"),
        ({"owns": 3}, TypeError, "owns must be callable"),
        ({"namespace": "numpy"}, TypeError, "namespace must be callable"),
        ({"priority": 1.5}, TypeError, "priority must be an int"),
        ({"kernels": {"softmx": print}}, ValueError, "unknown kernel name"),
        ({"kernels": {"softmax": 1}}, TypeError, "not callable"),
    ],
)
def test_backend_is_validated_on_construction(kwargs, exc, fragment):
    base = {"name": "ok", "owns": array_api_compat.is_numpy_array}
    with pytest.raises(exc, match=fragment):
        sd.Backend(**{**base, **kwargs})


def test_backend_is_frozen():
    b = _numpy_backend("frozen", kernels={"softmax": _ops.softmax})
    with pytest.raises(AttributeError):
        b.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        b.kernels["log_softmax"] = _ops.log_softmax  # type: ignore[index]


def test_unavailable_backend_reports_reason_and_refuses_to_run(fresh_registry):
    def no_devices():
        raise sd.BackendUnavailable("no accelerator on this machine")

    handle = sd.register(_numpy_backend("gpu_only", devices=no_devices))
    info = sd.get_backend("gpu_only")
    assert not info.available and info.reason == "no accelerator on this machine"
    for choose in ("argument", "context"):
        with pytest.raises(sd.BackendUnavailable, match="unavailable: no accelerator") as info:
            if choose == "argument":
                sd.softmax(np.zeros(2), backend="gpu_only")
            else:
                with sd.use_backend("gpu_only"):
                    sd.softmax(np.zeros(2))
        assert "softmax-dispatch backends" in str(info.value)
    sd.unregister(handle)


@pytest.mark.parametrize(
    ("backend", "module", "fix"),
    [
        ("torch", "torch", "pip install torch"),
        ("jax", "jax", "pip install jax"),
        ("dask", "dask.array", "pip install 'dask[array]'"),
        ("array_api_strict", "array_api_strict", "pip install array-api-strict"),
    ],
)
def test_a_missing_library_says_how_to_install_it(
    fresh_registry, monkeypatch, backend, module, fix
):
    monkeypatch.setitem(sys.modules, module, None)  # import now fails as if not installed
    info = sd.get_backend(backend)
    assert not info.available
    assert "is not installed" in info.reason and fix in info.reason
    with pytest.raises(sd.BackendUnavailable, match="is not installed"):
        sd.softmax(np.zeros(2), backend=backend)


def test_cupy_backend_is_unavailable_with_reason_here(fresh_registry):
    info = sd.get_backend("cupy")
    try:
        import cupy
        import cupy.cuda.runtime

        has_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        has_gpu = False
    if has_gpu:
        pytest.skip("a GPU is present: CuPy is available here")
    assert not info.available
    assert "CuPy" in info.reason
    assert info.devices == ()


def test_cupy_without_driver_is_reported(fresh_registry, monkeypatch):
    """Simulate CuPy installed but with no usable driver."""
    import types

    class CUDARuntimeError(RuntimeError):
        pass

    def get_count():
        raise CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")

    fake = types.ModuleType("cupy")
    fake.__version__ = "99.0"
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_count))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    info = sd.get_backend("cupy")
    assert not info.available
    assert "CuPy 99.0 is installed but CUDA cannot be used" in info.reason
    assert "cudaErrorInsufficientDriver" in info.reason


def test_importing_and_using_numpy_never_imports_cupy_torch_or_jax():
    code = (
        "import sys, numpy as np, softmax_dispatch as sd\n"
        "sd.softmax(np.ones(3)); sd.softmax_cross_entropy(np.ones((2, 3)), np.array([0, 1]))\n"
        "print(sorted(m for m in ('cupy', 'torch', 'jax', 'dask') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def _softmax_sum_in_child(queue) -> None:
    queue.put(float(sd.softmax(np.zeros((3, 4))).sum()))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:os.fork.. was called:RuntimeWarning")
def test_a_child_forked_while_another_thread_loads_plugins_loads_them_itself():
    """The registry's lock, held by a thread that does not exist in the child, must not
    leave the child waiting forever; the child loads the plugins from the start."""
    import multiprocessing
    import threading

    from softmax_dispatch import _plugins

    _plugins._reset()
    reg = _plugins._registry
    holding, go_on = threading.Event(), threading.Event()

    def loader_in_progress():
        with reg.lock:  # as `_ensure_loaded` holds it while importing entry points
            holding.set()
            go_on.wait(120)

    t = threading.Thread(target=loader_in_progress, daemon=True)
    t.start()
    assert holding.wait(30)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_softmax_sum_in_child, args=(queue,))
    try:
        child.start()
        assert queue.get(timeout=60) == pytest.approx(3.0)
    finally:
        go_on.set()
        t.join(30)
        child.join(10)
        if child.is_alive():
            child.kill()
    assert sd.softmax(np.zeros(2)).sum() == pytest.approx(1.0)  # the parent goes on too
