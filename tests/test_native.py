"""The compiled NumPy kernels' own contract, beyond what the conformance suite checks on
every path: their exp against float64 over every float32 input, exact float16
conversions, every instruction set this CPU runs giving the documented results, the
module refusing views that reach outside their arrays, and the switch between the
compiled and pure-NumPy kernels."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

native = pytest.importorskip(
    "softmax_dispatch_numpy._native", reason="the compiled kernels are not built here"
)


import softmax_dispatch as sd  # noqa: E402

#: The instruction sets this build has that this CPU runs (the others are skipped,
#: named in the reason).
RUNNABLE = [name for name, ok in native.isas() if ok]
NOT_HERE = [name for name, ok in native.isas() if not ok]
ISAS = [
    pytest.param(name, marks=pytest.mark.skipif(name in NOT_HERE, reason=f"no {name} here"))
    for name, _ in native.isas()
]


@pytest.fixture
def isa(request):
    before = native.use_isa(request.param)
    yield request.param
    native.use_isa(before)


def _f32_ulps(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|got - ref| in units of float32's spacing at ``ref`` (subnormal spacing below
    the smallest normal); ``ref`` float64 and finite in float32."""
    r32 = np.abs(ref).astype(np.float32)
    e = ((r32.view(np.uint32) >> 23) & 0xFF).astype(np.int64)
    spacing = ((np.maximum(e, 1) - 150 + 1023) << 52).view(np.float64)
    return np.abs(got.astype(np.float64) - ref) / spacing


#: exp's bounds in ulps, with FMA (AVX2, AVX-512; NEON) and without (the x86 SSE2
#: baseline rounds every product); the measured maxima are in docs/numerics.md
EXP_F32_ULPS = {"fma": 1.02, "baseline": 1.5}
EXP_F64_ULPS = {"fma": 1.0, "baseline": 1.5}


def _bound(table: dict[str, float], isa: str) -> float:
    plain = (
        isa == "baseline"
        and not sys.platform.startswith("darwin")
        and os.uname().machine in ("x86_64", "AMD64")
    )
    return table["baseline" if plain else "fma"]


@pytest.mark.parametrize("isa", ISAS, indirect=True)
def test_exp_is_within_one_ulp_on_every_float32_input(isa):
    """Every float32 from -104 to 89 (2.2e9 inputs, in chunks), and the ends beyond."""
    lo, hi = np.float32(-104.0), np.float32(89.0)
    finite_max = np.log(np.float64(np.finfo(np.float32).max))
    worst, at = 0.0, None
    step = 1 << 24
    for start, stop in (
        (0, int(hi.view(np.uint32)) + 1),
        (0x80000000, int(lo.view(np.uint32)) + 1),
    ):
        for a in range(start, stop, step):
            x = np.arange(a, min(a + step, stop), dtype=np.uint32).view(np.float32)
            got = native.exp(x)
            x64 = x.astype(np.float64)
            ref = np.exp(x64)
            over = x64 > finite_max
            assert np.all(np.isposinf(got[over])), "exp overflows to inf"
            keep = ~over
            err = _f32_ulps(got[keep], ref[keep])
            i = int(np.argmax(err))
            if err[i] > worst:
                worst, at = float(err[i]), float(x[keep][i])
    print(f"{isa}: exp max error {worst:.4f} ulp at {at!r}")
    assert worst <= _bound(EXP_F32_ULPS, isa), (worst, at)
    specials = np.array([np.inf, -np.inf, np.nan, -0.0, 0.0, -1e30, 1e30, -105.0, 90.0])
    got = native.exp(specials.astype(np.float32))
    np.testing.assert_array_equal(got, np.exp(specials).astype(np.float32))


