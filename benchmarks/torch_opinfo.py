"""PyTorch's own OpInfo samples through our torch backend: never less accurate than torch.

    python benchmarks/torch_opinfo.py [--dtype float16 ...] [--seed N] [--verbose]

Runs the samples of PyTorch's ``op_db`` entries ``softmax`` and ``log_softmax`` (each
also under its alias ``nn.functional.softmax`` / ``nn.functional.log_softmax``, and in
its ``with_dtype`` variant) and ``nn.functional.cross_entropy``, on the CPU in float16,
bfloat16, float32 and float64, each in three checks:

``forward``
    ``sd.softmax(x, axis=dim)``, ``sd.log_softmax``, ``sd.softmax_cross_entropy(logits,
    target, axis=1, ...)`` against the op itself, both compared with the op on float64
    copies of the inputs.
``backward``
    the explicit backward functions with a random upstream gradient ``g``:
    ``sd.softmax_backward(g, y)`` / ``sd.log_softmax_backward(g, y)`` (``y`` our forward
    output) against PyTorch's own backward kernels on the same ``(g, y)``, both compared
    with those kernels on float64 copies of ``(g, y)``; and
    ``sd.softmax_cross_entropy_backward(logits, target, g, ...)`` against autograd
    through ``F.cross_entropy``, both compared with the float64 gradient.
``autograd``
    ``torch.autograd.grad`` through our forward against the same through torch's, both
    compared with the float64 gradient.

A case is *worse* when our largest error exceeds torch's by more than the slack
``16 * u_c * max(1, max|ref|)``, ``u_c`` the unit roundoff of the dtype the arithmetic
runs in (float32 for 16-bit dtypes): what two correct float32 evaluations in different
orders may differ by, far below one spacing of a 16-bit result. A result computed in
float32 and rounded once is within that of the nearest 16-bit value, which no other
16-bit answer beats, so it is never worse; one rounded twice, or scaled in 16 bits, is.

``autograd`` on 16-bit data is the exception: a graph that keeps 16-bit tensors, as
PyTorch's own does (keeping float32 ones would double what autograd holds), loses what
their rounding loses, and which of two such graphs lands nearer the exact gradient is
then luck. There a case is worse only when ours is also outside what such a graph can
promise: half a spacing of the result, plus the first-order change of the gradient when
each saved forward output (softmax, log_softmax; cross-entropy's log_softmax) moves by
half its spacing, and for cross-entropy also when the 16-bit gradient that reaches that
log_softmax does.

The summary prints the cases run, how many are worse and each worse case; the exit code
is 1 when any is. Inputs are PyTorch's ``make_tensor`` samples and ``g`` is drawn under a
fixed seed, so every run is the same. About 10 s here, most of it importing PyTorch's test
machinery.
"""

from __future__ import annotations

import argparse
import sys
import time
import types
import unittest
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

import softmax_dispatch as sd

DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}
HALF = (torch.float16, torch.bfloat16)
#: unit roundoff of the dtype the arithmetic runs in, by result dtype
COMPUTE_U = {
    torch.float16: 2.0**-24,
    torch.bfloat16: 2.0**-24,
    torch.float32: 2.0**-24,
    torch.float64: 2.0**-53,
}
NOISE = 16.0
#: op_db entry -> {name it runs under: torch's function}
NORMALIZE = {
    "softmax": {"softmax": torch.softmax, "nn.functional.softmax": F.softmax},
    "log_softmax": {"log_softmax": torch.log_softmax, "nn.functional.log_softmax": F.log_softmax},
}
OURS = {
    "softmax": (sd.softmax, sd.softmax_backward),
    "log_softmax": (sd.log_softmax, sd.log_softmax_backward),
}
#: PyTorch's own backward kernels (what its autograd runs), by op
TORCH_BACKWARD = {
    "softmax": torch._softmax_backward_data,
    "log_softmax": torch._log_softmax_backward_data,
}


def load_op_db() -> list[Any]:
    """PyTorch's OpInfo database. Its module imports ``expecttest`` (for PyTorch's own
    ``TestCase``, which is not used here); where that package is missing a stand-in takes
    its place, so the samples load with PyTorch alone."""
    try:
        import expecttest  # noqa: F401
    except ImportError:
        stub = types.ModuleType("expecttest")
        stub.TestCase = unittest.TestCase  # type: ignore[attr-defined]
        stub.ACCEPT = False  # type: ignore[attr-defined]
        sys.modules["expecttest"] = stub
    from torch.testing._internal.common_methods_invocations import op_db

    return op_db


