"""Named backends for array libraries that run on the generic kernels.

Each module here is one plugin, registered through its own entry point, so that
``backend="torch"`` (and ``softmax-dispatch check --backend torch``) can name it and a
missing library shows up as an unavailable backend with a reason. None of them imports
its array library until it is used.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from softmax_dispatch import BackendUnavailable


def require(module: str, library: str, install: str) -> ModuleType:
    """``import module``, or `BackendUnavailable` saying what is missing and how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(f"{library} is not installed ({exc}); {install}") from None


def never(a: Any) -> bool:
    """For ``Backend(cheap_reads=...)`` of lazy libraries (Dask, Cubed): values are read
    when the graph runs, never while it is built."""
    return False


def kernels_of(module: str, names: tuple[str, ...]) -> Any:
    """For ``Backend(kernels=...)``: a function returning the kernels ``names`` of
    ``module`` (a sibling of this package), imported when the backend is first used."""

    def load() -> dict[str, Any]:
        loaded = importlib.import_module(f"{__name__}.{module}")
        return {name: getattr(loaded, name) for name in names}

    return load
