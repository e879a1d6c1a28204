"""What the suite runs on: a (backend, device, kernel path) `Target`, and how the
command-line options select targets."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from .._backend import BackendInfo, device_name
from .._dispatch import kernel_variant
from .._plugins import backends, get_backend
from .._validate import reads_are_cheap, supports_item_assignment

__all__ = ["Target", "Unrunnable", "select_targets"]

#: Floating dtypes the suite knows how to hold to a tolerance, in test order.
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


class Unrunnable(Exception):
    """A backend or device named explicitly that cannot run; the message says why."""


@dataclass(frozen=True)
class Target:
    """One backend on one device, through one kernel path.

    ``path`` is ``"fused"`` (the backend's own kernels), the name of one of the backend's
    ``kernel_variants`` (e.g. NumPy's ``"pure"``: its pure-NumPy kernels beside the
    compiled ones), ``"generic"`` (the written-once kernels on the backend's namespace)
    or ``"jit"`` (generic, under ``jax.jit``).
    """

    backend: str
    device: Any
    path: str
    xp: ModuleType
    info: BackendInfo = field(repr=False, compare=False)

    @property
    def device_name(self) -> str:
        return device_name(self.device)

    @property
    def id(self) -> str:
        return f"{self.backend}-{self.device_name}-{self.path}"

    # -- dtypes --------------------------------------------------------------------
    @functools.cached_property
    def dtypes(self) -> tuple[str, ...]:
        """Floating dtypes this device supports, asked of the namespace at run time."""
        xp = self.xp
        names: set[str] = set()
        info = getattr(xp, "__array_namespace_info__", None)
        if info is not None:
            try:
                names |= set(info().dtypes(device=self.device, kind="real floating"))
            except Exception:
                names |= set(info().dtypes(kind="real floating"))
        for name in ("float16", "bfloat16"):  # outside the standard: probe them
            if hasattr(xp, name):
                try:
                    xp.zeros(1, dtype=getattr(xp, name), device=self.device)
                    names.add(name)
                except Exception:
                    pass
        return tuple(n for n in FLOAT_DTYPES if n in names)

    def dtype(self, name: str) -> Any:
        return getattr(self.xp, name)

    @functools.cached_property
    def default_float(self) -> str:
        info = self.xp.__array_namespace_info__()
        dt = info.default_dtypes(device=self.device)["real floating"]
        return next(n for n in FLOAT_DTYPES if hasattr(self.xp, n) and self.dtype(n) == dt)

    @functools.cached_property
    def writeable(self) -> bool:
        """Whether ``out=`` can be used: the library's arrays support item assignment."""
        return supports_item_assignment(self.xp.zeros(1, device=self.device))

    @property
    def lazy(self) -> bool:
        """Values are not read while a call is made (anything under jit; Dask, Cubed,
        JAX, CuPy: the backend's ``cheap_reads``), so class indices are not range-checked
        eagerly."""
        cheap = self.info.backend.cheap_reads or reads_are_cheap
        return self.path == "jit" or not cheap(self.xp.zeros(1, device=self.device))

    # -- moving data -----------------------------------------------------------------
    def asarray(self, values: Any, dtype: str | Any | None = None) -> Any:
        """Host data as an array of this target, on its device. ``dtype`` by name or object;
        host floats go through float64, integers and booleans keep their kind."""
        host = np.asarray(values)
        if isinstance(dtype, str):
            dtype = self.dtype(dtype)
        if dtype is None and host.dtype.kind == "f":
            dtype = self.dtype("float64") if "float64" in self.dtypes else self.dtype("float32")
        if host.dtype.kind == "f" and "float64" not in self.dtypes:
            host = host.astype(np.float32)
        return self.from_host(host, dtype)

    def from_host(self, host: np.ndarray, dtype: Any = None) -> Any:
        """A host array on this target's device, through the backend's ``from_numpy``
        where it has one (Cubed keeps large inputs out of its in-memory limit that way)."""
        convert = self.info.backend.from_numpy
        if convert is None:
            arr = self.xp.asarray(host, dtype=dtype, device=self.device)
        else:
            arr = convert(host, self.device)
        # a library may ignore asarray's dtype= (Cubed 0.27 does); the dtype is the test's
        return arr if dtype is None or arr.dtype == dtype else self.xp.astype(arr, dtype)

    def indices(self, values: Any) -> Any:
        """Host integers as class indices, in the device's default indexing dtype."""
        info = self.xp.__array_namespace_info__()
        dtype = info.default_dtypes(device=self.device)["indexing"]
        return self.from_host(np.asarray(values), dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        """An array of this target back on the host (floats widened to float64)."""
        xp = self.xp
        if hasattr(xp, "bfloat16") and a.dtype == xp.bfloat16:
            a = xp.astype(a, xp.float32)
        convert = self.info.backend.to_numpy
        if convert is not None:
            out = convert(a)
        else:
            try:
                out = np.from_dlpack(a)
            except Exception:
                out = np.asarray(a)
        out = np.array(out, copy=True)
        return out.astype(np.float64) if out.dtype.kind == "f" else out

    def exact(self, values: Any, dtype: str) -> tuple[Any, np.ndarray]:
        """``(array, host)``: host data rounded to ``dtype`` on the device, and the exact
        values the device holds, as float64 on the host (the reference's input)."""
        arr = self.asarray(values, dtype)
        return arr, self.to_numpy(arr)

    # -- calling the API -------------------------------------------------------------
    def call(self, fn: Callable[..., Any], *arrays: Any, **kwargs: Any) -> Any:
        """``fn(*arrays, backend=<this backend>, **kwargs)`` through this target's path.

        Under ``"jit"``, array arguments (positional and keyword) are traced and the
        others are static.
        """
        kwargs = dict(kwargs, backend=self.backend)
        if self.path == "fused":
            return fn(*arrays, **kwargs)
        if self.path != "jit":  # "generic", or one of the backend's kernel variants
            with kernel_variant(self.path):
                return fn(*arrays, **kwargs)
        traced = {k: v for k, v in kwargs.items() if _is_array(v)}
        static = tuple(sorted((k, v) for k, v in kwargs.items() if k not in traced))
        array_pos = tuple(i for i, a in enumerate(arrays) if _is_array(a))
        fixed = tuple(None if i in array_pos else a for i, a in enumerate(arrays))
        try:
            jitted = _jitted(fn, array_pos, fixed, static)
        except TypeError:  # an unhashable static argument: traced afresh
            jitted = _jitted.__wrapped__(fn, array_pos, fixed, static)
        return jitted(tuple(arrays[i] for i in array_pos), traced)

    def same_place(self, result: Any, like: Any) -> None:
        """Assert ``result`` is an array of this backend, on this device."""
        assert self.info.backend.owns(result), (
            f"result is a {type(result).__module__}.{type(result).__qualname__}, "
            f"not an array of backend {self.backend!r}"
        )
        dev = array_api_compat.device(result)
        assert dev == self.device, (
            f"result is on device {device_name(dev)}, input was on {self.device_name}"
        )
        assert array_api_compat.array_namespace(result) is array_api_compat.array_namespace(like), (
            "result and input have different array namespaces"
        )


@functools.lru_cache(maxsize=1024)
def _jitted(
    fn: Callable[..., Any],
    array_pos: tuple[int, ...],
    fixed: tuple[Any, ...],
    static: tuple[tuple[str, Any], ...],
) -> Callable[..., Any]:
    """``fn`` under ``jax.jit``, its arrays (at ``array_pos`` and as keywords) traced and
    the rest fixed: one function per call form, so that JAX reuses what it compiled for
    the same form and shapes instead of tracing every call afresh."""
    import jax

    def run(dynamic: tuple[Any, ...], traced_kw: dict[str, Any]) -> Any:
        args = list(fixed)
        for i, a in zip(array_pos, dynamic):
            args[i] = a
        return fn(*args, **dict(static), **traced_kw)

    return jax.jit(run)


def _is_array(a: Any) -> bool:
    return array_api_compat.is_array_api_obj(a) and not isinstance(a, (int, float))


def _paths(info: BackendInfo, xp: ModuleType) -> list[str]:
    paths = ["fused"] if info.backend.kernels else []
    paths += list(info.backend.variant_tables())
    paths.append("generic")
    if array_api_compat.is_jax_namespace(xp):
        paths.append("jit")
    return paths


def _namespace(info: BackendInfo) -> ModuleType:
    from .._plugins import entry, namespace_of

    xp = namespace_of(entry(info.name))
    if xp is None:
        raise Unrunnable(
            f"backend {info.name!r} has no namespace of its own (a catch-all): check the "
            "backends of the libraries it serves instead"
        )
    return xp


def select_targets(
    names: Sequence[str], device: str | None
) -> tuple[list[Target], list[tuple[str, str]]]:
    """``(targets, skipped)``: what to run, and ``(backend, reason)`` for each backend
    that cannot run. Backends or a device named explicitly that cannot run raise
    `Unrunnable`; with no names, every available backend with a namespace is selected."""
    explicit = bool(names)
    if explicit:
        infos = []
        for n in names:
            try:
                infos.append(get_backend(n))
            except LookupError as exc:
                raise Unrunnable(str(exc).strip('"')) from None
    else:
        infos = backends()
    targets: list[Target] = []
    skipped: list[tuple[str, str]] = []
    for info in infos:
        if not info.available:
            if explicit:
                raise Unrunnable(f"backend {info.name!r} cannot run here: {info.reason}")
            skipped.append((info.name, info.reason or "unavailable"))
            continue
        try:
            xp = _namespace(info)
        except Unrunnable:
            if explicit:
                raise
            continue  # a catch-all is checked through the backends of what it serves
        devices = list(info.devices)
        if device is not None:
            devices = [d for d in devices if device_name(d) == device]
            if not devices:
                known = ", ".join(device_name(d) for d in info.devices) or "none"
                msg = f"backend {info.name!r} has no device {device!r}; its devices: {known}"
                if explicit:
                    raise Unrunnable(msg)
                skipped.append((info.name, msg))
                continue
        for d in devices:
            targets.extend(Target(info.name, d, p, xp, info) for p in _paths(info, xp))
    if device is not None and not targets:
        raise Unrunnable(f"no available backend has a device {device!r}")
    return targets, skipped
