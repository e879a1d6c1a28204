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
    """The backend cannot run here; the message is the reason and the fix.

    Raised by a backend's ``Backend.devices`` when its library, driver or device is missing
    (any other exception there counts the same), and by every call that chooses such a
    backend (with ``backend=``, `use_backend` or ``SOFTMAX_DISPATCH_BACKEND``). A
    `RuntimeError`. ``softmax-dispatch backends`` and `get_backend` show the reason
    without raising.

    See Also
    --------
    get_backend : A backend's availability and the reason, without raising.

    Examples
    --------
    >>> import numpy as np, array_api_compat.numpy, softmax_dispatch as sd
    >>> def no_devices():
    ...     raise sd.BackendUnavailable("MyLib is not installed; pip install mylib")
    >>> handle = sd.register(sd.Backend(
    ...     name="mylib", owns=array_api_compat.is_numpy_array,
    ...     namespace=lambda: array_api_compat.numpy, devices=no_devices))
    >>> sd.get_backend("mylib").reason
    'MyLib is not installed; pip install mylib'
    >>> sd.softmax(np.zeros(2), backend="mylib")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    softmax_dispatch._backend.BackendUnavailable: backend 'mylib' is unavailable: MyLib is not ...
    >>> sd.unregister(handle)
    """


@dataclass(frozen=True)
class Backend:
    """One array library (or one way of running it) that softmax_dispatch can dispatch to.

    Plugins yield these from their ``softmax_dispatch_backends`` hook (or pass one to
    `register`). Only ``name`` and ``owns`` are required; every other field has a default
    that suits a library implementing the Array API standard. The object is frozen, and
    checked when it is made.

    Parameters
    ----------
    name : str
        Unique identifier, a Python identifier such as ``"numpy"`` or ``"my_gpu"``, used by
        ``backend=``, `use_backend`, ``SOFTMAX_DISPATCH_BACKEND`` and the CLI.
    owns : callable
        ``owns(obj) -> bool``: a cheap test that imports nothing (for example
        ``array_api_compat.is_cupy_array``). It must depend on ``type(obj)`` only:
        the answer is cached per type.
    namespace : callable or None, default: None
        ``namespace() -> module``: the Array API namespace the written-once kernels run
        on, imported lazily on first use. ``None`` (only sensible for a catch-all backend)
        means "whatever ``array_api_compat.array_namespace`` gives for the array".
    priority : int, default: 0
        Higher wins when several backends own the same array type.
    devices : callable or None, default: None
        ``devices() -> sequence``: the devices this backend can run on. It raises
        `BackendUnavailable` (or any exception, e.g. ``ImportError``) with the reason when
        the backend cannot run here. ``None``: the namespace's
        ``__array_namespace_info__().devices()``.
    to_numpy : callable or None, default: None
        ``to_numpy(array) -> numpy.ndarray``: used by the conformance suite. ``None``:
        ``numpy.from_dlpack`` and then ``numpy.asarray``.
    synchronize : callable or None, default: None
        ``synchronize(device) -> None``: waits for queued work, used by benchmarks.
    kernels : mapping or callable, default: {}
        Fused kernels that replace the generic ones op by op; keys from `KERNEL_NAMES`,
        values with the same signature as the generic kernel in ``softmax_dispatch._ops``
        (see the NumPy backend's kernels). Or a function returning that mapping, called when
        the backend is first used (so that registering the backend imports nothing heavy).
    description : str, default: ""
        One line shown by ``softmax-dispatch backends``.
    batch_invariant : bool, default: False
        A promise that the backend's fused kernels compute each row over the last axis
        from that row alone: ``op(x)[i]`` is bit-for-bit ``op(x[i:i+1])[0]`` for every
        op. The conformance suite checks every backend and reports the result; a backend
        that promises it fails the suite if it breaks it.
    bench : callable or None, default: None
        ``bench(device) -> BenchKit``: what ``softmax-dispatch bench --backend NAME`` needs
        to know that only the backend knows (its library's own implementations to time
        against, its thread knob, its device timer, its targets), imported lazily.
        ``None``: the bench times ours against the memory floor only.
    device_of : callable or None, default: None
        ``device_of(array) -> device``: the device an array of this backend lives on,
        used to refuse arrays from two devices in one call. ``None``:
        ``array_api_compat.device``.
    cheap_reads : callable or None, default: None
        ``cheap_reads(array) -> bool``: whether reading an array's values now costs no
        device synchronisation and no computation (class indices are checked eagerly only
        then). ``None``: not for lazy arrays (Dask, JAX) and not for CuPy.
    accepts : callable or None, default: None
        ``accepts(array) -> bool``: arrays of another library that the backend takes, as
        they are, next to its own in one call (``where=``, targets, gradients; never
        ``out=``): Dask takes NumPy arrays, which it wraps lazily. ``None``: only arrays
        the backend owns.
    from_numpy : callable or None, default: None
        ``from_numpy(host, device) -> array``: a NumPy array as one of the backend's
        arrays, used by the conformance suite to make its inputs. ``None``: the
        namespace's ``asarray(host, device=device)``.
    kernel_variants : mapping, default: {}
        Other kernel tables the backend can run instead of ``kernels``, by name (a Python
        identifier other than ``fused``, ``generic`` and ``jit``): the NumPy backend's
        pure-NumPy kernels beside its compiled ones. Values are mappings like
        ``kernels`` (ops missing from one run the generic kernels), or functions
        returning one. The conformance suite checks each variant as a kernel path of its
        own, beside ``fused`` and ``generic``.
    kernels_status : str, default: ""
        Which of the backend's kernels run here, and why, in a few words (the NumPy
        backend: ``"compiled (avx2)"``, or ``"pure NumPy: ..."`` with the reason), shown
        by ``softmax-dispatch backends``, ``check`` and ``--version``.

    Raises
    ------
    ValueError
        If ``name`` is not a Python identifier, or ``kernels`` (a mapping) has a key that
        is not in `KERNEL_NAMES`.
    TypeError
        If ``owns`` is not callable, an optional function field is neither callable nor
        ``None``, ``batch_invariant`` is not a bool, ``priority`` is not an int, or
        ``kernels`` is not a mapping of callables (nor a function).

    See Also
    --------
    register : Register a backend at run time.
    BackendInfo : What the registry reports about a registered backend.
    softmax_dispatch_numpy.softmax_dispatch_backends : The NumPy backend's hook.

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
    >>> Backend(name="my-lib", owns=bool)
    Traceback (most recent call last):
    ...
    ValueError: Backend name must be a Python identifier such as 'numpy' or 'my_gpu', got 'my-lib'
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
    kernel_variants: Mapping[str, Any] = field(default_factory=dict)
    kernels_status: str = ""

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
        if not isinstance(self.kernels_status, str):
            raise TypeError(
                f"Backend {self.name!r}: kernels_status must be a str, got {self.kernels_status!r}"
            )
        if not isinstance(self.kernel_variants, Mapping):
            raise TypeError(
                f"Backend {self.name!r}: kernel_variants must be a mapping of name to kernel "
                f"table, got {type(self.kernel_variants).__name__}"
            )
        variants = {}
        for key, table in self.kernel_variants.items():
            if not isinstance(key, str) or not key.isidentifier() or key in _PATHS:
                raise ValueError(
                    f"Backend {self.name!r}: kernel variant names must be Python identifiers "
                    f"other than {', '.join(_PATHS)}, got {key!r}"
                )
            variants[key] = table if callable(table) else _checked_kernels(self.name, table)
        object.__setattr__(self, "kernel_variants", MappingProxyType(variants))
        if callable(self.kernels):  # a mapping made when the backend is first used
            return
        object.__setattr__(self, "kernels", _checked_kernels(self.name, self.kernels))

    def variant_tables(self) -> Mapping[str, Mapping[str, Callable[..., Any]]]:
        """The kernel variants, each function in ``kernel_variants`` called (once).

        Returns
        -------
        Mapping[str, Mapping[str, callable]]
            Variant name to its read-only kernel table.

        Examples
        --------
        >>> import softmax_dispatch as sd
        >>> sd.Backend(name="plain", owns=bool).variant_tables()
        mappingproxy({})
        """
        if any(callable(t) for t in self.kernel_variants.values()):
            tables = {
                k: _checked_kernels(self.name, t()) if callable(t) else t
                for k, t in self.kernel_variants.items()
            }
            object.__setattr__(self, "kernel_variants", MappingProxyType(tables))
        return self.kernel_variants

    def kernel_table(self) -> Mapping[str, Callable[..., Any]]:
        """The fused kernels, ``kernels()`` called (once) where it is a function.

        The dispatcher calls it when the backend is first used; ops missing from the table
        run the generic Array API kernels.

        Returns
        -------
        Mapping[str, callable]
            A read-only mapping from op name (a subset of `KERNEL_NAMES`) to the backend's fused
            kernel for it; empty where the backend has none and the generic kernels run. Where
            ``kernels`` was given as a function, its result is checked and kept, so later calls
            do not call it again.

        Raises
        ------
        TypeError
            If ``kernels()`` returns something other than a mapping of callables.
        ValueError
            If ``kernels()`` returns an op name that is not in `KERNEL_NAMES`.

        See Also
        --------
        KERNEL_NAMES : The ops a backend may fuse.

        Examples
        --------
        >>> import softmax_dispatch as sd
        >>> table = sd.get_backend("numpy").backend.kernel_table()
        >>> sorted(table) == sorted(sd.KERNEL_NAMES)  # NumPy fuses every op
        True
        >>> sd.Backend(name="plain", owns=bool).kernel_table()
        mappingproxy({})
        """
        if callable(self.kernels):
            table = _checked_kernels(self.name, self.kernels())
            object.__setattr__(self, "kernels", table)
        return self.kernels  # type: ignore[return-value]


#: The kernel paths every backend has (fused, generic) or JAX adds (jit).
_PATHS = ("fused", "generic", "jit")


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
    ``"cross_entropy"`` (loss and gradient, ``op`` is cross_entropy; ``arrays["logits"]``,
    ``arrays["target"]``) or ``"autograd"`` (forward and backward through the library's
    autodiff, ``op`` is softmax or log_softmax; ``arrays["x"]``, ``arrays["grad"]``).
    Arrays are the backend's, on ``device``, made by the bench (and passed through the
    kit's ``prepare``); a backend never makes a case itself.

    Parameters
    ----------
    name : str
        The case's name, as ``bench --case`` and `BenchTarget` spell it, e.g.
        ``"softmax 4096x4096 f32"``.
    kind : str
        ``"forward"``, ``"out"``, ``"backward"``, ``"cross_entropy"`` or ``"autograd"``
        (see above).
    op : str
        The op timed: ``"softmax"``, ``"log_softmax"``, ``"softmax_backward"``,
        ``"log_softmax_backward"`` or ``"cross_entropy"``.
    shape : tuple of int
        Shape of the input (``x``, ``y`` or ``logits``).
    dtype : str
        Name of the floating dtype, e.g. ``"float32"`` (the target is integer).
    axis : int
        The softmax axis (the class axis for cross-entropy).
    arrays : Mapping[str, array]
        The case's arrays by role (``"x"``, ``"out"``, ``"grad"``, ``"y"``, ``"logits"``,
        ``"target"``), of the backend's library.
    device : object, optional
        The device the arrays live on.

    See Also
    --------
    BenchKit : Where a backend's ``peers(case)`` receives these.

    Examples
    --------
    >>> import numpy as np
    >>> from softmax_dispatch import BenchCase
    >>> case = BenchCase("softmax 8x10 f32", "forward", "softmax", (8, 10), "float32", -1,
    ...                  {"x": np.ones((8, 10), dtype=np.float32)}, "cpu")
    >>> case.kind, case.arrays["x"].shape
    ('forward', (8, 10))
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
    """A ratio of two benchmark results that a backend holds itself to.

    The median time of ``numerator`` over the median time of ``denominator`` in ``case``
    must be at most ``bound`` (``sense="<="``) or at least ``bound`` (``sense=">="``).
    ``softmax-dispatch bench`` checks and reports every target of the backend's `BenchKit`.

    Parameters
    ----------
    case : str
        Name of the case, e.g. ``"softmax 4096x4096 f32"``.
    numerator : str
        Implementation name: ``"ours"``, ``"ours out="``, ``"floor"``, ``"floor out="``, or
        a peer's name (a key of ``BenchKit.peers(case)``). ``"peak memory"`` compares the
        peak extra memory of ours with the result's size instead of times.
    denominator : str
        Implementation name, as for ``numerator`` (``"result"`` with ``"peak memory"``).
    bound : float
        The bound on the ratio.
    sense : {"<=", ">="}, default: "<="
        Whether the ratio must be at most or at least ``bound``.

    Raises
    ------
    ValueError
        If ``sense`` is neither ``"<="`` nor ``">="``.

    See Also
    --------
    BenchKit : Holds a backend's targets.

    Examples
    --------
    >>> from softmax_dispatch import BenchTarget
    >>> target = BenchTarget("softmax 4096x4096 f32", "ours", "floor", 1.3)
    >>> target.sense, target.bound  # ours within 1.3x the time of a copy of the bytes
    ('<=', 1.3)
    >>> BenchTarget("softmax 4096x4096 f32", "ours", "floor", 1.3, sense="<")
    Traceback (most recent call last):
    ...
    ValueError: BenchTarget sense must be '<=' or '>=', got '<'
    """

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

    A backend's ``Backend.bench(device)`` returns one. Every field is optional: an empty kit
    times ours against the memory floor (a copy of the same bytes) only. Each parameter
    below is also the attribute of the same name.

    Parameters
    ----------
    peers : callable, optional
        ``peers(case) -> {name: callable}``: the library's own implementations of the
        case (zero-argument callables returning their result), imported the way their
        users import them. Default: none, for every case (an empty mapping).
    threads : callable or None, default: None
        ``threads(n)``: run the backend's kernels (and its peers) on ``n`` threads.
    finish : callable or None, default: None
        ``finish(result)``: wait until a result exists (JAX's ``block_until_ready``,
        Dask's ``compute``); ``Backend.synchronize`` is called after it.
    timer : callable or None, default: None
        ``timer(fn, inner) -> ms``: the time of one call, from ``inner`` calls, with the
        library's device events (CUDA) where it has them. ``None``: the host clock around
        the calls, then ``finish`` and ``Backend.synchronize``.
    peak_memory : callable or None, default: None
        ``peak_memory(fn) -> bytes``: the peak memory one call allocates beyond what
        existed before it (NumPy: tracemalloc). ``None``: not measured.
    cases : sequence of str, default: ()
        Names of the cases ``bench`` runs for this backend by default (empty: the bench's
        default cases).
    targets : sequence of BenchTarget, default: ()
        The ratios the backend holds itself to, each checked and reported.
    versions : callable or None, default: None
        ``versions() -> {library: version}`` for the report (the library and its peers).
    prepare : callable or None, default: None
        ``prepare(arrays) -> arrays``: the case's arrays in the form the library's users
        hold them (Dask: chunked along the rows and persisted). ``None``: as made.

    See Also
    --------
    Backend : Its ``bench`` field returns a kit.
    BenchCase : What ``peers`` receives.
    BenchTarget : What ``targets`` holds.

    Examples
    --------
    A kit that times a textbook NumPy softmax next to ours:

    >>> import numpy as np
    >>> from softmax_dispatch import BenchCase, BenchKit, BenchTarget
    >>> def peers(case):
    ...     if case.kind != "forward" or case.op != "softmax":
    ...         return {}
    ...     x = case.arrays["x"]
    ...     def textbook():
    ...         e = np.exp(x - x.max(axis=case.axis, keepdims=True))
    ...         return e / e.sum(axis=case.axis, keepdims=True)
    ...     return {"textbook": textbook}
    >>> kit = BenchKit(
    ...     peers=peers,
    ...     cases=("softmax 64x1000 f32",),
    ...     targets=(BenchTarget("softmax 64x1000 f32", "ours", "textbook", 1.0),),
    ... )
    >>> case = BenchCase("softmax 8x10 f32", "forward", "softmax", (8, 10), "float32", -1,
    ...                  {"x": np.zeros((8, 10), dtype=np.float32)})
    >>> float(kit.peers(case)["textbook"]()[0, 0])
    0.10000000149011612
    >>> BenchKit().peers(case)  # the default: no peers
    {}
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
    """What `backends` and `get_backend` report about one registered backend.

    Made by the registry (probing the backend's devices once); each parameter below is
    also the attribute of the same name.

    Parameters
    ----------
    name : str
        The backend's name.
    available : bool
        Whether the backend can run here (its ``devices()`` gave devices).
    devices : tuple
        The devices it can run on; empty when it is unavailable (and for the catch-all
        ``array_api`` backend, which runs wherever the array it is given lives).
    reason : str or None
        Why it cannot run here (the `BackendUnavailable` message, or the exception raised
        by ``devices()``); ``None`` when it is available.
    priority : int
        The backend's priority: higher wins when several backends own an array type.
    distribution : str or None
        The distribution that provides the plugin; ``None`` for one registered at run time.
    version : str or None
        That distribution's version; ``None`` for one registered at run time.
    description : str
        The backend's one-line description.
    backend : Backend
        The `Backend` object itself (not shown in the repr).
    kernels_status : str, default: ""
        Which of its kernels run here and why (``Backend.kernels_status``; may be empty).

    See Also
    --------
    backends : Every registered backend.
    get_backend : One backend by name.

    Examples
    --------
    >>> import softmax_dispatch as sd
    >>> info = sd.get_backend("numpy")
    >>> info.name, info.available, info.devices, info.reason
    ('numpy', True, ('cpu',), None)
    >>> info.distribution
    'softmax-dispatch'
    """

    name: str
    available: bool
    devices: tuple[Any, ...]
    reason: str | None
    priority: int
    distribution: str | None
    version: str | None
    description: str
    backend: Backend = field(repr=False)
    kernels_status: str = ""


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded, and why (shown by ``softmax-dispatch backends``).

    A plugin fails to load when its module cannot be imported, its hook raises or yields
    something other than a `Backend`, or it yields a backend name another plugin already
    took. The other plugins still load, and `failed_plugins` lists the failures.

    Parameters
    ----------
    plugin : str
        The plugin's name (its entry point's name).
    distribution : str or None
        The distribution that declares the entry point, if known.
    version : str or None
        That distribution's version, if known.
    error : str
        What went wrong, e.g. ``"import failed: ModuleNotFoundError: No module named
        'mylib'"``.

    See Also
    --------
    failed_plugins : The plugins that failed to load.
    PluginWarning : The warning a failure raises once.

    Examples
    --------
    >>> import softmax_dispatch as sd
    >>> failure = sd.PluginFailure("mine", "my-dist", "1.0",
    ...                            "import failed: ModuleNotFoundError: No module named 'mylib'")
    >>> failure.error
    "import failed: ModuleNotFoundError: No module named 'mylib'"
    """

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