@pytest.mark.parametrize("isa", ISAS, indirect=True)
def test_exp_float64_is_within_one_ulp_of_long_double(isa):
    rng = np.random.default_rng(0)
    x = np.concatenate([
        rng.uniform(-746.0, 710.0, 2_000_000),
        rng.uniform(-1.0, 1.0, 500_000),
        rng.uniform(-745.2, -708.0, 200_000),  # subnormal results
        [0.0, -0.0, 709.78, -745.13, 1e-300, -1e-300],
    ])  # fmt: skip
    got = native.exp(x)
    ref = np.exp(x.astype(np.longdouble))
    finite = np.isfinite(ref.astype(np.float64))
    spacing = np.spacing(np.abs(ref[finite].astype(np.float64)))
    spacing = np.maximum(spacing, np.float64(2.0**-1074))
    err = np.abs((got[finite].astype(np.longdouble) - ref[finite]) / spacing).astype(np.float64)
    print(f"{isa}: float64 exp max error {err.max():.4f} ulp")
    assert err.max() <= _bound(EXP_F64_ULPS, isa), (err.max(), x[finite][np.argmax(err)])
    specials = np.array([np.inf, -np.inf, np.nan, -800.0, 800.0])
    np.testing.assert_array_equal(native.exp(specials), np.exp(specials))


@pytest.mark.parametrize("isa", ISAS, indirect=True)
def test_float16_conversions_are_exact_and_round_to_nearest_even(isa):
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    halves = every.view(np.float16)
    np.testing.assert_array_equal(native.half_to_float(every), halves.astype(np.float32))
    # every float16 and the float32 midpoints between neighbours (ties to even), and
    # values around the overflow and subnormal boundaries
    f = halves[np.isfinite(halves)].astype(np.float32)
    f.sort()
    mids = ((f[1:].astype(np.float64) + f[:-1]) / 2).astype(np.float32)
    near = np.nextafter(mids, np.float32(np.inf)), np.nextafter(mids, -np.float32(np.inf))
    probe = np.concatenate([f, mids, *near, [65504.0, 65519.0, 65520.0, 1e9, np.inf, np.nan]])
    probe = probe.astype(np.float32)
    got = native.float_to_half(probe).view(np.float16)
    want = probe.astype(np.float16)
    np.testing.assert_array_equal(
        got.view(np.uint16)[~np.isnan(want)], want.view(np.uint16)[~np.isnan(want)]
    )
    assert np.all(np.isnan(got[np.isnan(want)]))


def _softmax64(x: np.ndarray, axis: int) -> np.ndarray:
    """The softmax in long double (x86: 64-bit mantissa), rounded to float64: exact to
    float64's last bit for the float64 inputs here."""
    z = x.astype(np.longdouble)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float64)


