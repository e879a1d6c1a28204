"""A CPU stand-in for the CuPy backend's CUDA kernels, for tests on machines without a GPU.

``Emulator.launch`` takes exactly what ``softmax_dispatch_cupy._module.launch`` takes. It
first checks the call against the kernel's parameter list *as written in softmax.cu*
(count, order, pointer element types, scalar types, contiguity, the alignment a vector
width promises, sizes), then does the kernel's work in NumPy, following the kernel's
algorithm (per-chunk partial states merged in chunk order, the same policies), so that the
Python side (layouts, ``out=``, masks, the reductions and scales of cross-entropy) can be
compared with the written-once kernels. ``FAKE_CUPY`` is the part of CuPy ``_kernels``
uses, on NumPy arrays that carry a ``.device`` and a ``.data.ptr``.
"""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Any

import numpy as np

SOURCE = (
    Path(__file__).parents[1] / "backends" / "softmax_dispatch_cupy" / "cuda" / "softmax.cu"
).read_text()
_CTYPES = {"sd_half": np.float16, "float": np.float32, "double": np.float64}


def signatures() -> dict[str, list[tuple[str, str]]]:
    """``{kernel: [(type, name), ...]}`` from the CUDA source."""
    found = {}
    for name, params in re.findall(
        r"__global__ void (?:__launch_bounds__\(\w+\) )?(\w+)\(([^)]*)\)", SOURCE
    ):
        parts = [" ".join(p.replace("__restrict__", "").split()) for p in params.split(",")]
        found[name] = [(p.rsplit(" ", 1)[0], p.rsplit(" ", 1)[1]) for p in parts]
    return found


class _Device:
    id = 0

    def __enter__(self) -> _Device:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


class FakeArray(np.ndarray):
    """A NumPy array with what the kernels' Python side reads of a CuPy array."""

    @property
    def device(self) -> _Device:  # type: ignore[override]
        return _Device()

    @property
    def data(self) -> Any:  # type: ignore[override]
        return types.SimpleNamespace(ptr=self.__array_interface__["data"][0])


def fake(a: Any) -> Any:
    return a.view(FakeArray) if isinstance(a, np.ndarray) else a


def _wrapped(fn: Any) -> Any:
    return lambda *args, **kwargs: fake(fn(*args, **kwargs))


FAKE_CUPY = types.SimpleNamespace(
    **{
        name: _wrapped(getattr(np, name))
        for name in (
            "ascontiguousarray",
            "asarray",
            "broadcast_to",
            "count_nonzero",
            "empty",
            "moveaxis",
            "where",
            "zeros",
        )
    },
    may_share_memory=np.may_share_memory,
)


