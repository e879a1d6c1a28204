"""Plugin loading and the backend registry.

Plugins are found through the ``softmax_dispatch`` entry-point group and loaded lazily,
on first use, one at a time: a plugin that fails to import, raises in its hook, yields
something that is not a `Backend`, or reuses a taken name is recorded as a
`PluginFailure` and the others still load. ``SOFTMAX_DISPATCH_STRICT_PLUGINS=1`` turns
those failures into exceptions.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

import pluggy

from . import _hookspec
from ._backend import Backend, BackendInfo, BackendUnavailable, PluginFailure, type_name
from ._hookspec import ENTRY_POINT_GROUP, PROJECT, hookimpl

__all__ = [
    "PluginError",
    "PluginWarning",
    "backends",
    "failed_plugins",
    "get_backend",
    "register",
    "unregister",
]

STRICT_ENV = "SOFTMAX_DISPATCH_STRICT_PLUGINS"
_CORE_DISTRIBUTION = "softmax-dispatch"


class PluginError(RuntimeError):
    """A plugin could not be loaded (raised in strict mode and by `register`).

    A `RuntimeError`. Plugins found through the entry-point group that fail to load are
    skipped with a `PluginWarning`; with ``SOFTMAX_DISPATCH_STRICT_PLUGINS=1`` every call
    raises this error instead, for as long as a plugin is broken. `register` always raises
    it for a broken plugin, since its caller is present.

    See Also
    --------
    PluginWarning : The warning when strict mode is off.
    failed_plugins : The plugins that failed to load, and why.

    Examples
    --------
    >>> import softmax_dispatch as sd
    >>> class NoHook:  # a plugin must implement softmax_dispatch_backends
    ...     pass
    >>> try:
    ...     sd.register(NoHook())
    ... except sd.PluginError as exc:
    ...     print(str(exc).split(": ", 1)[1])
    it implements no softmax_dispatch_backends hook (decorate it with softmax_dispatch.hookimpl)
    """


class PluginWarning(UserWarning):
    """A plugin found through the entry-point group could not be loaded.

    A `UserWarning`, emitted once per broken plugin when the plugins load (on first use),
    naming the plugin and its distribution; the plugin is skipped and the other backends
    keep working. ``softmax-dispatch backends`` and `failed_plugins` show the reason. Turn it
    into an error with a warnings filter, or make every call raise `PluginError` with
    ``SOFTMAX_DISPATCH_STRICT_PLUGINS=1``.

    See Also
    --------
    PluginError : Raised instead in strict mode.
    failed_plugins : The plugins that failed to load, and why.

    Examples
    --------
    >>> import warnings
    >>> import softmax_dispatch as sd
    >>> issubclass(sd.PluginWarning, UserWarning)
    True
    >>> with warnings.catch_warnings():  # a broken plugin is then an error, not a warning
    ...     warnings.simplefilter("error", sd.PluginWarning)
    ...     failures = sd.failed_plugins()  # loads the plugins if not yet loaded
    """


@dataclass
class _Entry:
    backend: Backend
    plugin: str
    distribution: str | None
    version: str | None
    probed: tuple[tuple[Any, ...], str | None] | None = None
    module: ModuleType | None = None


@dataclass
class _Registry:
    lock: threading.RLock = field(default_factory=threading.RLock)
    pm: pluggy.PluginManager | None = None
    entries: dict[str, _Entry] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)
    #: Entries by descending priority (ties: registration order); rebuilt on change.
    ranked: tuple[_Entry, ...] = ()
    #: Bumped on every change so that dispatch caches know to forget.
    generation: int = 0
    #: Set last, once every entry point has been loaded: until then readers wait.
    loaded: bool = False
    #: In strict mode with a broken plugin: raised by every call (see `raise_if_strict`).
    strict_error: PluginError | None = None


_registry = _Registry()


def _after_fork_in_child() -> None:
    """The child of a fork has only the forking thread: a lock another thread held at the
    fork (while loading plugins, say) would stay held forever. Take a new lock, and load
    again from the start if loading had not finished."""
    reg = _registry
    reg.lock = threading.RLock()
    if not reg.loaded:
        reg.pm, reg.ranked = None, ()
        reg.entries.clear()
        reg.failures.clear()
        reg.generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _strict() -> bool:
    raw = os.environ.get(STRICT_ENV, "")
    if raw in ("", "0"):
        return False
    if raw == "1":
        return True
    raise ValueError(f"{STRICT_ENV} must be '0' or '1' (or unset), got {raw!r}")


def _core_version() -> str | None:
    from . import __version__

    return __version__


class _GenericPlugin:
    """The core's catch-all: any array array-api-compat recognises, lowest priority."""

    @hookimpl
    def softmax_dispatch_backends(self) -> Iterable[Backend]:
        import array_api_compat

        yield Backend(
            name="array_api",
            owns=array_api_compat.is_array_api_obj,
            namespace=None,
            priority=-1_000_000,
            description="generic kernels on any array array-api-compat recognises",
        )


