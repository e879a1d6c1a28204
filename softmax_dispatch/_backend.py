"""The typed objects plugins yield (`Backend`) and the registry reports (`BackendInfo`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any

__all__ = [
    "KERNEL_NAMES",
    "Backend",
    "BackendInfo",
    "BenchCase",
    "BenchKit",
    "BenchTarget",
    "BackendUnavailable",
    "PluginFailure",
    "device_name",
    "type_name",
]

#: The ops a backend may override with a fused kernel (see ``softmax_dispatch._ops``).
KERNEL_NAMES = (
    "softmax",
    "log_softmax",
    "softmax_backward",
    "log_softmax_backward",
    "cross_entropy",
    "cross_entropy_backward",
)


class BackendUnavailable(RuntimeError):
    """Raised by ``Backend.devices`` when the backend cannot run here; the message is the reason."""


@dataclass(frozen=True)
class Backend:
    """One array library (or one way of running it) that softmax_dispatch can dispatch to.

    Plugins yield these from their ``softmax_dispatch_backends`` hook.

    Parameters
    ----------
    name
        Unique identifier, used by ``backend=``, ``use_backend`` and the CLI.
    owns
        ``owns(obj) -> bool``: a cheap test that imports nothing (for example
        ``array_api_compat.is_cupy_array``). It must depend on ``type(obj)`` only:
        the answer is cached per type.
    namespace
        ``namespace() -> module``: the Array API namespace the written-once kernels run
        on, imported lazily on first use. ``None`` (only sensible for a catch-all backend)
        means "whatever ``array_api_compat.array_namespace`` gives for the array".
    priority
        Higher wins when several backends own the same array type.
    devices
        ``devices() -> sequence``: the devices this backend can run on. It raises
        `BackendUnavailable` (or any exception, e.g. ``ImportError``) with the reason when
        the backend cannot run here. ``None``: the namespace's
        ``__array_namespace_info__().devices()``.
    to_numpy
        ``to_numpy(array) -> numpy.ndarray``: used by the conformance suite. ``None``:
        ``numpy.from_dlpack`` and then ``numpy.asarray``.
    from_numpy
        ``from_numpy(host, device) -> array``: a NumPy array as one of the backend's
        arrays, used by the conformance suite to make its inputs. ``None``: the
        namespace's ``asarray(host, device=device)``.
    synchronize
        ``synchronize(device) -> None``: waits for queued work, used by benchmarks.
    kernels
        Fused kernels that replace the generic ones op by op; keys from `KERNEL_NAMES`,
        values with the same signature as the generic kernel in ``softmax_dispatch._ops``.
        Or a function returning that mapping, called when the backend is first used (so
        that registering the backend imports nothing heavy).
    description
        One line shown by ``softmax-dispatch backends``.
    batch_invariant
        A promise that the backend's fused kernels compute each row over the last axis
        from that row alone: ``op(x)[i]`` is bit-for-bit ``op(x[i:i+1])[0]`` for every
        op. The conformance suite checks every backend and reports the result; a backend
        that promises it fails the suite if it breaks it.
    device_of
        ``device_of(array) -> device``: the device an array of this backend lives on,
        used to refuse arrays from two devices in one call. ``None``:
        ``array_api_compat.device``.
    cheap_reads
        ``cheap_reads(array) -> bool``: whether reading an array's values now costs no
        device synchronisation and no computation (class indices are checked eagerly only
        then). ``None``: not for lazy arrays (Dask, JAX) and not for CuPy.
    accepts
        ``accepts(array) -> bool``: arrays of another library that the backend takes, as
        they are, next to its own in one call (``where=``, targets, gradients, ``out=``
        excepted): Dask takes NumPy arrays, which it wraps lazily. ``None``: only arrays
        the backend owns.
    bench
        ``bench(device) -> BenchKit``: what ``softmax-dispatch bench --backend NAME`` needs
        to know that only the backend knows (its library's own implementations to time
        against, its thread knob, its device timer, its targets), imported lazily.
        ``None``: the bench times ours against the memory floor only.

    Examples
    --------
    >>> import array_api_compat
    >>> b = Backend(
    ...     name="strict",
    ...     owns=lambda x: type(x).__module__.startswith("array_api_strict"),
    ...     namespace=lambda: __import__("array_api_strict"),
    ... )
    >>> b.name, b.priority
    ('strict', 0)
    """

    name: str
    owns: Callable[[Any], bool]
    namespace: Callable[[], ModuleType] | None = None
    priority: int = 0
    devices: Callable[[], Sequence[Any]] | None = None
    to_numpy: Callable[[Any], Any] | None = None
    synchronize: Callable[[Any], None] | None = None
    kernels: Mapping[str, Callable[..., Any]] | Callable[[], Mapping[str, Callable[..., Any]]] = (
        field(default_factory=dict)
    )
    description: str = ""
    batch_invariant: bool = False
    bench: Callable[[Any], BenchKit] | None = None
    device_of: Callable[[Any], Any] | None = None
    cheap_reads: Callable[[Any], bool] | None = None
    accepts: Callable[[Any], bool] | None = None
    from_numpy: Callable[[Any, Any], Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(
                f"Backend name must be a Python identifier such as 'numpy' or 'my_gpu', "
                f"got {self.name!r}"
            )
        if not callable(self.owns):
            raise TypeError(f"Backend {self.name!r}: owns must be callable, got {self.owns!r}")
        for attr in (
            "namespace",
            "devices",
            "to_numpy",
            "synchronize",
            "bench",
            "device_of",
            "cheap_reads",
            "accepts",
            "from_numpy",
        ):
            value = getattr(self, attr)
            if value is not None and not callable(value):
                raise TypeError(
                    f"Backend {self.name!r}: {attr} must be callable or None, got {value!r}"
                )
        if not isinstance(self.batch_invariant, bool):
            raise TypeError(
                f"Backend {self.name!r}: batch_invariant must be a bool, "
                f"got {self.batch_invariant!r}"
            )
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise TypeError(
                f"Backend {self.name!r}: priority must be an int, got {self.priority!r}"
            )
        if callable(self.kernels):  # a mapping made when the backend is first used
            return
        object.__setattr__(self, "kernels", _checked_kernels(self.name, self.kernels))

    def kernel_table(self) -> Mapping[str, Callable[..., Any]]:
        """The fused kernels, ``kernels()`` called (once) where it is a function."""
        if callable(self.kernels):
            table = _checked_kernels(self.name, self.kernels())
            object.__setattr__(self, "kernels", table)
        return self.kernels  # type: ignore[return-value]


def _checked_kernels(name: str, kernels: Any) -> Mapping[str, Callable[..., Any]]:
    if not isinstance(kernels, Mapping):
        raise TypeError(
            f"Backend {name!r}: kernels must be a mapping of op name to function (or a "
            f"function returning one), got {type(kernels).__name__}"
        )
    unknown = sorted(set(kernels) - set(KERNEL_NAMES))
    if unknown:
        raise ValueError(
            f"Backend {name!r}: unknown kernel name(s) {unknown}; allowed: {list(KERNEL_NAMES)}"
        )
    for op, fn in kernels.items():
        if not callable(fn):
            raise TypeError(f"Backend {name!r}: kernel {op!r} is not callable: {fn!r}")
    # Frozen, so that a frozen Backend really is immutable.
    return MappingProxyType(dict(kernels))


@dataclass(frozen=True)
class BenchCase:
    """One benchmark case as the bench hands it to a backend's `BenchKit`.

    ``kind`` is ``"forward"`` (``op`` is softmax or log_softmax; ``arrays["x"]``),
    ``"out"`` (the same, into ``arrays["out"]``), ``"backward"`` (``op`` is
    softmax_backward or log_softmax_backward; ``arrays["grad"]``, ``arrays["y"]``),
    ``"cross_entropy"`` (loss and gradient; ``arrays["logits"]``, ``arrays["target"]``)
    or ``"autograd"`` (forward and backward through the library's autodiff;
    ``arrays["x"]``, ``arrays["grad"]``). Arrays are the backend's, on ``device``.
    """

    name: str
    kind: str
    op: str
    shape: tuple[int, ...]
    dtype: str
    axis: int
    arrays: Mapping[str, Any]
    device: Any = None


@dataclass(frozen=True)
class BenchTarget:
    """A ratio a backend holds itself to: median time of ``numerator`` over median time
    of ``denominator`` (implementation names: ``ours``, ``ours out=``, ``floor``,
    ``floor out=``, or a peer's name) in ``case``, at most ``bound`` (``sense="<="``) or
    at least (``">="``). ``numerator="peak memory"`` compares the peak extra memory of
    ours with the result's size."""

    case: str
    numerator: str
    denominator: str
    bound: float
    sense: str = "<="

    def __post_init__(self) -> None:
        if self.sense not in ("<=", ">="):
            raise ValueError(f"BenchTarget sense must be '<=' or '>=', got {self.sense!r}")


@dataclass(frozen=True)
class BenchKit:
    """What ``softmax-dispatch bench --backend NAME`` learns from the backend.

    Parameters
    ----------
    peers
        ``peers(case) -> {name: callable}``: the library's own implementations of the
        case (zero-argument callables returning their result), imported the way their
        users import them. Empty where the library has none.
    threads
        ``threads(n)``: run the backend's kernels (and its peers) on ``n`` threads.
    finish
        ``finish(result)``: wait until a result exists (JAX's ``block_until_ready``,
        Dask's ``compute``); ``Backend.synchronize`` is called after it.
    timer
        ``timer(fn, inner) -> ms``: the time of one call, from ``inner`` calls, with the
        library's device events (CUDA) where it has them. ``None``: the host clock around
        the calls, then ``finish`` and ``Backend.synchronize``.
    peak_memory
        ``peak_memory(fn) -> bytes``: the peak memory one call allocates beyond what
        existed before it (NumPy: tracemalloc). ``None``: not measured.
    cases
        Names of the cases ``bench`` runs for this backend by default.
    targets
        The ratios the backend holds itself to, each checked and reported.
    versions
        ``versions() -> {library: version}`` for the report (the library and its peers).
    prepare
        ``prepare(arrays) -> arrays``: the case's arrays in the form the library's users
        hold them (Dask: chunked along the rows and persisted). ``None``: as made.
    """

    peers: Callable[[BenchCase], Mapping[str, Callable[[], Any]]] = lambda case: {}
    threads: Callable[[int], None] | None = None
    finish: Callable[[Any], Any] | None = None
    timer: Callable[[Callable[[], Any], int], float] | None = None
    peak_memory: Callable[[Callable[[], Any]], int] | None = None
    cases: Sequence[str] = ()
    targets: Sequence[BenchTarget] = ()
    versions: Callable[[], Mapping[str, str]] | None = None
    prepare: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None


@dataclass(frozen=True)
class BackendInfo:
    """What ``softmax_dispatch.backends()`` reports about one registered backend."""

    name: str
    available: bool
    devices: tuple[Any, ...]
    reason: str | None
    priority: int
    distribution: str | None
    version: str | None
    description: str
    backend: Backend = field(repr=False)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded, and why (shown by ``softmax-dispatch backends``)."""

    plugin: str
    distribution: str | None
    version: str | None
    error: str


def type_name(obj: object) -> str:
    """``numpy.ndarray``, ``torch.Tensor``, ``int``: the type as a user would write it."""
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def device_name(device: Any) -> str:
    """A short, stable name for a device object: ``cpu``, ``cuda:1``, ``device1``.

    >>> device_name("cpu")
    'cpu'
    """
    platform, index = getattr(device, "platform", None), getattr(device, "id", None)
    if isinstance(platform, str) and isinstance(index, int):  # JAX
        return f"{platform}:{index}"
    if type(device).__module__.startswith("cupy"):
        return f"cuda:{device.id}"
    text = str(device)
    if text.startswith(("array_api_strict.Device(", "Device(")):  # array-api-strict
        return text[text.index("(") + 2 : -2]
    return text