@pytest.mark.parametrize("isa", ISAS, indirect=True)
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_every_instruction_set_is_as_accurate_as_the_dtype_allows(isa, dtype, axis):
    """Each kernel family (rows, columns; forward, backward; cross-entropy) on each
    instruction set, against float64: within a few spacings of the dtype."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((37, 301)) * 4).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    eps = float(np.finfo(dtype).eps)
    y = sd.softmax(x, axis)
    ref = _softmax64(x, axis)
    assert np.max(np.abs(y - ref) / (ref + np.finfo(dtype).tiny)) < 8 * eps
    ly = sd.log_softmax(x, axis)
    assert np.max(np.abs(ly - np.log(ref))) < 8 * eps * (1 + np.abs(np.log(ref)).max())
    y64 = ref
    dx = sd.softmax_backward(g, y, axis)
    g64 = g.astype(np.float64)
    y_used = y.astype(np.float64)
    want = y_used * (g64 - (g64 * y_used).sum(axis=axis, keepdims=True))
    assert np.max(np.abs(dx - want)) < 16 * eps * np.abs(g64).max()
    t = rng.integers(0, x.shape[axis], size=x.shape[1 - (axis % 2)])
    loss = sd.softmax_cross_entropy(x, t, axis, reduction="none")
    logp = np.log(y64)
    picked = np.take_along_axis(logp, np.expand_dims(t, axis), axis).squeeze(axis)
    np.testing.assert_allclose(loss.astype(np.float64), -picked, rtol=16 * eps, atol=16 * eps)


def test_the_module_refuses_a_view_that_reaches_outside_its_array():
    x = np.zeros((4, 8), np.float32)
    y = np.empty_like(x)
    rows = ((8, 1, 0), (8, 1, 0), (8, 1, 0), (0, 0, 0), False)
    with pytest.raises(ValueError, match="reaches outside"):
        native.norm(0, x, None, y, None, (4, 9, 1), *rows)
    with pytest.raises(ValueError, match="reaches outside"):
        native.norm(0, x, None, y, None, (5, 8, 1), *rows)
    with pytest.raises(ValueError, match="unit strides"):
        native.norm(
            0, x, None, y, None, (4, 4, 1), (8, 2, 0), (8, 2, 0), (8, 2, 0), (0, 0, 0), False
        )
    with pytest.raises(TypeError, match="one dtype"):
        native.norm(0, x.astype(np.float64), None, y, None, (4, 8, 1), *rows)
    y.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        native.norm(0, x, None, y, None, (4, 8, 1), *rows)


def test_a_transposed_input_runs_without_a_copy_and_keeps_its_layout():
    x = np.random.default_rng(4).standard_normal((300, 200)).T
    y = sd.softmax(x)
    assert y.flags.f_contiguous and not y.flags.c_contiguous
    np.testing.assert_allclose(y, _softmax64(x, -1), rtol=1e-13)


def _status(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = (
        "import softmax_dispatch as sd, numpy as np\n"
        "info = sd.get_backend('numpy')\n"
        "print(info.kernels_status)\n"
        "print(sd.softmax(np.zeros(4))[0])\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env},
        timeout=120,
    )  # fmt: skip


def test_the_environment_variable_forces_either_path():
    pure = _status({"SOFTMAX_DISPATCH_NUMPY_KERNELS": "pure"})
    assert pure.returncode == 0, pure.stderr
    assert pure.stdout.splitlines() == ["pure NumPy (SOFTMAX_DISPATCH_NUMPY_KERNELS=pure)", "0.25"]
    compiled = _status({"SOFTMAX_DISPATCH_NUMPY_KERNELS": "compiled"})
    assert compiled.returncode == 0, compiled.stderr
    assert compiled.stdout.splitlines()[0] == f"compiled ({RUNNABLE[0]})"


def test_an_instruction_set_can_be_chosen_and_a_missing_one_is_an_error():
    base = _status({"SOFTMAX_DISPATCH_NUMPY_ISA": "baseline"})
    assert base.stdout.splitlines()[0] == "compiled (baseline)", base.stderr
    bad = _status({"SOFTMAX_DISPATCH_NUMPY_ISA": "sse9"})
    assert bad.returncode != 0
    assert "SOFTMAX_DISPATCH_NUMPY_ISA='sse9': no sse9 kernels in this build" in bad.stderr


def test_threads_do_not_change_a_bit(monkeypatch):
    """Large calls are cut into chunks shared among the kernels' threads: the result is
    the same bits on 1 thread and on 3, for every kernel family."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((512, 1100)) * 3).astype(np.float32)  # 2.2 MiB: threaded
    t = rng.integers(0, 1100, 512)
    calls = {
        "rows": lambda: sd.softmax(x),
        "columns": lambda: sd.log_softmax(x, axis=0),
        "backward": lambda: sd.softmax_backward(x, x, axis=0),
        "cross_entropy": lambda: sd.softmax_cross_entropy_backward(x, t, reduction="sum"),
        "mean": lambda: sd.softmax_cross_entropy(x, t),
    }
    monkeypatch.setenv("SOFTMAX_DISPATCH_NUM_THREADS", "1")
    one = {k: f() for k, f in calls.items()}
    monkeypatch.setenv("SOFTMAX_DISPATCH_NUM_THREADS", "3")
    for k, f in calls.items():
        np.testing.assert_array_equal(f(), one[k], err_msg=k)


def _layouts(rng: np.random.Generator):
    """(name, array) in the layouts the kernels take without a copy, and some they do
    not: C order, transposed, strided slices, permuted 3-d."""
    base = rng.standard_normal((12, 9, 20)) * 3
    yield "c", base
    yield "transposed", base.transpose(2, 1, 0)
    yield "permuted", base.transpose(1, 0, 2)
    yield "sliced", base[:, ::2, 3:17]
    yield "reversed", base[::-1, :, ::-3]
    yield "matrix.T", np.ascontiguousarray(base[:, 0, :]).T