def _format_exc(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _backends_of(pm: pluggy.PluginManager, plugin: object) -> list[object]:
    impls = [
        impl for impl in pm.hook.softmax_dispatch_backends.get_hookimpls() if impl.plugin is plugin
    ]
    if not impls:
        raise PluginError(
            "it implements no softmax_dispatch_backends hook (decorate it with "
            "softmax_dispatch.hookimpl)"
        )
    found: list[object] = []
    for impl in impls:
        result = impl.function()
        found.extend(result if result is not None else ())
    return found


def _rerank(reg: _Registry) -> None:
    order = list(reg.entries.values())
    # Stable sort: equal priorities keep registration order.
    reg.ranked = tuple(sorted(order, key=lambda e: -e.backend.priority))
    reg.generation += 1


def _add(
    reg: _Registry,
    plugin: object,
    plugin_name: str,
    distribution: str | None,
    version: str | None,
) -> list[PluginFailure]:
    """Register ``plugin`` and its backends; returns the problems found (nothing raised)."""
    assert reg.pm is not None
    problems: list[PluginFailure] = []

    def fail(msg: str) -> None:
        problems.append(PluginFailure(plugin_name, distribution, version, msg))

    try:
        reg.pm.register(plugin, name=plugin_name)
        yielded = _backends_of(reg.pm, plugin)
    except Exception as exc:  # a broken plugin must not take the others down
        if reg.pm.is_registered(plugin):
            reg.pm.unregister(plugin)
        fail(str(exc) if isinstance(exc, PluginError) else _format_exc(exc))
        return problems
    for obj in yielded:
        if not isinstance(obj, Backend):
            fail(
                f"its hook yielded {type_name(obj)} {obj!r:.80}, expected softmax_dispatch.Backend"
            )
            continue
        taken = reg.entries.get(obj.name)
        if taken is not None:
            fail(
                f"backend name {obj.name!r} is already provided by plugin {taken.plugin!r} "
                f"(distribution {taken.distribution or 'registered at run time'}); "
                f"this one from {distribution or 'registered at run time'} was not loaded"
            )
            continue
        reg.entries[obj.name] = _Entry(obj, plugin_name, distribution, version)
    return problems


def _ensure_loaded() -> _Registry:
    reg = _registry
    if reg.loaded:
        return reg
    with reg.lock:  # other threads wait here until loading has finished
        if reg.loaded or reg.pm is not None:  # loaded, or being loaded by this thread
            return reg
        strict = _strict()
        pm = pluggy.PluginManager(PROJECT)
        pm.add_hookspecs(_hookspec)
        reg.pm = pm
        problems = _add(reg, _GenericPlugin(), "array_api", _CORE_DISTRIBUTION, _core_version())
        eps = entry_points(group=ENTRY_POINT_GROUP)

        # Our own distribution first, then by distribution and name: deterministic.
        def key(ep: Any) -> tuple[bool, str, str]:
            dist = ep.dist.name if ep.dist is not None else ""
            return (dist != _CORE_DISTRIBUTION, dist, ep.name)

        for ep in sorted(eps, key=key):
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            try:
                module = ep.load()
            except Exception as exc:
                problems.append(
                    PluginFailure(ep.name, dist, version, f"import failed: {_format_exc(exc)}")
                )
                continue
            problems.extend(_add(reg, module, ep.name, dist, version))
        reg.failures.extend(problems)
        if strict and problems:
            reg.strict_error = PluginError(
                f"{len(problems)} plugin(s) failed to load ({STRICT_ENV}=1): "
                + "; ".join(f"{p.plugin} ({p.distribution}): {p.error}" for p in problems)
            )
        _rerank(reg)
        reg.loaded = True
    # outside the lock: a warnings filter set to "error" raises here, not mid-load. In
    # strict mode every call raises instead (`raise_if_strict`).
    for p in problems if reg.strict_error is None else ():
        origin = f"{p.distribution or 'unknown distribution'} {p.version or ''}".strip()
        warnings.warn(
            f"softmax_dispatch: plugin {p.plugin!r} ({origin}) failed to load and was "
            f"skipped: {p.error}. Run `softmax-dispatch backends` to see every plugin",
            PluginWarning,
            stacklevel=1,  # plugins load lazily, from whichever call comes first
        )
    return reg


def loaded_registry() -> _Registry:
    """The registry, its plugins loaded."""
    return _ensure_loaded()


def raise_if_strict(reg: _Registry) -> None:
    """In strict mode, a broken plugin fails every call, not just the first."""
    if reg.strict_error is not None:
        raise PluginError(str(reg.strict_error))


def _reset() -> None:
    """Forget every plugin; the next use reloads them (for tests)."""
    global _registry
    with _registry.lock:
        # generations keep counting up across registries: no stale dispatch cache matches
        _registry = _Registry(generation=_registry.generation + 1)


def ranked() -> tuple[_Entry, ...]:
    """Registered backends by descending priority."""
    return _ensure_loaded().ranked


def generation() -> int:
    return _ensure_loaded().generation


def entry(name: str) -> _Entry:
    """The registry entry for ``name``; `LookupError` listing the known names otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"a backend name must be a str, got {type(name).__name__} {name!r}")
    reg = _ensure_loaded()
    try:
        return reg.entries[name]
    except KeyError:
        known = ", ".join(repr(n) for n in reg.entries)
        raise LookupError(f"unknown backend {name!r}; registered backends: {known}") from None


def namespace_of(ent: _Entry) -> ModuleType | None:
    """The backend's namespace module, imported once."""
    if ent.module is None and ent.backend.namespace is not None:
        ent.module = ent.backend.namespace()
    return ent.module


def probe(ent: _Entry) -> tuple[tuple[Any, ...], str | None]:
    """``(devices, reason)``; reason is None when the backend can run. Cached."""
    if ent.probed is not None:
        return ent.probed
    b = ent.backend
    try:
        if b.devices is not None:
            devs = tuple(b.devices())
        elif b.namespace is None:
            devs = ()  # a catch-all runs wherever the array it is given lives
        else:
            ns = namespace_of(ent)
            info = getattr(ns, "__array_namespace_info__", None)
            if info is None:
                raise BackendUnavailable(
                    f"namespace {getattr(ns, '__name__', ns)!r} has no "
                    "__array_namespace_info__ and the backend gives no devices()"
                )
            devs = tuple(info().devices())
        reason = None
        if not devs and not (b.devices is None and b.namespace is None):
            reason = "no devices found"
    except BackendUnavailable as exc:
        devs, reason = (), str(exc)
    except Exception as exc:
        devs, reason = (), _format_exc(exc)
    ent.probed = (devs, reason)
    return ent.probed


def _info(ent: _Entry) -> BackendInfo:
    devs, reason = probe(ent)
    return BackendInfo(
        name=ent.backend.name,
        available=reason is None,
        devices=devs,
        reason=reason,
        priority=ent.backend.priority,
        distribution=ent.distribution,
        version=ent.version,
        description=ent.backend.description,
        kernels_status=ent.backend.kernels_status,
        backend=ent.backend,
    )


def backends() -> list[BackendInfo]:
    """Every registered backend, highest priority first, with availability and devices.

    Loads the plugins on first use. Probing a backend's devices imports its library (once);
    a backend that cannot run here is listed, unavailable, with the reason.

    Returns
    -------
    list of BackendInfo
        One entry per registered backend, by descending priority (ties: registration
        order); the catch-all ``array_api`` backend comes last.

    Raises
    ------
    ValueError
        If ``SOFTMAX_DISPATCH_STRICT_PLUGINS`` is set to something other than ``0`` or
        ``1`` (read when the plugins load, on first use). In strict mode, listing still
        works while a plugin is broken, so that you can see why.

    See Also
    --------
    get_backend : One backend by name.
    failed_plugins : The plugins that could not be loaded.

    Examples
    --------
    >>> import softmax_dispatch as sd
    >>> [b.name for b in sd.backends() if b.name in ("numpy", "array_api")]
    ['numpy', 'array_api']
    >>> sd.get_backend("numpy").available
    True
    """
    return [_info(e) for e in ranked()]


def get_backend(name: str) -> BackendInfo:
    """The registered backend called ``name``, with its availability and devices.

    Loads the plugins on first use and probes the backend's devices (once), importing its
    library; a backend that cannot run here is reported with the reason, not raised.

    Parameters
    ----------
    name : str
        The backend's name, as listed by `backends`.

    Returns
    -------
    BackendInfo
        What the registry knows about it: availability, devices, the reason it cannot run
        here, priority, distribution and version.

    Raises
    ------
    LookupError
        If no registered backend is called ``name``; the message lists the known ones.
    TypeError
        If ``name`` is not a str.

    See Also
    --------
    backends : Every registered backend.

    Examples
    --------
    >>> import softmax_dispatch as sd
    >>> info = sd.get_backend("numpy")
    >>> info.available, info.priority
    (True, 0)
    >>> try:
    ...     sd.get_backend("nope")
    ... except LookupError as exc:
    ...     print(str(exc).split(";")[0])
    unknown backend 'nope'
    """
    return _info(entry(name))


def failed_plugins() -> list[PluginFailure]:
    """The plugins that could not be loaded, with the reason.

    Loads the plugins on first use. Each failure was also warned once as a
    `PluginWarning` (or, with ``SOFTMAX_DISPATCH_STRICT_PLUGINS=1``, makes every call
    raise `PluginError`); plugins registered with `register` raise instead, and never
    appear here.

    Returns
    -------
    list of PluginFailure
        One entry per plugin that failed to load from the entry-point group, in loading
        order; empty when every plugin loaded.

    See Also
    --------
    PluginWarning : Warned once for each failure.
    backends : The backends that did load.

    Examples
    --------
    >>> import softmax_dispatch as sd
    >>> for failure in sd.failed_plugins():
    ...     print(failure.plugin, failure.distribution, failure.error)
    """
    return list(_ensure_loaded().failures)


class _BackendPlugin:
    """Wraps a bare `Backend` so that ``register(Backend(...))`` works."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @hookimpl
    def softmax_dispatch_backends(self) -> Iterable[Backend]:
        yield self.backend


def register(plugin: object) -> object:
    """Register a plugin, or a bare `Backend`, at run time, for notebooks and tests.

    Unlike entry-point loading, a broken plugin raises here, since the caller is present,
    and registers nothing. The new backends join the registry at once, ranked by priority.

    Parameters
    ----------
    plugin : object
        An object or module with a ``softmax_dispatch_backends`` hook implementation
        (decorated with `hookimpl`), or a bare `Backend`.

    Returns
    -------
    object
        The handle to pass to `unregister`: ``plugin`` itself, or for a bare `Backend` the
        plugin object made to wrap it.

    Raises
    ------
    PluginError
        If the plugin implements no hook, its hook raises or yields something other than a
        `Backend`, or a backend name it yields is already taken.
    ValueError
        If ``plugin`` is already registered.

    See Also
    --------
    unregister : Remove it again.
    hookimpl : The decorator for a plugin's hook.

    Examples
    --------
    >>> import numpy as np, array_api_compat.numpy, softmax_dispatch as sd
    >>> handle = sd.register(sd.Backend(
    ...     name="mine", owns=array_api_compat.is_numpy_array,
    ...     namespace=lambda: array_api_compat.numpy))
    >>> sd.softmax(np.array([0.0, 0.0]), backend="mine")
    array([0.5, 0.5])
    >>> sd.unregister(handle)
    """
    if isinstance(plugin, Backend):
        plugin = _BackendPlugin(plugin)
    reg = _ensure_loaded()
    assert reg.pm is not None
    with reg.lock:
        if reg.pm.is_registered(plugin):
            raise ValueError(f"plugin {plugin!r} is already registered")
        name = f"runtime:{id(plugin):x}"
        before = set(reg.entries)
        problems = _add(reg, plugin, name, None, None)
        if problems:
            for added in set(reg.entries) - before:
                del reg.entries[added]
            if reg.pm.is_registered(plugin):
                reg.pm.unregister(plugin)
            raise PluginError(
                f"cannot register {plugin!r:.80}: " + "; ".join(p.error for p in problems)
            )
        _rerank(reg)
    return plugin


def unregister(plugin: object) -> None:
    """Remove a plugin registered with `register` (or loaded from an entry point).

    Its backends leave the registry: after this returns, no call made from then on runs
    one of them, even while other threads are dispatching.

    Parameters
    ----------
    plugin : object
        The handle `register` returned (or a plugin module loaded from an entry point).

    Raises
    ------
    ValueError
        If ``plugin`` is not registered.

    See Also
    --------
    register : Register a plugin at run time.

    Examples
    --------
    >>> import numpy as np, array_api_compat.numpy, softmax_dispatch as sd
    >>> handle = sd.register(sd.Backend(
    ...     name="mine", owns=array_api_compat.is_numpy_array,
    ...     namespace=lambda: array_api_compat.numpy))
    >>> sd.unregister(handle)
    >>> try:
    ...     sd.get_backend("mine")
    ... except LookupError:
    ...     print("gone")
    gone
    """
    reg = _ensure_loaded()
    assert reg.pm is not None
    with reg.lock:
        if not reg.pm.is_registered(plugin):
            raise ValueError(f"plugin {plugin!r} is not registered")
        name = reg.pm.get_name(plugin)
        reg.pm.unregister(plugin)
        for key in [k for k, e in reg.entries.items() if e.plugin == name]:
            del reg.entries[key]
        _rerank(reg)
