"""Fused kernels for PyTorch tensors: the forward on ``torch.softmax`` /
``torch.log_softmax``, the backward on PyTorch's own fused backward kernels,
cross-entropy on ``torch.log_softmax`` and a gather, each wrapped so that the documented
semantics hold exactly (``where=``, fully masked rows, ignored targets, "mean" over
nothing).

Autograd: each public call on tensors that require grad records one node (a
``torch.autograd.Function``) that saves only what its backward needs — the output for
softmax and log_softmax (plus the mask for a masked log_softmax), ``log_softmax(logits)``
and the target for cross-entropy — and whose backward is our VJP, written with
differentiable PyTorch ops, so double backward is right too.

float16 and bfloat16 are computed in float32 and rounded once to the input dtype, as
PyTorch's own kernels do: the forward and both VJPs on PyTorch's kernels (which compute
16-bit inputs in float32 and round the result once), cross-entropy and its explicit
backward entirely in float32 from the widened logits. Under autograd, cross-entropy keeps
what PyTorch's own keeps, the 16-bit ``log_softmax(logits)``, and does the rest of its
arithmetic in float32.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = [
    "cross_entropy",
    "cross_entropy_backward",
    "log_softmax",
    "log_softmax_backward",
    "softmax",
    "softmax_backward",
]

Tensor = torch.Tensor
_HALF = (torch.float16, torch.bfloat16)
#: dtypes PyTorch's kernels take as they are (16-bit ones are computed in float32 here)
_DIRECT = frozenset((torch.float32, torch.float64))


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the arithmetic runs in: float32 for float16/bfloat16 (rounding a 16-bit
    intermediate, e.g. the scaled gradient, would round the result twice)."""
    return torch.float32 if dtype in _HALF else dtype


def _wide(t: Tensor) -> Tensor:
    """``t`` in its compute dtype (itself, not a copy, where that is its own)."""
    return t.to(_compute_dtype(t.dtype))


# ----------------------------------------------------------------------------- layout
def _to_last(x: Tensor, axes: tuple[int, ...]) -> tuple[Tensor, int, Any]:
    """``x`` seen with the softmax axes as one dimension ``dim``, and how to undo it."""
    if len(axes) == 1:
        return x, axes[0], None
    keep = [d for d in range(x.ndim) if d not in axes]
    perm = keep + list(axes)
    moved = x.permute(perm)
    flat = moved.reshape(*moved.shape[: len(keep)], -1)
    return flat, flat.ndim - 1, (perm, moved.shape)


def _from_last(y: Tensor, undo: Any) -> Tensor:
    if undo is None:
        return y
    perm, moved_shape = undo
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    return y.reshape(moved_shape).permute(inverse)


# ---------------------------------------------------------------------------- forward
def _forward_values(x: Tensor, dim: int, mask: Tensor | None, log: bool) -> Tensor:
    """The forward on PyTorch's fused kernels; masked entries are constants (0 or -inf),
    a fully masked row gives zeros (-inf for log), never NaN."""
    if mask is not None:
        x = x.masked_fill(~mask, float("-inf"))
    if x.dtype in _HALF:  # accumulate in float32, round once
        fn = torch.log_softmax if log else torch.softmax
        y = fn(x, dim, dtype=torch.float32).to(x.dtype)
    else:
        y = torch.log_softmax(x, dim) if log else torch.softmax(x, dim)
    if mask is not None:
        y = y.masked_fill(~mask, float("-inf") if log else 0.0)
    return y


class _Normalize(torch.autograd.Function):
    """softmax / log_softmax over ``dim``, saving the output (and a log_softmax's mask)."""

    @staticmethod
    def forward(x: Tensor, dim: int, mask: Tensor | None, log: bool) -> Tensor:
        return _forward_values(x, dim, mask, log)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        _, dim, mask, log = inputs
        ctx.dim, ctx.log = dim, log
        # softmax's masked outputs are 0, which the VJP needs no mask to respect
        ctx.save_for_backward(output, mask if log else None)
        ctx.set_materialize_grads(True)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None]:
        y, mask = ctx.saved_tensors
        return _vjp(grad, y, ctx.dim, mask, ctx.log), None, None, None


def _vjp(grad: Tensor, y: Tensor, dim: int, mask: Tensor | None, log: bool) -> Tensor:
    """softmax: ``y * (g - sum(g * y))``; log_softmax: ``g - exp(y) * sum(g)``, both on
    PyTorch's fused backward kernels (differentiable themselves); masked entries 0."""
    if mask is not None:
        grad = grad.masked_fill(~mask, 0.0)
    grad = grad.to(y.dtype)
    if log:
        dx = torch._log_softmax_backward_data(grad, y, dim, y.dtype)
    else:
        dx = torch._softmax_backward_data(grad, y, dim, y.dtype)
    return dx if mask is None else dx.masked_fill(~mask, 0.0)


