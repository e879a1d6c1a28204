"""The library's own automatic differentiation, for the targets whose library has one.

The suite differentiates *through the public functions* with the array library's autodiff
(reverse mode: a vector-Jacobian product; forward mode: a Jacobian-vector product) and
compares with the explicit backward functions. Which libraries differentiate is known by
their namespace, so every backend on PyTorch or JAX arrays — in this repository or a
third party's — is held to it without opting in.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import array_api_compat

__all__ = ["differentiates", "jvp", "vjp"]


def differentiates(xp: Any) -> str | None:
    """``"torch"`` or ``"jax"`` when arrays of ``xp`` carry autodiff, else None."""
    if array_api_compat.is_torch_namespace(xp):
        return "torch"
    if array_api_compat.is_jax_namespace(xp):
        return "jax"
    return None


def vjp(xp: Any, fn: Callable[..., Any], primals: Sequence[Any], cotangent: Any) -> tuple[Any, ...]:
    """Reverse mode: the gradients of ``sum(fn(*primals) * cotangent)`` with respect to
    each primal, computed by the library's autodiff."""
    lib = differentiates(xp)
    if lib == "torch":
        import torch

        leaves = [p.detach().clone().requires_grad_(True) for p in primals]
        out = fn(*leaves)
        grads = torch.autograd.grad(out, leaves, cotangent, allow_unused=True)
        return tuple(torch.zeros_like(p) if g is None else g for p, g in zip(leaves, grads))
    if lib == "jax":
        import jax

        _, pullback = jax.vjp(fn, *primals)
        return tuple(pullback(cotangent))
    raise TypeError(f"{getattr(xp, '__name__', xp)} has no automatic differentiation")


def jvp(xp: Any, fn: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any]) -> Any:
    """Forward mode: the directional derivative of ``fn`` at ``primals`` along
    ``tangents``, computed by the library's autodiff."""
    lib = differentiates(xp)
    if lib == "torch":
        import torch.func

        with warnings.catch_warnings():
            # PyTorch's forward mode loads its own decompositions with torch.jit.script
            # on first use, which warns about itself (PyTorch 2.13)
            warnings.filterwarnings(
                "ignore", "`torch.jit.script` is deprecated", DeprecationWarning
            )
            return torch.func.jvp(fn, tuple(primals), tuple(tangents))[1]
    if lib == "jax":
        import jax

        return jax.jvp(fn, tuple(primals), tuple(tangents))[1]
    raise TypeError(f"{getattr(xp, '__name__', xp)} has no automatic differentiation")