# ------------------------------------------------------------------------------ errors
@dataclass
class Case:
    """One check of one sample: our largest error and torch's, against float64."""

    op: str
    check: str
    dtype: torch.dtype
    what: str
    ours: float
    theirs: float
    slack: float
    floor: float = 0.0  # the error a graph keeping 16-bit tensors may have anyway

    @property
    def worse(self) -> bool:
        return not self.ours <= max(self.theirs, self.floor) + self.slack

    def line(self) -> str:
        dt = str(self.dtype).removeprefix("torch.")
        return (
            f"{self.op:<36} {self.check:<9} {dt:<9} {self.what:<40} ours {self.ours:.3g}  "
            f"torch {self.theirs:.3g}" + (f"  (floor {self.floor:.2g})" if self.floor else "")
        )


def make_case(
    op: str,
    check: str,
    dtype: torch.dtype,
    what: str,
    ours: torch.Tensor,
    other: torch.Tensor,
    ref: torch.Tensor,
    saved: torch.Tensor | None = None,
) -> Case:
    """Our result and torch's against ``ref``. ``saved``: the per-element cost of the
    16-bit tensors an autograd graph keeps (None where nothing 16-bit is kept); with
    half a spacing of the result it is the floor of the error such a graph can promise."""
    floor = 0.0
    if saved is not None and ours.dtype in HALF:
        floor = finite_max(saved + half_spacing(ref.double(), ours.dtype))
    return Case(
        op,
        check,
        dtype,
        what,
        max_error(ours, ref),
        max_error(other, ref),
        noise(ours.dtype, ref),
        floor,
    )