# ------------------------------------------------------------------- the kernels' math
def _state(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``v`` (masked entries -inf): the NaN-propagating max, and the sum of
    exp(v - max) where that max is finite (0 otherwise)."""
    with np.errstate(all="ignore"):
        m = np.max(v, axis=1)
        fin = np.isfinite(m)
        shifted = np.where(fin[:, None], v - np.where(fin, m, 0)[:, None], -np.inf)
        return m, np.where(fin, np.exp(shifted).sum(axis=1), 0.0)


def _merge(m: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``row_merge`` over axis 1, left to right."""
    rm, rs = np.full(m.shape[0], -np.inf), np.zeros(m.shape[0])
    with np.errstate(all="ignore"):
        for k in range(m.shape[1]):
            nm = np.where(np.isnan(rm) | np.isnan(m[:, k]), np.nan, np.maximum(rm, m[:, k]))
            fin = np.isfinite(nm)
            safe = np.where(fin, nm, 0)
            both = rs * np.exp(rm - safe) + s[:, k] * np.exp(m[:, k] - safe)
            rm, rs = nm, np.where(fin, both, 0.0)
    return rm, rs


def _normalise(v, m, s, any_, masked, log, keep=None) -> np.ndarray:
    """``row_norm`` and ``norm_value``: rows of ``v`` (masked entries -inf; ``keep``
    false there)."""
    with np.errstate(all="ignore"):
        out = (v - m[:, None]) - np.log(s)[:, None] if log else np.exp(v - m[:, None]) / s[:, None]
    all_masked = masked & ~any_
    nan = ~all_masked & (~(m < np.inf) | ~(s > 0))
    out[all_masked] = -np.inf if log else 0.0
    out[nan] = np.nan
    return out if keep is None else np.where(keep, out, -np.inf if log else 0.0)


class Emulator:
    """Launches, checked against softmax.cu and done in NumPy; ``calls`` records their
    name expressions."""

    def __init__(self) -> None:
        self.signatures = signatures()
        self.calls: list[str] = []

    # -------------------------------------------------------------------- checking
    def _check(self, kernel: str, args: tuple[Any, ...]) -> dict[str, Any]:
        base, template = kernel.split("<", 1)
        targs = [t.strip() for t in template[:-1].split(",")]
        t_dtype = np.dtype(_CTYPES[targs[0]])
        acc = np.dtype(np.float64 if t_dtype == np.float64 else np.float32)
        vec = int(targs[1]) if len(targs) > 1 else 1
        params = self.signatures[base]
        assert len(args) == len(params), (kernel, len(args), params)
        named = dict(zip((n for _, n in params), args))
        for (ctype, name), arg in zip(params, args):
            ctype = ctype.replace("const ", "")
            if ctype.endswith("*"):
                assert isinstance(arg, np.ndarray), (kernel, name, type(arg))
                assert arg.flags.c_contiguous, (kernel, name)
                element = ctype[:-1].strip()
                want = {
                    "T": t_dtype,
                    "typename Acc<T>::type": acc,
                    "int": np.dtype(np.int32),
                    "i64": np.dtype(np.int64),
                    "unsigned char": None,
                }[element]
                if element == "unsigned char":
                    if named.get("masked"):
                        assert arg.dtype in (np.bool_, np.uint8), (kernel, name, arg.dtype)
                elif not (name in ("weight", "weight_sum") and not named.get("has_weight")):
                    assert arg.dtype == want, (kernel, name, arg.dtype, want)
                if element == "T" and vec > 1:
                    assert arg.data.ptr % 16 == 0, (kernel, name, "unaligned for vec", vec)
            else:
                want = {"i64": np.int64, "int": np.int32, "typename Acc<T>::type": acc.type}
                assert type(arg) is want[ctype], (kernel, name, type(arg), want[ctype])
        width = named.get("cols", named.get("classes"))
        if width is not None:
            assert width % vec == 0, (kernel, "vec does not divide the row", vec, width)
        return {k: (v.reshape(-1) if isinstance(v, np.ndarray) else v) for k, v in named.items()}

    # ------------------------------------------------------------------- launching
    def launch(self, device_id: int, plan: Any, args: tuple[Any, ...]) -> None:
        assert device_id == 0 and plan.grid >= 1 and plan.block % 32 == 0
        a = self._check(plan.kernel, args)
        base = plan.kernel.split("<")[0]
        self.calls.append(plan.kernel)
        getattr(self, base[3:])(a)

    @staticmethod
    def _rows(a: dict[str, Any], name: str, rows: int, cols: int) -> np.ndarray:
        return a[name][: rows * cols].reshape(rows, cols).astype(np.float64)

    @staticmethod
    def _mask(a: dict[str, Any], rows: int, cols: int, like: np.ndarray) -> np.ndarray:
        if not a["masked"]:
            return np.ones_like(like, dtype=bool)
        return a["mask"][: rows * cols].reshape(rows, cols).astype(bool)

    def _forward_rows(self, x, keep, masked, log):
        v = np.where(keep, x, -np.inf)
        m, s = _state(v)
        return _normalise(v, m, s, keep.any(axis=1), bool(masked), log, keep)

    def forward_warp(self, a):
        r, c = int(a["rows"]), int(a["cols"])
        x = self._rows(a, "x", r, c)
        y = self._forward_rows(x, self._mask(a, r, c, x), a["masked"], a["log"])
        a["y"][: r * c] = y.reshape(-1)

    forward_block = forward_warp

    def _chunks(self, a):
        r, c, chunk, splits = (int(a[k]) for k in ("rows", "cols", "chunk", "splits"))
        assert (splits - 1) * chunk < c <= splits * chunk
        return r, c, [(k * chunk, min(c, (k + 1) * chunk)) for k in range(splits)]

    def forward_partial(self, a):
        r, c, chunks = self._chunks(a)
        x = self._rows(a, "x", r, c)
        keep = self._mask(a, r, c, x)
        v = np.where(keep, x, -np.inf)
        for k, (b, e) in enumerate(chunks):
            m, s = _state(v[:, b:e])
            a["part_m"][k :: len(chunks)] = m
            a["part_s"][k :: len(chunks)] = s
            a["part_any"][k :: len(chunks)] = keep[:, b:e].any(axis=1)

    def forward_finish(self, a):
        r, c, chunks = self._chunks(a)
        x = self._rows(a, "x", r, c)
        keep = self._mask(a, r, c, x)
        n = len(chunks)
        m, s = _merge(
            a["part_m"][: r * n].reshape(r, n).astype(np.float64),
            a["part_s"][: r * n].reshape(r, n).astype(np.float64),
        )
        any_ = a["part_any"][: r * n].reshape(r, n).any(axis=1)
        y = _normalise(np.where(keep, x, -np.inf), m, s, any_, bool(a["masked"]), a["log"], keep)
        a["y"][: r * c] = y.reshape(-1)

    def _columns(self, a, name):
        o, n, i = int(a["outer"]), int(a["n"]), int(a["inner"])
        arr = a[name][: o * n * i].reshape(o, n, i).astype(np.float64)
        return arr.transpose(0, 2, 1).reshape(o * i, n), (o, n, i)

    def _column_mask(self, a, shape):
        o, n, i = shape
        if not a["masked"]:
            return np.ones((o * i, n), dtype=bool)
        return (
            a["mask"][: o * n * i]
            .reshape(o, n, i)
            .astype(bool)
            .transpose(0, 2, 1)
            .reshape(o * i, n)
        )

    @staticmethod
    def _uncolumn(values, shape):
        o, n, i = shape
        return values.reshape(o, i, n).transpose(0, 2, 1).reshape(-1)

    def forward_column(self, a):
        x, shape = self._columns(a, "x")
        keep = self._column_mask(a, shape)
        a["y"][: x.size] = self._uncolumn(self._forward_rows(x, keep, a["masked"], a["log"]), shape)

    # -------------------------------------------------------------------- backward
    @staticmethod
    def _vjp(g, y, keep, log, total=None):
        g = np.where(keep, g, 0.0)
        with np.errstate(all="ignore"):
            if total is None:
                total = (g if log else g * y).sum(axis=1)
            dx = g - np.exp(y) * total[:, None] if log else y * (g - total[:, None])
        return np.where(keep, dx, 0.0)

    def backward_warp(self, a):
        r, c = int(a["rows"]), int(a["cols"])
        g, y = self._rows(a, "grad", r, c), self._rows(a, "yv", r, c)
        a["dx"][: r * c] = self._vjp(g, y, self._mask(a, r, c, g), a["log"]).reshape(-1)

    def backward_partial(self, a):
        r, c, chunks = self._chunks(a)
        g, y = self._rows(a, "grad", r, c), self._rows(a, "yv", r, c)
        g = np.where(self._mask(a, r, c, g), g, 0.0)
        with np.errstate(all="ignore"):
            terms = g if a["log"] else g * y
        for k, (b, e) in enumerate(chunks):
            a["part_t"][k :: len(chunks)] = terms[:, b:e].sum(axis=1)

    def backward_finish(self, a):
        r, c, chunks = self._chunks(a)
        g, y = self._rows(a, "grad", r, c), self._rows(a, "yv", r, c)
        n = len(chunks)
        total = a["part_t"][: r * n].reshape(r, n).astype(np.float64).sum(axis=1)
        a["dx"][: r * c] = self._vjp(g, y, self._mask(a, r, c, g), a["log"], total).reshape(-1)

    def backward_column(self, a):
        g, shape = self._columns(a, "grad")
        y, _ = self._columns(a, "yv")
        dx = self._vjp(g, y, self._column_mask(a, shape), a["log"])
        a["dx"][: g.size] = self._uncolumn(dx, shape)

    # --------------------------------------------------------------- cross-entropy
    def _ce(self, a):
        r, c = int(a["rows"]), int(a["classes"])
        x = self._rows(a, "x", r, c)
        t = a["target"][:r]
        w = a["weight"][:c].astype(np.float64) if a["has_weight"] else np.ones(c)
        ignored = (t == a["ignore"]) if a["has_ignore"] else np.zeros(r, bool)
        bad = ~ignored & ((t < 0) | (t >= c))
        logp = self._forward_rows(x, np.ones_like(x, dtype=bool), 0, True)
        return r, c, t, w, ignored, bad, logp, float(a["eps"])

    def ce_forward(self, a):
        r, c, t, w, ignored, bad, logp, eps = self._ce(a)
        safe = np.where(ignored | bad, 0, t)
        coef = (1 - eps) * w[safe]
        picked = logp[np.arange(r), safe]
        with np.errstate(all="ignore"):
            loss = -np.where(coef != 0, coef * picked, 0.0)
            spread = eps / c * w
            if eps:
                loss -= np.where(spread != 0, spread * logp, 0.0).sum(axis=1)
        a["loss"][:r] = np.where(ignored, 0.0, np.where(bad, np.nan, loss))

    def ce_backward(self, a):
        r, c, t, w, ignored, bad, logp, eps = self._ce(a)
        safe = np.where(ignored | bad, 0, t)
        total = (1 - eps) * w[safe] + eps / c * (
            float(a["weight_sum"][0]) if a["has_weight"] else c
        )
        coef = eps / c * np.broadcast_to(w, (r, c)).copy()
        coef[np.arange(r), safe] += (1 - eps) * w[safe]
        with np.errstate(all="ignore"):
            dx = a["scale"][:r, None] * (np.exp(logp) * total[:, None] - coef)
        if a["nothing_counted"][0]:
            dx[:] = 0.0
        dx[ignored] = 0.0
        dx[bad] = np.nan
        a["dx"][: r * c] = dx.reshape(-1)
