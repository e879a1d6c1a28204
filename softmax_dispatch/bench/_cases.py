"""The benchmark cases, and the implementations the core builds for each on any backend:
ours (the public functions), ours into ``out=``, and the memory floor (a copy of the same
bytes, fresh or into ``out=``). A backend's own peers come from its `BenchKit`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from .. import _api
from .._backend import BenchCase
from .._dispatch import resolve

__all__ = ["CATALOG", "PROBE", "Spec", "bytes_moved", "make_case", "ours_and_floor"]


@dataclass(frozen=True)
class Spec:
    """A case before it has arrays: what to run, on what shape and dtype."""

    name: str
    kind: str  # forward | out | backward | cross_entropy | autograd
    op: str
    shape: tuple[int, ...]
    dtype: str
    axis: int = -1
    rounds: int = 15
    inner: int = 1  # calls per timed sample (tiny inputs)


def _pair(op: str, shape: tuple[int, int], dtype: str, **kw: Any) -> list[Spec]:
    size = "x".join(map(str, shape))
    short = {"float16": "f16", "float32": "f32", "float64": "f64", "bfloat16": "bf16"}[dtype]
    return [Spec(f"{o} {size} {short}", "forward", o, shape, dtype, **kw) for o in op.split()]


CATALOG: dict[str, Spec] = {
    s.name: s
    for s in [
        *_pair("softmax log_softmax", (4096, 4096), "float32"),
        Spec("softmax axis=0 4096x4096 f32", "forward", "softmax", (4096, 4096), "float32", 0),
        Spec("softmax out= 4096x4096 f32", "out", "softmax", (4096, 4096), "float32"),
        Spec(
            "softmax_backward 4096x4096 f32",
            "backward",
            "softmax_backward",
            (4096, 4096),
            "float32",
        ),
        Spec(
            "log_softmax_backward 4096x4096 f32",
            "backward",
            "log_softmax_backward",
            (4096, 4096),
            "float32",
        ),
        *_pair("softmax log_softmax", (256, 32000), "float32"),
        *_pair("softmax log_softmax", (64, 1000), "float32", rounds=21, inner=20),
        *_pair("softmax log_softmax", (8, 10), "float32", rounds=21, inner=2000),
        *_pair("softmax", (1024, 4096), "float16"),
        # many short rows, 763 MiB: the size where a chunked library (Dask) pays off
        *_pair("softmax log_softmax", (400_000, 500), "float32", rounds=9),
        *_pair("softmax", (2048, 2048), "float64"),
        Spec(
            "cross_entropy 4096x32000 f32",
            "cross_entropy",
            "cross_entropy",
            (4096, 32000),
            "float32",
            rounds=5,
        ),
        Spec("autograd softmax 2048x8192 f32", "autograd", "softmax", (2048, 8192), "float32"),
        # GPU sizes (CuPy, PyTorch on CUDA): rows of 256-1K, 2K-32K (>= 256 MiB) and
        # 64K-256K, float32 and float16; backward and cross-entropy at LLM sizes
        *_pair("softmax log_softmax", (16384, 256), "float32"),
        *_pair("softmax log_softmax", (16384, 1024), "float32"),
        *_pair("softmax log_softmax", (16384, 4096), "float32"),
        *_pair("softmax", (8192, 16384), "float32"),
        *_pair("softmax log_softmax", (4096, 32768), "float32"),
        *_pair("softmax", (2048, 65536), "float32"),
        *_pair("softmax", (512, 262144), "float32"),
        *_pair("softmax", (16384, 1024), "float16"),
        *_pair("softmax", (65536, 4096), "float16"),
        *_pair("softmax", (8192, 32768), "float16"),
        *_pair("softmax", (2048, 131072), "float16"),
        Spec(
            "softmax_backward 16384x4096 f32",
            "backward",
            "softmax_backward",
            (16384, 4096),
            "float32",
        ),
        Spec(
            "log_softmax_backward 16384x4096 f32",
            "backward",
            "log_softmax_backward",
            (16384, 4096),
            "float32",
        ),
        Spec(
            "cross_entropy 4096x128000 f32",
            "cross_entropy",
            "cross_entropy",
            (4096, 128000),
            "float32",
            rounds=5,
        ),
        Spec(
            "autograd log_softmax 2048x8192 f32", "autograd", "log_softmax", (2048, 8192), "float32"
        ),
    ]
}
#: The small case each peer is first timed on: a peer far slower than a copy of the same
#: bytes there is in a state its users would not run it in (see `bench._peers`).
PROBE = CATALOG["softmax 64x1000 f32"]


def make_case(
    spec: Spec,
    xp: ModuleType,
    device: Any,
    prepare: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
) -> BenchCase:
    """The case's arrays on the backend's device, from the same host data every run
    (passed through the kit's ``prepare``)."""
    rng = np.random.default_rng(0)
    x_host = rng.standard_normal(spec.shape) * 3

    def arr(host: np.ndarray, dtype: str | None = spec.dtype) -> Any:
        dt = None if dtype is None else getattr(xp, dtype)
        return xp.asarray(host, dtype=dt, device=device)

    arrays: dict[str, Any] = {}
    if spec.kind in ("forward", "out", "autograd"):
        arrays["x"] = arr(x_host)
    if spec.kind == "out":
        arrays["out"] = arr(np.zeros(spec.shape))
    if spec.kind in ("backward", "autograd"):
        arrays["grad"] = arr(rng.standard_normal(spec.shape))
    if spec.kind == "backward":
        fwd = _api.softmax if spec.op == "softmax_backward" else _api.log_softmax
        arrays["y"] = fwd(arr(x_host), spec.axis)
    if spec.kind == "cross_entropy":
        arrays["logits"] = arr(x_host)
        target = rng.integers(0, spec.shape[-1], size=spec.shape[:-1])
        arrays["target"] = arr(target, None)
    if prepare is not None:
        arrays = dict(prepare(arrays))
    return BenchCase(
        spec.name, spec.kind, spec.op, spec.shape, spec.dtype, spec.axis, arrays, device
    )


def ours_and_floor(case: BenchCase, xp: ModuleType, backend: str) -> dict[str, Callable[[], Any]]:
    """Our implementation of the case (and into ``out=``) and the memory floor: a copy of
    the bytes the op must move, fresh (one read, one write; for backward two reads and a
    write) or into ``out=``."""
    a, ax = case.arrays, case.axis
    kw = _as_users_call(next(iter(a.values())), backend)
    impls: dict[str, Callable[[], Any]] = {}
    if case.kind in ("forward", "out"):
        fn = getattr(_api, case.op)
        x = a["x"]
        if case.kind == "forward":
            impls["ours"] = lambda: fn(x, ax, **kw)
            impls["floor"] = lambda: xp.asarray(x, copy=True)
        else:
            out = a["out"]
            impls["ours out="] = lambda: fn(x, ax, out=out, **kw)
            impls["floor out="] = lambda: _copy_into(out, x)
    elif case.kind == "backward":
        fn = getattr(_api, case.op)
        g, y = a["grad"], a["y"]
        impls["ours"] = lambda: fn(g, y, ax, **kw)
        impls["floor"] = lambda: xp.add(g, y)
    elif case.kind == "cross_entropy":
        logits, target = a["logits"], a["target"]

        def ours() -> Any:
            _api.softmax_cross_entropy(logits, target, ax, **kw)
            return _api.softmax_cross_entropy_backward(logits, target, 1.0, ax, **kw)

        impls["ours"] = ours
        impls["floor"] = lambda: xp.asarray(logits, copy=True)
    return impls


def _as_users_call(x: Any, backend: str) -> dict[str, str]:
    """No ``backend=`` where the backend is the one a call on ``x`` picks by itself (its
    users name none then, and take the common path), else ``backend=backend``."""
    try:
        picked = resolve(x, (), None)[0].name
    except Exception:
        picked = None
    return {} if picked == backend else {"backend": backend}


def _copy_into(out: Any, x: Any) -> Any:
    out[...] = x
    return out


def bytes_moved(case: BenchCase) -> int | None:
    """Bytes that must cross memory: one read and one write forward, two reads and a
    write backward and for cross-entropy's loss plus gradient; None for autograd."""
    n = (
        int(np.prod(case.shape))
        * np.dtype(case.dtype if case.dtype != "bfloat16" else "float16").itemsize
    )
    return {"forward": 2 * n, "out": 2 * n, "backward": 3 * n, "cross_entropy": 3 * n}.get(
        case.kind
    )