def max_error(result: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest ``|result - ref|``; NaN or infinity where the reference has the same is no
    error, anywhere else an infinite one."""
    a, b = result.detach().double(), ref.detach().double()
    if a.shape != b.shape:
        return float("inf")
    if a.numel() == 0:
        return 0.0
    same = (a == b) | (a.isnan() & b.isnan())
    err = torch.where(same, torch.zeros_like(a), (a - b).abs())
    return float(torch.nan_to_num(err, nan=float("inf")).max())


def magnitude(t: torch.Tensor) -> float:
    """Largest finite ``|t|`` (0 when there is none)."""
    a = t.detach().double().abs()
    a = a[a.isfinite()]
    return float(a.max()) if a.numel() else 0.0


def noise(result_dtype: torch.dtype, ref: torch.Tensor) -> float:
    """How far two correct evaluations at the working precision may differ."""
    return NOISE * COMPUTE_U[result_dtype] * max(1.0, magnitude(ref))


def half_spacing(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Half the spacing of ``dtype`` at each ``|t|`` (float64): how far rounding to
    ``dtype`` may move it. Zero for non-16-bit dtypes (their rounding is noise here)."""
    if dtype not in HALF:
        return torch.zeros_like(t)
    info = torch.finfo(dtype)
    _, exponent = torch.frexp(t.abs().clamp_min(info.tiny))
    spacing = torch.ldexp(torch.ones_like(t), exponent - 1) * info.eps
    return 0.5 * torch.where(t.isfinite(), spacing, torch.zeros_like(t))


def finite_max(t: torch.Tensor) -> float:
    return magnitude(torch.where(t.isfinite(), t, torch.zeros_like(t)))


def grad_of(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, g: torch.Tensor):
    """``g``'s vector-Jacobian product through ``fn`` at ``x``, by autograd."""
    leaf = x.detach().clone().requires_grad_(True)
    (dx,) = torch.autograd.grad(fn(leaf), leaf, g)
    return dx


def upstream(like: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(like.shape, generator=gen, dtype=torch.float64).to(like.dtype)


def _describe(sample: Any, dim_or_target: Any, kwargs: dict[str, Any]) -> str:
    shape = "x".join(map(str, sample.input.shape)) or "0-d"
    if isinstance(dim_or_target, torch.Tensor):
        kind = "prob" if dim_or_target.is_floating_point() else "index"
        head = f"{shape} {kind} target"
    else:
        head = f"{shape} dim={dim_or_target}"
    opts = [
        f"{k}={'w' if isinstance(v, torch.Tensor) else v}"
        for k, v in kwargs.items()
        if k != "dtype"
    ]
    return ", ".join([head, *opts])


# ------------------------------------------------------------------ softmax, log_softmax
def saved_output_cost(
    op: str, y64: torch.Tensor, g64: torch.Tensor, dim: int, saved: torch.dtype
) -> torch.Tensor:
    """The first-order change of the VJP when each element of the saved output
    ``y`` moves by half the spacing of ``saved`` (``y64`` exact, ``g64`` the upstream
    gradient): log_softmax ``p_i |sum g| h_i``, softmax ``h_i |g_i - sum g y| +
    y_i sum_j |g_j| h_j``."""
    if y64.numel() == 0 or y64.ndim == 0:
        return torch.zeros_like(y64)
    h = half_spacing(y64, saved)
    if op == "log_softmax":
        cost = torch.exp(y64) * g64.sum(dim, keepdim=True).abs() * h
    else:
        s = (g64 * y64).sum(dim, keepdim=True)
        cost = h * (g64 - s).abs() + y64 * (g64.abs() * h).sum(dim, keepdim=True)
    return cost


def normalize_cases(opinfo: Any, dtype: torch.dtype, seed: int) -> Iterator[Case]:
    """softmax / log_softmax samples, under the op's name and its ``nn.functional``
    alias."""
    op = opinfo.name
    fwd, bwd = OURS[op]
    variant = f".{opinfo.variant_test_name}" if opinfo.variant_test_name else ""
    for i, sample in enumerate(opinfo.sample_inputs("cpu", dtype, requires_grad=False)):
        x = sample.input.detach()
        (dim,) = sample.args
        kw = dict(sample.kwargs)
        what = _describe(sample, dim, kw)
        x64 = x.double()
        for name, theirs in NORMALIZE[op].items():
            label = name + variant
            y = fwd(x, axis=dim, **kw)
            y64 = theirs(x64, dim)
            yield make_case(label, "forward", dtype, what, y, theirs(x, dim, **kw), y64)
            g = upstream(y, seed + i)
            g64 = g.double()
            # explicit backward: ours and PyTorch's kernel on the very same (g, y)
            k_dim = dim % max(1, y.ndim)
            mine = bwd(g, y, axis=dim)
            kernel = TORCH_BACKWARD[op](g, y, k_dim, y.dtype)
            exact = TORCH_BACKWARD[op](g64, y.double(), k_dim, torch.float64)
            yield make_case(label, "backward", dtype, what, mine, kernel, exact)
            ref_dx = grad_of(lambda t: theirs(t, dim), x64, g64)  # noqa: B023
            torch_dx = grad_of(lambda t: theirs(t, dim, **kw), x, g)  # noqa: B023
            ours_dx = grad_of(lambda t: fwd(t, axis=dim, **kw), x, g)  # noqa: B023
            saved = saved_output_cost(op, y64, g64, dim, y.dtype)
            yield make_case(label, "autograd", dtype, what, ours_dx, torch_dx, ref_dx, saved)


# -------------------------------------------------------------------------- cross-entropy
def logp_gradient(
    x64: torch.Tensor, target: torch.Tensor, g64: torch.Tensor, axis: int, kw: dict[str, Any]
) -> torch.Tensor:
    """``d loss / d log_softmax(logits)`` times ``g`` in float64, from PyTorch's documented
    formulas (the loss is linear in log_softmax: ``-sum_c a_c logp_c``, reduced)."""
    unknown = set(kw) - {"weight", "reduction", "ignore_index", "label_smoothing"}
    if unknown:
        raise NotImplementedError(f"cross_entropy options {sorted(unknown)}")
    n = x64.shape[axis]
    shape = [1] * x64.ndim
    shape[axis] = n
    w = kw.get("weight")
    w = torch.ones(n, dtype=torch.float64) if w is None else w.double()
    wb = w.reshape(shape)
    eps = float(kw.get("label_smoothing", 0.0))
    red = kw.get("reduction", "mean")
    if target.is_floating_point():
        a = wb * (target.double() * (1 - eps) + eps / n)
        denom = x64.numel() / n
    else:
        ignore = kw.get("ignore_index", -100)
        keep = target != ignore
        safe = torch.where(keep, target, torch.zeros_like(target))
        onehot = F.one_hot(safe, n).movedim(-1, axis).double()
        a = wb * (onehot * (1 - eps) + eps / n) * keep.unsqueeze(axis)
        denom = float((w[safe] * keep).sum())
    scale = g64.unsqueeze(axis) if red == "none" else g64
    if red == "mean":
        scale = scale / denom
    return -a * scale


def cross_entropy_saved_cost(
    x64: torch.Tensor,
    target: torch.Tensor,
    g64: torch.Tensor,
    axis: int,
    kw: dict[str, Any],
    dtype: torch.dtype,
) -> torch.Tensor:
    """The first-order change of the logits' gradient ``G - p sum(G)`` when each
    element of the 16-bit ``log_softmax`` a graph keeps, and of the 16-bit gradient ``G``
    that reaches it, moves by half its spacing."""
    logp = torch.log_softmax(x64, axis)
    p = torch.exp(logp)
    grad = logp_gradient(x64, target, g64, axis, kw)
    h_logp, h_grad = half_spacing(logp, dtype), half_spacing(grad, dtype)
    cost = p * grad.sum(axis, keepdim=True).abs() * h_logp
    return cost + h_grad + p * h_grad.sum(axis, keepdim=True)


def cross_entropy_cases(opinfo: Any, dtype: torch.dtype, seed: int) -> Iterator[Case]:
    """``nn.functional.cross_entropy`` samples: classes on axis 1 (axis 0 unbatched)."""
    for i, sample in enumerate(opinfo.sample_inputs("cpu", dtype, requires_grad=False)):
        x = sample.input.detach()
        target = sample.args[0].detach()
        kw = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in sample.kwargs.items()}
        axis = 1 if x.ndim > 1 else 0  # PyTorch's class axis
        kw64 = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
        t64 = target.double() if target.is_floating_point() else target
        x64 = x.double()
        what = _describe(sample, target, kw)
        name = opinfo.name
        loss = sd.softmax_cross_entropy(x, target, axis=axis, **kw)
        theirs = F.cross_entropy(x, target, **kw)
        ref_loss = F.cross_entropy(x64, t64, **kw64)
        yield make_case(name, "forward", dtype, what, loss, theirs, ref_loss)
        g = upstream(loss, seed + i)
        g64 = g.double()
        ref_dx = grad_of(lambda t: F.cross_entropy(t, t64, **kw64), x64, g64)  # noqa: B023
        torch_dx = grad_of(lambda t: F.cross_entropy(t, target, **kw), x, g)  # noqa: B023
        dx = sd.softmax_cross_entropy_backward(x, target, g, axis=axis, **kw)
        yield make_case(name, "backward", dtype, what, dx, torch_dx, ref_dx)

        def ours(t: torch.Tensor) -> torch.Tensor:
            return sd.softmax_cross_entropy(t, target, axis=axis, **kw)  # noqa: B023

        saved = cross_entropy_saved_cost(x64, target, g64, axis, kw, dtype)
        yield make_case(name, "autograd", dtype, what, grad_of(ours, x, g), torch_dx, ref_dx, saved)


# ---------------------------------------------------------------------------------- run
def run(dtypes: list[torch.dtype], seed: int = 0) -> list[Case]:
    """Every check of every sample, in op_db's order."""
    torch.manual_seed(seed)  # make_tensor draws from the global generator
    cases: list[Case] = []
    for opinfo in load_op_db():
        if opinfo.name in NORMALIZE:
            gen = normalize_cases
        elif opinfo.name == "nn.functional.cross_entropy":
            gen = cross_entropy_cases
        else:
            continue
        for dtype in dtypes:
            cases.extend(gen(opinfo, dtype, seed))
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", action="append", choices=sorted(DTYPES), default=None)
    parser.add_argument("--seed", type=int, default=0, help="of the samples and of g")
    parser.add_argument("--verbose", action="store_true", help="print every case")
    args = parser.parse_args(argv)
    dtypes = [DTYPES[d] for d in (args.dtype or DTYPES)]
    t0 = time.perf_counter()
    cases = run(dtypes, args.seed)
    worse = [c for c in cases if c.worse]
    if args.verbose:
        for c in cases:
            print(("WORSE " if c.worse else "      ") + c.line())
    groups: dict[tuple[str, str], list[Case]] = {}
    for c in cases:
        groups.setdefault((c.check, str(c.dtype).removeprefix("torch.")), []).append(c)
    print(f"{'check':<9} {'dtype':<9} {'cases':>5} {'worse':>5} {'max ours':>9} {'max torch':>9}")
    for (check, dt), group in sorted(groups.items()):
        print(
            f"{check:<9} {dt:<9} {len(group):>5} {sum(c.worse for c in group):>5} "
            f"{max(c.ours for c in group):>9.3g} {max(c.theirs for c in group):>9.3g}"
        )
    print(
        f"{len(cases)} cases ({len(cases) // 3} samples x forward, backward, autograd): "
        f"{len(cases) - len(worse)} as accurate as torch's, {len(worse)} worse; "
        f"{time.perf_counter() - t0:.1f} s"
    )
    for c in worse:
        print("WORSE " + c.line())
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main())
