"""The NumPy backend: NumPy arrays on the CPU, with fused, cache-blocked, multi-threaded
kernels (``_kernels``) that replace the generic ones for every op.

Registered through the ``softmax_dispatch`` entry-point group, exactly as a third-party
plugin would be. ``SOFTMAX_DISPATCH_NUM_THREADS`` sets the thread count. Results are
allocated fresh, as NumPy does; ``out=`` is the way to reuse memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from array_api_compat import is_numpy_array

from softmax_dispatch import Backend, hookimpl

__all__ = ["softmax_dispatch_backends"]


def _fused_kernels() -> dict[str, Any]:
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
    imports nothing heavy: the fused kernels are imported when the hook runs (they need
    only NumPy), its bench kit lazily. The backend owns ``numpy.ndarray`` (subclasses
    included), runs on ``"cpu"``, and promises batch invariance.

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
    """
    yield Backend(
        name="numpy",
        owns=is_numpy_array,
        namespace=_namespace,
        to_numpy=_to_numpy,
        synchronize=_synchronize,
        kernels=_fused_kernels(),
        description="NumPy on the CPU, fused multi-threaded kernels",
        batch_invariant=True,
        bench=_bench_kit,
    )