def _direct(out: Tensor, x: Tensor) -> bool:
    """``out`` can take PyTorch's kernel's result directly: float32/float64 (16-bit
    dtypes are computed in float32 and rounded once), contiguous, and in other memory
    than ``x`` (PyTorch's ``out=`` kernels do not handle an ``out`` overlapping their
    input)."""
    return (
        x.dtype not in _HALF
        and out.is_contiguous()
        and out.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
    )


def _needs_graph(*tensors: Tensor | None) -> bool:
    return any(t is not None and t.requires_grad for t in tensors) and torch.is_grad_enabled()


def _forward(x: Tensor, axes: tuple[int, ...], where: Any, out: Any, log: bool) -> Tensor:
    if not axes:  # each element its own distribution: 1 (0 for log), NaN for +-inf, NaN
        z = x - x
        y = z if log else torch.exp(z)
    else:
        mask = None if where is None else torch.broadcast_to(where, x.shape)
        flat, dim, undo = _to_last(x, axes)
        if mask is not None and undo is not None:
            mask = _to_last(mask, axes)[0]
        if _needs_graph(flat):
            y = _Normalize.apply(flat, dim, mask, log)
        elif out is not None and undo is None and mask is None and _direct(out, flat):
            fn = torch._log_softmax if log else torch._softmax
            return fn(flat, dim, False, out=out)
        else:
            y = _forward_values(flat, dim, mask, log)
        y = _from_last(y, undo)
    if out is None:
        return y
    out.copy_(y)
    return out


def softmax(xp: Any, x: Tensor, axes, where=None, out=None) -> Tensor:
    """softmax on ``torch.softmax`` (one autograd node saving the output)."""
    # the common call, straight to PyTorch's kernel (checked inline: this is measured
    # against torch.softmax on 8x10 tensors): one axis, nothing else, no autograd
    direct = where is None and out is None and len(axes) == 1 and x.dtype in _DIRECT
    if direct and not x.requires_grad:
        return torch.softmax(x, axes[0])
    return _forward(x, axes, where, out, log=False)


def log_softmax(xp: Any, x: Tensor, axes, where=None, out=None) -> Tensor:
    """log_softmax on ``torch.log_softmax`` (one autograd node saving the output)."""
    direct = where is None and out is None and len(axes) == 1 and x.dtype in _DIRECT
    if direct and not x.requires_grad:
        return torch.log_softmax(x, axes[0])
    return _forward(x, axes, where, out, log=True)


# --------------------------------------------------------------------------- backward
def _backward(grad: Tensor, y: Tensor, axes, where, out, log: bool) -> Tensor:
    if not axes:
        dx = torch.zeros_like(y) + 0 * grad  # a constant function: no gradient
    else:
        mask = None if where is None else torch.broadcast_to(where, y.shape)
        y_flat, dim, undo = _to_last(y, axes)
        g_flat = _to_last(grad, axes)[0]
        if mask is not None and undo is not None:
            mask = _to_last(mask, axes)[0]
        dx = _from_last(_vjp(g_flat, y_flat, dim, mask, log), undo)
    if out is None:
        return dx
    out.copy_(dx)
    return out


def softmax_backward(xp: Any, grad, y, axes, where=None, out=None) -> Tensor:
    """The softmax VJP on ``torch._softmax_backward_data``."""
    if where is None and out is None and len(axes) == 1 and grad.dtype == y.dtype:
        return torch._softmax_backward_data(grad, y, axes[0], y.dtype)  # (as `_vjp` would)
    return _backward(grad, y, axes, where, out, log=False)


def log_softmax_backward(xp: Any, grad, y, axes, where=None, out=None) -> Tensor:
    """The log_softmax VJP on ``torch._log_softmax_backward_data``."""
    if where is None and out is None and len(axes) == 1 and grad.dtype == y.dtype:
        return torch._log_softmax_backward_data(grad, y, axes[0], y.dtype)
    return _backward(grad, y, axes, where, out, log=True)


