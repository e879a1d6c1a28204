"""float16/bfloat16 on PyTorch tensors: never less accurate than PyTorch.

The torch backend computes 16-bit inputs in float32 and rounds once, as PyTorch's own
kernels do. These pin the cases that once rounded two or three times (cross-entropy and
its explicit backward with classes on axis 1 and reduction="mean"), what the autograd
path keeps, and PyTorch's OpInfo samples against PyTorch itself
(``benchmarks/torch_opinfo.py``). References are PyTorch in float64 on the same values.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

import softmax_dispatch as sd

torch = pytest.importorskip("torch")
F = torch.nn.functional

ROOT = Path(__file__).resolve().parents[1]
HALF = [torch.float16, torch.bfloat16]


def _logits(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)


def _spacing(r: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The distance between neighbouring ``dtype`` values at each ``|r|``."""
    info = torch.finfo(dtype)
    _, exponent = torch.frexp(r.abs().clamp_min(info.tiny))
    return torch.ldexp(torch.ones_like(r), exponent - 1) * info.eps


def _assert_rounded_once(got: torch.Tensor, exact: torch.Tensor, dtype: torch.dtype) -> None:
    """Within half a spacing of ``exact`` (rounded once), plus a tenth of one for
    float32's own rounding before that."""
    worst = float(((got.double() - exact).abs() / _spacing(exact, dtype)).max())
    assert worst <= 0.6, f"{worst:.3f} spacings from the exact result (rounded once: 0.5)"


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("probabilities", [False, True], ids=["index", "probability"])
def test_cross_entropy_backward_classes_on_axis_1_mean_rounds_once(dtype, probabilities):
    """The scale ``grad / N``, ``softmax`` and the product in float32, rounded once
    (these were 16-bit intermediates: up to ~3x torch's own error)."""
    x = _logits((6, 5, 3), dtype)
    if probabilities:
        target = torch.softmax(_logits((6, 5, 3), torch.float64, seed=1), 1).to(dtype)
        t64 = target.double()
    else:
        target = t64 = torch.randint(0, 5, (6, 3), generator=torch.Generator().manual_seed(2))
    dx = sd.softmax_cross_entropy_backward(x, target, 1.0, axis=1)
    assert dx.dtype == dtype
    leaf = x.double().requires_grad_(True)
    (exact,) = torch.autograd.grad(F.cross_entropy(leaf, t64), leaf)
    _assert_rounded_once(dx, exact, dtype)
    loss = sd.softmax_cross_entropy(x, target, axis=1)
    _assert_rounded_once(loss, F.cross_entropy(x.double(), t64), dtype)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_half_cross_entropy_autograd_keeps_what_torch_keeps(dtype):
    """Under autograd the graph keeps the 16-bit log_softmax (as PyTorch's own does),
    not a float32 copy; the gradient comes back in the logits' dtype, and double
    backward runs."""
    x = _logits((64, 100), dtype).requires_grad_(True)
    t = torch.randint(0, 100, (64,), generator=torch.Generator().manual_seed(4))
    sizes: list[int] = []

    def pack(tensor):
        sizes.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = sd.softmax_cross_entropy(x, t)
    mine, sizes[:] = sum(sizes), []
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        F.cross_entropy(x, t)
    assert 0 < mine <= sum(sizes), (mine, sum(sizes))
    assert loss.dtype == dtype
    (dx,) = torch.autograd.grad(loss, x, create_graph=True)
    assert dx.dtype == dtype
    (ddx,) = torch.autograd.grad((dx.float() ** 2).sum(), x)
    assert ddx.dtype == dtype and torch.isfinite(ddx).all()


def test_pytorch_opinfo_samples_are_never_less_accurate_than_pytorch(capsys, monkeypatch):
    """``benchmarks/torch_opinfo.py``: PyTorch's OpInfo samples for softmax, log_softmax
    and cross_entropy in float16 and bfloat16, forward, explicit backward and autograd,
    each no farther from float64 than torch's own result."""
    spec = importlib.util.spec_from_file_location(
        "torch_opinfo", ROOT / "benchmarks/torch_opinfo.py"
    )
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "torch_opinfo", module)  # its dataclass looks itself up
    spec.loader.exec_module(module)
    status = module.main(["--dtype", "float16", "--dtype", "bfloat16"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert " 0 worse" in out, out
