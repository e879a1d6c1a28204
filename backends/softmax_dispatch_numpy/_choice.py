"""Which kernels the NumPy backend runs — compiled (`_compiled`, on the `_native` module)
or pure NumPy (`_kernels`) — and why.

``SOFTMAX_DISPATCH_NUMPY_KERNELS`` forces one: ``compiled`` (an error on every call if
they cannot load) or ``pure``; unset, the compiled kernels run wherever they load.
``SOFTMAX_DISPATCH_NUMPY_ISA`` names the instruction set the compiled kernels run
(``avx512``, ``avx2``, ``baseline``; default: the widest this CPU has). Both are read
when the backend loads.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

__all__ = ["ENV", "ISA_ENV", "Choice", "choose"]

ENV = "SOFTMAX_DISPATCH_NUMPY_KERNELS"
ISA_ENV = "SOFTMAX_DISPATCH_NUMPY_ISA"


@dataclass(frozen=True)
class Choice:
    """``path`` "compiled" or "pure"; ``status``, a few words for the listings; ``error``
    the reason every call fails (compiled kernels forced but unloadable), else None."""

    path: str
    status: str
    error: str | None = None

    def kernels(self) -> dict[str, Any]:
        """The kernel table of this choice (raising `error` where there is one)."""
        if self.error is not None:
            from softmax_dispatch import BackendUnavailable

            raise BackendUnavailable(self.error)
        from . import _kernels

        module: Any = _kernels
        if self.path == "compiled":
            from . import _compiled

            module = _compiled
        return {name: getattr(module, name) for name in _kernels.__all__}


def _not_built() -> str:
    if importlib.util.find_spec(f"{__package__}._native") is None:
        return (
            "the compiled kernels are not built (the package was installed without a C++ "
            "compiler that has GCC/Clang vector extensions, or with SD_NATIVE=OFF)"
        )
    return ""


def choose() -> Choice:
    raw = os.environ.get(ENV, "").strip().lower()
    if raw not in ("", "compiled", "pure"):
        raise ValueError(f"{ENV} must be 'compiled' or 'pure', got {raw!r}")
    if raw == "pure":
        return Choice("pure", f"pure NumPy ({ENV}=pure)")
    why = _not_built()
    if not why:
        try:
            from . import _native
        except ImportError as exc:
            why = f"the compiled kernels did not load: {type(exc).__name__}: {exc}"
        else:
            isa = os.environ.get(ISA_ENV, "").strip().lower()
            if isa:
                try:
                    _native.use_isa(isa)
                except (ValueError, RuntimeError) as exc:
                    built = ", ".join(name for name, _ in _native.isas())
                    error = f"{ISA_ENV}={isa!r}: {exc} (built: {built})"
                    return Choice("compiled", f"compiled: unavailable, {error}", error)
            return Choice("compiled", f"compiled ({_native.isa()})")
    if raw == "compiled":
        return Choice("compiled", f"compiled: unavailable, {why}", f"{ENV}=compiled, but {why}")
    return Choice("pure", f"pure NumPy, because {why}")
