"""The NumPy backend: NumPy arrays on the CPU, with fused, multi-threaded kernels that
replace the generic ones for every op — compiled (``_compiled``: one C++ source, the
instruction set chosen at run time, the GIL released) where the package was built with
a C++ compiler, pure NumPy (``_kernels``) otherwise; ``_choice`` says which and why.

Registered through the ``softmax_dispatch`` entry-point group, exactly as a third-party
plugin would be. ``SOFTMAX_DISPATCH_NUM_THREADS`` sets the thread count,
``SOFTMAX_DISPATCH_NUMPY_KERNELS`` (``compiled`` or ``pure``) forces one set of kernels.
Results are allocated fresh, as NumPy does; ``out=`` is the way to reuse memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from array_api_compat import is_numpy_array

from softmax_dispatch import Backend, BackendUnavailable, hookimpl

__all__ = ["softmax_dispatch_backends"]


def _pure_kernels() -> dict[str, Any]:
    from . import _kernels as k

    return {name: getattr(k, name) for name in k.__all__}


def _namespace() -> ModuleType:
    import array_api_compat.numpy

    return array_api_compat.numpy


def _to_numpy(x: Any) -> Any:
    import numpy

    return numpy.asarray(x)


def _synchronize(device: Any) -> None:
    """NumPy runs synchronously: nothing to wait for."""


def _bench_kit(device: Any) -> Any:
    # (not called _bench: importing the submodule _bench would rebind that name)
    from ._bench import kit

    return kit(device)


@hookimpl
def softmax_dispatch_backends() -> Iterable[Backend]:
    """Yield the NumPy backend: NumPy arrays on the CPU, with fused kernels for every op.

    The NumPy backend's implementation of the `softmax_dispatch_backends` hook, registered
    through the ``softmax_dispatch`` entry-point group like any third-party plugin. It
    imports nothing heavy: it asks which kernels can run (the compiled module is small and
    needs only NumPy), and imports the kernels when the backend is first used, its bench
    kit lazily. The backend owns ``numpy.ndarray`` (subclasses included), runs on
    ``"cpu"``, and promises batch invariance. Where the compiled kernels run, the
    pure-NumPy ones are its kernel variant ``"pure"``, which the conformance suite checks
    too.

    Yields
    ------
    Backend
        The ``numpy`` backend.

    See Also
    --------
    softmax_dispatch.Backend : The fields yielded.
    softmax_dispatch_numpy._kernels.softmax : One of the fused kernels.

    Examples
    --------
    >>> from softmax_dispatch_numpy import softmax_dispatch_backends
    >>> (backend,) = softmax_dispatch_backends()
    >>> backend.name, backend.batch_invariant, sorted(backend.kernel_table())[:2]
    ('numpy', True, ['cross_entropy', 'cross_entropy_backward'])
    >>> backend.kernels_status  # doctest: +SKIP
    'compiled (avx2)'
    """
    from ._choice import choose

    choice = choose()

    def _devices() -> tuple[str, ...]:
        if choice.error is not None:
            raise BackendUnavailable(choice.error)
        return ("cpu",)

    compiled = choice.path == "compiled" and choice.error is None
    yield Backend(
        name="numpy",
        owns=is_numpy_array,
        namespace=_namespace,
        devices=_devices,
        to_numpy=_to_numpy,
        synchronize=_synchronize,
        kernels=choice.kernels,
        kernel_variants={"pure": _pure_kernels} if compiled else {},
        kernels_status=choice.status,
        description="NumPy on the CPU, fused multi-threaded kernels",
        batch_invariant=True,
        bench=_bench_kit,
    )