# ---------------------------------------------------------------------- cross-entropy
class _Pick(torch.autograd.Function):
    """``logp.gather(axis, index)``, keeping only the index for backward (PyTorch's gather
    keeps its input too, a second reference to the log-probabilities)."""

    @staticmethod
    def forward(logp: Tensor, axis: int, index: Tensor) -> Tensor:
        return logp.gather(axis, index)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        logp, axis, index = inputs
        ctx.axis, ctx.shape, ctx.dtype = axis, logp.shape, logp.dtype
        ctx.save_for_backward(index)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (index,) = ctx.saved_tensors
        dx = torch.zeros(ctx.shape, dtype=grad.dtype, device=grad.device)
        return dx.scatter_(ctx.axis, index, grad), None, None  # in place: one write


def _index_terms(logits: Tensor, target: Tensor, axis: int, opts: dict[str, Any]):
    """For class-index targets: ``(logp, per, keep, bad, w_t, denom)`` where ``per`` is the
    per-sample loss, built from differentiable ops on ``log_softmax`` (one autograd node
    saving its output) and a gather: no one-hot array."""
    n = logits.shape[axis]
    eps, w, ignore = opts["label_smoothing"], opts["weight"], opts["ignore_index"]
    t = target.long()
    keep = torch.ones_like(t, dtype=torch.bool) if ignore is None else t != ignore
    bad = ((t < 0) | (t >= n)) & keep
    counted = keep & ~bad
    if ignore is not None:  # ignored samples: exactly 0, whatever their logits hold
        logits = torch.where(counted.unsqueeze(axis), logits, torch.zeros_like(logits))
    logp = _wide(_normalize(logits, axis, None, log=True))
    safe = torch.where(counted, t, torch.zeros_like(t))
    picked = _Pick.apply(logp, axis, safe.unsqueeze(axis)).squeeze(axis)
    w_t = torch.ones_like(picked) if w is None else w.to(logp.dtype)[safe]
    coef = (1.0 - eps) * w_t
    per = -torch.where(coef != 0, coef * picked, torch.zeros_like(picked))
    if eps:
        shape = [1] * logp.ndim
        shape[axis] = n
        if w is None:
            smooth = logp.sum(axis)
        else:
            wb = w.to(logp.dtype).reshape(shape)
            smooth = torch.where(wb != 0, wb * logp, torch.zeros_like(logp)).sum(axis)
        per = per - eps / n * smooth
    per = torch.where(counted, per, torch.zeros_like(per))
    per = torch.where(bad, torch.full_like(per, float("nan")), per)
    denom = torch.where(counted, w_t, torch.zeros_like(w_t)).sum()
    return logp, per, keep, bad, w_t, denom


def _class_weights(w: Tensor | None, like: Tensor, axis: int) -> Tensor | None:
    """``weight`` shaped to broadcast along ``axis`` of ``like``, in its dtype."""
    if w is None:
        return None
    shape = [1] * like.ndim
    shape[axis] = like.shape[axis]
    return w.to(like.dtype).reshape(shape)


