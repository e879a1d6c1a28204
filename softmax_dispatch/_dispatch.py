"""Choosing the backend for a call, and checking that the call's arrays belong to it.

Rules, first that applies: ``backend=``; `use_backend`; ``SOFTMAX_DISPATCH_BACKEND``;
the highest-priority backend that owns the array (cached per array type).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import array_api_compat

from . import _ops, _plugins
from ._backend import KERNEL_NAMES, BackendUnavailable, type_name

__all__ = [
    "BACKEND_ENV",
    "Resolved",
    "generic_kernels",
    "kernel_variant",
    "quick",
    "resolve",
    "use_backend",
]

BACKEND_ENV = "SOFTMAX_DISPATCH_BACKEND"

_chosen: ContextVar[str | None] = ContextVar("softmax_dispatch_backend", default=None)
#: The kernel path a block asks for: None (the backend's own kernels), "generic", or the
#: name of one of the backend's kernel variants.
_path: ContextVar[str | None] = ContextVar("softmax_dispatch_kernel_path", default=None)
#: How many `use_backend` / `kernel_variant` blocks are open, in any thread. While none
#: is, dispatch reads no ContextVar: a plain global read is cheaper, and traceable by
#: torch.compile (which cannot trace ContextVar.get).
_open_blocks = 0
_blocks_lock = threading.Lock()


@contextlib.contextmanager
def _block(var: ContextVar[Any], value: Any) -> Iterator[None]:
    global _open_blocks
    with _blocks_lock:
        _open_blocks += 1
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)
        with _blocks_lock:
            _open_blocks -= 1


_UNREAD = object()
_env_value: Any = _UNREAD


@dataclass(frozen=True)
class Resolved:
    """A backend ready to run: its namespace (None: per array), its kernel table, and
    the tables of its other kernel paths ("generic" and its variants)."""

    name: str
    owns: Callable[[Any], bool]
    xp: ModuleType | None
    kernels: dict[str, Callable[..., Any]]
    paths: dict[str, dict[str, Callable[..., Any]]]
    device: Callable[[Any], Any] = array_api_compat.device
    cheap_reads: Callable[[Any], bool] | None = None
    accepts: Callable[[Any], bool] | None = None
    #: The backend can run here (``backend=`` naming one that cannot is an error).
    available: bool = True
    #: The backend runs on one device: arrays it owns cannot come from two.
    single_device: bool = False
    #: dtypes a call found to be real floating (filled as calls see them), so that the
    #: common call asks nothing of the namespace.
    floats: set[Any] = field(default_factory=set, compare=False)

    def takes(self, label: str, a: object) -> bool:
        """Whether ``a`` may come with this backend's arrays: owned, or accepted as it is
        (never for ``out=``, which must be the backend's own array)."""
        return self.owns(a) or (label != "out" and self.accepts is not None and self.accepts(a))


@dataclass
class _Cache:
    """Resolutions for one generation of the registry. A registry change makes a new one:
    a thread still resolving against the old generation can only write into the old
    cache, which no call made after the change reads (so after `unregister` returns, no
    new call dispatches to the removed backend)."""

    generation: int
    by_type: dict[type, Resolved | None]
    by_name: dict[str, Resolved]
    #: Owners for `quick`: array types (never an ndarray subclass) already dispatched by
    #: ownership to a backend with a namespace of its own.
    quick: dict[type, Resolved] = field(default_factory=dict)


_cache = _Cache(-1, {}, {})


def _env_backend() -> str | None:
    global _env_value
    if _env_value is _UNREAD:
        raw = os.environ.get(BACKEND_ENV, "").strip()
        if raw:
            try:
                _plugins.entry(raw)
            except LookupError as exc:
                raise LookupError(f"{BACKEND_ENV}={raw!r}: {exc}") from None
        _env_value = raw or None
    return _env_value


def reset() -> None:
    """Forget cached resolutions and the environment variable (for tests)."""
    global _env_value, _cache
    _env_value = _UNREAD
    _cache = _Cache(-1, {}, {})


def _current() -> _Cache:
    """The cache of the registry's current generation (a new one after any change).
    In strict mode, every call raises while a plugin is broken."""
    global _cache
    reg = _plugins.loaded_registry()
    _plugins.raise_if_strict(reg)
    cache = _cache
    if cache.generation != reg.generation:
        cache = _cache = _Cache(reg.generation, {}, {})
    return cache


def _make(ent: Any) -> Resolved:
    generic = {op: getattr(_ops, op) for op in KERNEL_NAMES}
    fused = {**generic, **ent.backend.kernel_table()}
    paths = {"generic": generic}
    for name, table in ent.backend.variant_tables().items():
        paths[name] = {**generic, **table}
    devices, reason = _plugins.probe(ent)
    return Resolved(
        name=ent.backend.name,
        owns=ent.backend.owns,
        xp=_plugins.namespace_of(ent),
        kernels=fused,
        paths=paths,
        available=reason is None,
        single_device=reason is None and len(devices) == 1,
        device=ent.backend.device_of or array_api_compat.device,
        cheap_reads=ent.backend.cheap_reads,
        accepts=ent.backend.accepts,
    )


def _named(cache: _Cache, name: str) -> Resolved:
    res = cache.by_name.get(name)
    if res is None:
        ent = _plugins.entry(name)
        _devices, reason = _plugins.probe(ent)
        if reason is not None:
            raise BackendUnavailable(
                f"backend {name!r} is unavailable: {reason}. `softmax-dispatch backends` "
                "lists every backend and why it can or cannot run here"
            )
        res = cache.by_name[name] = _make(ent)
    return res


def _owner(cache: _Cache, t: type, sample: object) -> Resolved | None:
    try:
        return cache.by_type[t]
    except KeyError:
        pass
    found = None
    for ent in _plugins.ranked():
        if ent.backend.owns(sample):
            found = cache.by_name.get(ent.backend.name) or cache.by_name.setdefault(
                ent.backend.name, _make(ent)
            )
            break
    cache.by_type[t] = found
    return found


def _owners_hint(obj: object) -> str:
    names = [e.backend.name for e in _plugins.ranked() if e.backend.owns(obj)]
    return ", ".join(repr(n) for n in names) if names else "none"


def resolve(
    x: object,
    others: tuple[tuple[str, object], ...],
    backend: str | None,
    label: str = "x",
) -> tuple[Resolved, ModuleType]:
    """The backend and namespace for a call on ``x``; ``others`` are (label, array) pairs
    that must live with ``x`` (same backend, same device)."""
    cache = _cache
    if cache.generation != _plugins._registry.generation:
        cache = _current()
    primary = label
    name = backend
    source = "backend="
    if name is None and _open_blocks:
        name = _chosen.get()
        source = "use_backend()"
    if name is None:
        name = _env_value if _env_value is not _UNREAD else _env_backend()
        source = BACKEND_ENV
    if name is not None:
        res = _named(cache, name)
        if not res.owns(x):
            _refuse_none(primary, x)
            raise TypeError(
                f"backend {name!r} (chosen by {source}) does not own {type_name(x)}; "
                f"backends that own it: {_owners_hint(x)}. Move the array to the backend's "
                "library first (e.g. with its asarray or from_dlpack): softmax_dispatch "
                "never copies across libraries or devices silently"
            )
        for lbl, a in others:
            if not res.takes(lbl, a):
                _refuse_none(lbl, a)
                raise TypeError(
                    f"{lbl} is a {type_name(a)} but backend {name!r} runs on "
                    f"{type_name(x)} ({primary}); convert {lbl} with the same library (its "
                    "asarray or from_dlpack) and device"
                )
    else:
        res = _owner(cache, type(x), x)
        if res is None:
            _refuse_none(primary, x)
            known = ", ".join(repr(e.backend.name) for e in _plugins.ranked())
            raise TypeError(
                f"no backend owns {type_name(x)}; registered backends: {known}. "
                "Pass an array (e.g. numpy.asarray(x)) or register a backend for this type"
            )
        for lbl, a in others:
            owner = _owner(cache, type(a), a)
            if (owner is None or owner.name != res.name) and not res.takes(lbl, a):
                _refuse_none(lbl, a)
                raise TypeError(
                    f"{lbl} is a {type_name(a)} but {primary} is a {type_name(x)}: all arrays in "
                    f"one call must come from one library; convert {lbl} with "
                    f"{type_name(x).split('.')[0]}'s asarray (or from_dlpack) on {primary}'s device"
                )
    if name is None and res.xp is not None:
        cache.quick[type(x)] = res  # (x is the plain array: a subclass never lands here)
    xp = res.xp if res.xp is not None else array_api_compat.array_namespace(x)
    if others:
        _same_device(res.device, x, others, primary)
    if _open_blocks:
        path = _path.get()
        if path is not None:
            res = dataclasses.replace(res, kernels=res.paths.get(path, res.kernels))
    return res, xp


def quick(x: object) -> Resolved | None:
    """The backend of a call on ``x`` that names none, while no `use_backend` or
    `kernel_variant` block is open and ``SOFTMAX_DISPATCH_BACKEND`` is unset: the owner
    of ``type(x)`` that an earlier call found, or None, when `resolve` must run (the
    first call on a type, a registry change, strict mode with a broken plugin)."""
    cache = _cache
    if _open_blocks or _env_value is not None or cache.generation != _plugins._registry.generation:
        return None
    return cache.quick.get(type(x))


def _refuse_none(label: str, obj: object) -> None:
    """The message for a missing array (checked only once dispatch has failed: free)."""
    if obj is None:
        raise TypeError(f"{label} is None; pass an array (softmax_dispatch takes arrays here)")


def _same_device(
    device: Callable[[Any], Any], x: object, others: tuple[tuple[str, object], ...], primary: str
) -> None:
    dev = device(x)
    if dev is None:
        return
    for label, a in others:
        other = device(a)
        if other is not None and other != dev:
            raise TypeError(
                f"{label} is on device {other} but {primary} is on device {dev}; move it "
                f"first, e.g. xp.asarray({label}, device=<{primary}'s device>): "
                "softmax_dispatch never copies across devices silently"
            )


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run the calls in this block on backend ``name`` (unless a call passes ``backend=``).

    Backed by a `contextvars.ContextVar`, so it is private to the thread or asyncio task.
    It ranks below a call's ``backend=`` and above ``SOFTMAX_DISPATCH_BACKEND`` and the
    backend that owns the array. The chosen backend must own the arrays of every call in
    the block: nothing is ever copied across libraries or devices.

    Parameters
    ----------
    name : str
        The backend's name, as listed by `backends`.

    Yields
    ------
    None
        Nothing; the backend is chosen while the block runs.

    Raises
    ------
    LookupError
        If no registered backend is called ``name`` (raised on entering the block).
    TypeError
        If ``name`` is not a str.

    See Also
    --------
    backends : The registered backends.
    softmax : Takes ``backend=`` for a single call.

    Examples
    --------
    >>> import numpy as np, softmax_dispatch as sd
    >>> with sd.use_backend("array_api"):
    ...     sd.softmax(np.array([0.0, 0.0]))
    array([0.5, 0.5])
    >>> try:
    ...     with sd.use_backend("nope"):
    ...         pass
    ... except LookupError as exc:
    ...     print(str(exc).split(";")[0])
    unknown backend 'nope'
    """
    _plugins.entry(name)  # unknown names fail here, not at the first call
    with _block(_chosen, name):
        yield


@contextlib.contextmanager
def kernel_variant(name: str) -> Iterator[None]:
    """Run the calls in this block on kernel path ``name``: ``"generic"`` (the written-once
    kernels, ignoring every backend's fused ones) or one of a backend's
    ``kernel_variants`` (backends without that variant keep their own kernels). Used by
    the conformance suite to check every path."""
    with _block(_path, name):
        yield


def generic_kernels() -> contextlib.AbstractContextManager[None]:
    """Ignore backends' fused kernels in this block (used to check the generic path)."""
    return kernel_variant("generic")
