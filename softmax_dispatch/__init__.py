"""The softmax family on any array: NumPy, CuPy, PyTorch, JAX, Dask, array-api-strict, ...

>>> import numpy as np, softmax_dispatch as sd
>>> sd.softmax(np.array([1.0, 1.0]))
array([0.5, 0.5])
"""

from ._api import (
    log_softmax,
    log_softmax_backward,
    softmax,
    softmax_backward,
    softmax_cross_entropy,
    softmax_cross_entropy_backward,
)
from ._backend import (
    KERNEL_NAMES,
    Backend,
    BackendInfo,
    BackendUnavailable,
    BenchCase,
    BenchKit,
    BenchTarget,
    PluginFailure,
)
from ._dispatch import use_backend
from ._hookspec import hookimpl
from ._plugins import (
    PluginError,
    PluginWarning,
    backends,
    failed_plugins,
    get_backend,
    register,
    unregister,
)
from ._validate import AxisError
from ._version import __version__
from .layers import LogSoftmax, Softmax, SoftmaxCrossEntropy

__all__ = [
    "KERNEL_NAMES",
    "__version__",
    "AxisError",
    "Backend",
    "BackendInfo",
    "BackendUnavailable",
    "BenchCase",
    "BenchKit",
    "BenchTarget",
    "LogSoftmax",
    "PluginError",
    "PluginFailure",
    "PluginWarning",
    "Softmax",
    "SoftmaxCrossEntropy",
    "backends",
    "failed_plugins",
    "get_backend",
    "hookimpl",
    "log_softmax",
    "log_softmax_backward",
    "register",
    "softmax",
    "softmax_backward",
    "softmax_cross_entropy",
    "softmax_cross_entropy_backward",
    "unregister",
    "use_backend",
]