def _samples(logp: Tensor, axis: int) -> Tensor:
    """The "mean" divisor for probability targets: the number of samples."""
    n = max(1, logp.numel() // logp.shape[axis])
    return torch.tensor(float(n), dtype=logp.dtype, device=logp.device)


def _probability_terms(logits: Tensor, target: Tensor, axis: int, opts: dict[str, Any]):
    """``(per, denom)`` for probability targets: ``per = -sum(a * logp)`` with
    ``a = weight * (target (1 - eps) + eps / n)``, summed as ``(1 - eps) weight * target *
    logp`` and ``eps / n weight * logp``: under autograd the graph then keeps the target
    as it is (16 bits for 16-bit targets), not an ``a`` of the logits' size in float32.
    Classes with zero coefficient contribute exactly 0, even where ``logp`` is -inf."""
    n = logits.shape[axis]
    eps = opts["label_smoothing"]
    logp = _wide(_normalize(logits, axis, None, log=True))
    wb = _class_weights(opts["weight"], logp, axis)
    # a 16-bit target multiplies a float32 logp in float32 as it is, exactly
    t = target if _compute_dtype(target.dtype) == logp.dtype else target.to(logp.dtype)
    per = torch.zeros((), dtype=logp.dtype, device=logp.device)
    if eps < 1:
        counts = t != 0 if wb is None else (t != 0) & (wb != 0)
        term = t * torch.where(counts, logp, torch.zeros_like(logp))
        per = per - (1.0 - eps) * (term if wb is None else term * wb).sum(axis)
    if eps:
        smooth = logp if wb is None else wb * torch.where(wb != 0, logp, torch.zeros_like(logp))
        per = per - eps / n * smooth.sum(axis)
    return per, _samples(logp, axis)


def _normalize(x: Tensor, dim: int, mask: Tensor | None, log: bool) -> Tensor:
    if _needs_graph(x):
        return _Normalize.apply(x, dim, mask, log)
    return _forward_values(x, dim, mask, log)


def _reduce(per: Tensor, denom: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return per
    total = per.sum()
    if reduction == "sum":
        return total
    nothing = denom == 0  # "mean" over no counted sample is 0, not NaN
    return torch.where(nothing, torch.zeros_like(total), total / torch.where(nothing, 1, denom))


def cross_entropy(xp: Any, logits, target, axis, **opts) -> Tensor:
    """Cross-entropy on ``torch.log_softmax`` and a gather; under autograd, the graph
    keeps ``log_softmax(logits)`` (once, in the logits' dtype) and the target.

    16-bit logits: without autograd, all in float32 from the widened logits; under
    autograd, from the 16-bit ``log_softmax`` the graph keeps (what PyTorch's own keeps),
    widened. The loss is rounded once, at the end."""
    dtype = logits.dtype
    if not _needs_graph(logits):
        logits = _wide(logits)
    if opts["index_target"]:
        per, denom = _index_terms(logits, target, axis, opts)[1::4]
    else:
        per, denom = _probability_terms(logits, target, axis, opts)
    return _reduce(per, denom, opts["reduction"]).to(dtype)


def cross_entropy_backward(xp: Any, logits, target, grad, axis, **opts) -> Tensor:
    """``grad * dL/dlogits = grad * (softmax(logits) * sum(a) - a)``, from one
    ``log_softmax`` and a scatter (index targets) without a one-hot array.

    16-bit logits: the probabilities, the per-sample scale ``grad * sum(a)`` and the
    mean's division all in float32, rounded once to the logits' dtype at the end (a
    16-bit ``grad / denom`` or ``exp(log_softmax)`` would round it two or three times)."""
    red = opts["reduction"]
    dtype = logits.dtype
    g = grad if isinstance(grad, Tensor) else torch.as_tensor(grad, dtype=_compute_dtype(dtype))
    if _needs_graph(logits, g):  # differentiable in turn: through autograd itself
        g = g.to(device=logits.device, dtype=dtype)
        with torch.enable_grad():
            leaf = logits if logits.requires_grad else logits.detach().requires_grad_(True)
            loss = cross_entropy(xp, leaf, target, axis, **opts)
            (dx,) = torch.autograd.grad(loss, leaf, g.expand_as(loss), create_graph=True)
        return dx
    logits = _wide(logits.detach())
    g = g.to(device=logits.device, dtype=logits.dtype)
    if opts["index_target"]:
        n, eps, w = logits.shape[axis], opts["label_smoothing"], opts["weight"]
        logp, _, keep, bad, w_t, denom = _index_terms(logits, target, axis, opts)
        counted = keep & ~bad
        scale = g if red == "none" else g.expand(keep.shape)
        if red == "mean":
            scale = scale / torch.where(denom == 0, float("inf"), denom)
        scale = torch.where(counted, scale, torch.zeros_like(scale))
        total_w = float(n) if w is None else w.to(logp.dtype).sum()
        s = ((1.0 - eps) * w_t + eps / n * total_w) * scale  # sum(a) per sample, scaled
        s = torch.where(bad, torch.full_like(s, float("nan")), s)
        dx = torch.exp(logp).mul_(s.unsqueeze(axis))
        dx.scatter_add_(
            axis,
            torch.where(counted, target.long(), 0).unsqueeze(axis),
            (-(1.0 - eps) * w_t * scale).unsqueeze(axis).to(dx.dtype),
        )
        if eps:
            shape = [1] * dx.ndim
            shape[axis] = n
            wb = (
                torch.ones(shape, dtype=dx.dtype, device=dx.device)
                if w is None
                else w.to(dx.dtype).reshape(shape)
            )
            dx.sub_(eps / n * wb * scale.unsqueeze(axis))
        if opts["ignore_index"] is not None:  # exactly 0, even where logits are NaN
            dx.masked_fill_(~keep.unsqueeze(axis), 0.0)
        return dx.to(dtype)
    eps, wb = opts["label_smoothing"], _class_weights(opts["weight"], logits, axis)
    p = _forward_values(logits, axis, None, log=False)
    a = target.to(p.dtype) * (1.0 - eps) + eps / logits.shape[axis]
    a = a if wb is None else a * wb
    dx = p * a.sum(axis, keepdim=True) - a
    denom = _samples(p, axis)
    dx = dx * (g.unsqueeze(axis) if red == "none" and g.ndim else g)
    return (dx / denom if red == "mean" else dx).to(dtype)