@pytest.mark.parametrize("axis", [0, 1, -1, (1, 2), (0, 1)])
def test_every_layout_gives_the_pure_kernels_results(axis):
    """The compiled kernels on every layout and axis, with and without a mask and
    out=, against the pure-NumPy kernels (float64: the two differ by rounding only)."""
    from softmax_dispatch._dispatch import kernel_variant

    rng = np.random.default_rng(6)
    for name, x in _layouts(rng):
        if isinstance(axis, tuple) and x.ndim < 3:
            continue
        g = rng.standard_normal(x.shape)
        mask = rng.random(x.shape) < 0.7
        row_mask = rng.random(x.shape[-1:]) < 0.8  # broadcast along every other axis
        for where in (None, mask, row_mask):
            y, ly = sd.softmax(x, axis, where=where), sd.log_softmax(x, axis, where=where)
            calls = [(sd.softmax, (x,)), (sd.log_softmax, (x,))]
            calls += [(sd.softmax_backward, (g, y)), (sd.log_softmax_backward, (g, ly))]
            for fn, args in calls:
                got = fn(*args, axis, where=where)
                out = np.empty(x.shape, order="F")
                assert fn(*args, axis, where=where, out=out) is out
                with kernel_variant("pure"):
                    want = fn(*args, axis, where=where)
                shown = None if where is None else where.shape
                msg = f"{fn.__name__} {name} axis={axis} where={shown}"
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13, err_msg=msg)
                np.testing.assert_array_equal(out, got, err_msg=msg)


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("target_kind", ["index", "probabilities"])
def test_cross_entropy_on_every_layout_gives_the_pure_kernels_results(axis, target_kind):
    from softmax_dispatch._dispatch import kernel_variant

    rng = np.random.default_rng(7)
    for name, x in _layouts(rng):
        if x.ndim == 2 and axis == 1:
            continue
        n = x.shape[axis]
        sample = x.shape[: axis % x.ndim] + x.shape[axis % x.ndim + 1 :]
        if target_kind == "index":
            t = rng.integers(0, n, size=sample)
            t.flat[::5] = -1
            kw = dict(ignore_index=-1)
        else:
            t = rng.random(x.shape).T.copy().T  # another layout than the logits'
            kw = {}
        grad = rng.random(sample)
        for red in ("mean", "sum", "none"):
            opts = dict(kw, reduction=red, label_smoothing=0.1, weight=rng.random(n) + 0.1)
            gr = grad if red == "none" else 0.7
            got = sd.softmax_cross_entropy(x, t, axis, **opts)
            dgot = sd.softmax_cross_entropy_backward(x, t, gr, axis, **opts)
            with kernel_variant("pure"):
                want = sd.softmax_cross_entropy(x, t, axis, **opts)
                dwant = sd.softmax_cross_entropy_backward(x, t, gr, axis, **opts)
            msg = f"{name} axis={axis} {target_kind} {red}"
            np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=msg)
            np.testing.assert_allclose(dgot, dwant, rtol=1e-11, atol=1e-15, err_msg=msg)


@pytest.mark.parametrize("isa", ISAS, indirect=True)
def test_rows_whose_results_reach_the_subnormals_round_them_once(isa):
    """Rows spanning more than exp's fast range (outputs down to float32's subnormals and
    zero) take the checked exp: every output within a few of float32's spacings of
    float64's, the subnormal ones too (a flushed or a garbled one is off by up to 2**23)."""
    rng = np.random.default_rng(9)
    x = rng.uniform(-110.0, 0.0, (33, 257)).astype(np.float32)
    x[:, 0] = 0.0
    y = sd.softmax(x)
    ref = _softmax64(x, -1)
    err = _f32_ulps(y, ref)
    assert err.max() <= 8, err.max()
    assert np.any((y > 0) & (y < np.finfo(np.float32).tiny))  # (subnormal results)
