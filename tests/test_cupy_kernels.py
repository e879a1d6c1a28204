"""The CuPy backend's CUDA kernels without a GPU.

- Every template instantiation a launch plan can name compiles, with no warning: with
  ``nvcc --ptx`` for sm_80 and sm_90 (and to an sm_90 cubin, so that ptxas reports
  register spills), and through NVRTC, which CuPy uses and which needs no driver.
- The row-state arithmetic every kernel folds, merges and normalises rows with (host
  code too) gives NumPy's written-once results on rows cut into chunks in every way,
  including chunks that are all -inf, NaN, +inf and masks.
- The Python side (``_kernels``: layouts, masks, ``out=``, cross-entropy's reductions and
  scales) launches each kernel with the argument list softmax.cu declares and, on a NumPy
  emulation of the kernels' algorithm (``tests/cupy_emulator.py``), gives the written-once
  kernels' results for every dtype, layout and variant.

What only a GPU can check (the kernels' own code, speed) is ``benchmarks/gpu_check.sh``'s.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from softmax_dispatch_cupy import _geometry, _module

from softmax_dispatch import _ops

ROOT = Path(__file__).parents[1]
HARNESS = ROOT / "tests" / "cuda" / "row_state_check.cpp"


def _load_emulator():
    spec = importlib.util.spec_from_file_location(
        "cupy_emulator", ROOT / "tests" / "cupy_emulator.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


emulator = _load_emulator()


# --------------------------------------------------------------------------- compiling
def _every_instantiation(tmp_path: Path) -> Path:
    """A translation unit that takes the address of every instantiation (which
    instantiates it) next to the source."""
    names = _geometry.instantiations()
    unit = tmp_path / "every_kernel.cu"
    unit.write_text(
        f'#include "{_module.SOURCE}"\n'
        "extern void* const sd_every_kernel[];\n"
        "void* const sd_every_kernel[] = {\n"
        + ",\n".join(f"    (void*)&{n}" for n in names)
        + "\n};\n"
    )
    return unit


NVCC = shutil.which("nvcc")


def _nvcc(unit: Path, arch: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [NVCC, f"-arch={arch}", "-std=c++17", "-Werror", "all-warnings", *extra, str(unit)]
    return subprocess.run([*cmd, "-o", str(out)], capture_output=True, text=True, cwd=out.parent)


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on the PATH (the NVRTC test still runs)")
def test_every_instantiation_compiles_with_nvcc_for_sm_80(tmp_path):
    unit = _every_instantiation(tmp_path)
    proc = _nvcc(unit, "sm_80", tmp_path / "every_kernel.ptx", "--ptx")
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    entries = (tmp_path / "every_kernel.ptx").read_text().count(".entry ")
    assert entries == len(_geometry.instantiations())


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on the PATH (the NVRTC test still runs)")
def test_every_instantiation_compiles_for_sm_90_without_a_register_spill(tmp_path):
    """To a cubin, keeping the PTX (``--ptx``'s output) on the way: ptxas then reports
    each kernel's registers and spills."""
    unit = _every_instantiation(tmp_path)
    proc = _nvcc(unit, "sm_90", tmp_path / "every_kernel.cubin", "-cubin", "-keep", "-Xptxas", "-v")
    assert proc.returncode == 0, proc.stderr
    assert not [line for line in proc.stderr.splitlines() if "warning" in line.lower()]
    (ptx,) = tmp_path.glob("*.ptx")
    assert ptx.read_text().count(".entry ") == len(_geometry.instantiations())
    spills = [line for line in proc.stderr.splitlines() if "spill" in line]
    assert len(spills) == len(_geometry.instantiations())
    assert all("0 bytes spill stores, 0 bytes spill loads" in line for line in spills), spills


def _nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception as exc:  # CuPy missing, or its NVRTC library
        pytest.skip(f"NVRTC through CuPy is not usable here: {type(exc).__name__}: {exc}")
    return nvrtc


@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
def test_every_instantiation_compiles_with_nvrtc(arch):
    """As CuPy's RawModule compiles them (NVRTC, the same options), without a driver."""
    nvrtc = _nvrtc()
    names = _geometry.instantiations()
    program = nvrtc.createProgram(_module.source(), "softmax.cu", [], [])
    for name in names:
        nvrtc.addNameExpression(program, name)
    try:
        nvrtc.compileProgram(program, [*_module.OPTIONS, f"--gpu-architecture={arch}"])
    finally:
        log = nvrtc.getProgramLog(program)
    assert log.strip() == ""  # no error, no warning
    lowered = {nvrtc.getLoweredName(program, name) for name in names}
    assert len(lowered) == len(names)
    ptx = nvrtc.getPTX(program)
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    assert all(f".entry {name}(" in ptx for name in lowered)


def test_no_option_relaxes_ieee_arithmetic():
    assert not any("fast" in o or "ftz" in o or "prec" in o for o in _module.OPTIONS)
    assert "__expf" not in _module.source() and "__logf" not in _module.source()


# -------------------------------------------------------------- row state, on the host
@pytest.fixture(scope="module")
def row_state(tmp_path_factory):
    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler on the PATH")
    exe = tmp_path_factory.mktemp("row_state") / "row_state_check"
    cmd = [
        compiler,
        "-O1",
        "-std=c++17",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-Wno-unknown-pragmas",
        str(HARNESS),
        "-o",
        str(exe),
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return exe


def _cases(rng: np.random.Generator):
    specials = [np.inf, -np.inf, np.nan]
    for _ in range(400):
        n = int(rng.integers(1, 12))
        x = rng.normal(0, 3, n)
        kind = rng.integers(0, 6)
        if kind == 0:  # a block of -inf
            b = int(rng.integers(0, n))
            x[b : b + int(rng.integers(1, n + 1))] = -np.inf
        elif kind == 1:
            x[rng.integers(0, n)] = specials[rng.integers(0, 3)]
        elif kind == 2:
            x[:] = -np.inf
        elif kind == 3:
            x += 1e4 if rng.random() < 0.5 else -1e4
        masked = bool(rng.random() < 0.5)
        keep = rng.random(n) < 0.6 if masked else np.ones(n, bool)
        if masked and rng.random() < 0.15:
            keep[:] = False
        cuts = (
            sorted(set(rng.integers(1, n, size=int(rng.integers(0, n))).tolist())) if n > 1 else []
        )
        yield x, masked, keep, cuts


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_state_gives_the_written_once_results_on_every_cut(row_state, dtype):
    import array_api_compat.numpy as xp

    cases = list(_cases(np.random.default_rng(7)))
    text = []
    for x, masked, keep, cuts in cases:
        text.append(f"{'f' if dtype == np.float32 else 'd'} {int(masked)} {len(x)} {len(cuts)}")
        text.append(" ".join(repr(float(v)) for v in x.astype(dtype)))
        text.append(" ".join(str(int(k)) for k in keep))
        text.append(" ".join(map(str, cuts)))
    out = subprocess.run(
        [str(row_state)], input="\n".join(text) + "\n", capture_output=True, text=True, check=True
    )
    values = np.array([float(v) for v in out.stdout.split()])
    at = 0
    tol = dict(rtol=2e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    for x, masked, keep, cuts in cases:
        xd = x.astype(dtype)
        where = keep if masked else None
        want = np.concatenate(
            [_ops.softmax(xp, xd, (0,), where), _ops.log_softmax(xp, xd, (0,), where)]
        )
        for _order in range(2):  # left-to-right merge, then tree merge
            got = values[at : at + 2 * len(x)]
            at += 2 * len(x)
            np.testing.assert_allclose(
                got, want, equal_nan=True, err_msg=f"{x} {keep} {cuts}", **tol
            )
    assert at == values.size


# ---------------------------------------------------------- the Python side, emulated
cupy = pytest.importorskip("cupy", reason="the CuPy backend's Python side imports CuPy")


@pytest.fixture
def kernels(monkeypatch):
    from softmax_dispatch_cupy import _kernels

    emu = emulator.Emulator()
    monkeypatch.setattr(_kernels, "cupy", emulator.FAKE_CUPY)
    monkeypatch.setattr(_kernels, "launch", emu.launch)
    # small limits: splits, grid-stride loops and the online variant at small sizes
    small = _geometry.Limits(sms=2, max_shared=16 * 1024, max_grid=7)
    monkeypatch.setattr(_kernels, "limits", lambda device_id: small)
    _kernels.emulator = emu
    return _kernels


def _array(rng, shape, dtype, aligned=True, specials=True):
    x = rng.normal(0, 2, shape)
    if specials and x.ndim and x.shape[-1] > 3:
        x.reshape(-1, x.shape[-1])[::5, 1] = -np.inf
        x.reshape(-1, x.shape[-1])[3::11, 2] = np.inf
        x.reshape(-1, x.shape[-1])[4::13, :] = -np.inf
    x = x.astype(dtype)
    if not aligned:  # one element past an aligned start: scalar (vec = 1) kernels
        buf = np.empty(x.size + 1, dtype)
        buf[1:] = x.reshape(-1)
        x = buf[1:].reshape(shape)
    return emulator.fake(x)


def _f64(a):
    """Floating arrays in float64: the references compute there (the emulator, like the
    kernels' float32 arithmetic for float16, rounds only its results)."""
    return a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a


TOL = {
    np.float16: dict(rtol=4e-3, atol=1e-3),
    np.float32: dict(rtol=3e-5, atol=1e-6),
    np.float64: dict(rtol=1e-12, atol=1e-12),
}
LAYOUTS = [
    ((6, 10), 1, "warp"),
    ((3, 1000), 1, "warp"),
    ((5, 3000), 1, "block"),
    ((6, 5000), 1, "partial"),  # online: too long for the (small) shared memory
    ((2, 9000), 1, "partial"),  # few rows: split across blocks
    ((40, 64), 0, "column"),
    ((3, 50, 4), 1, "warp"),  # inner 4: moved last by a copy
    ((2, 3, 300, 33), 2, "column"),
    ((4, 30, 2), 1, "warp"),  # inner 2
    ((7,), 0, "warp"),
]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape, axis, variant", LAYOUTS)
@pytest.mark.parametrize("masked", [None, "full", "broadcast"])
@pytest.mark.parametrize("aligned", [True, False])
def test_forward_and_backward_match_the_written_once_kernels(
    kernels, dtype, shape, axis, variant, masked, aligned
):
    """``variant``: the kernel float32 gets (float64 rows hold half as many values)."""
    import array_api_compat.numpy as xp

    rng = np.random.default_rng(sum(shape) + axis)
    x = _array(rng, shape, dtype, aligned)
    where = None
    if masked == "full":  # with one fully masked row (when there are several)
        n = shape[axis]
        moved = rng.random((*shape[:axis], *shape[axis + 1 :], n)) < 0.7
        moved.reshape(-1, n)[min(1, moved.size // n - 1)] = False
        where = emulator.fake(np.moveaxis(moved, -1, axis))
    elif masked == "broadcast":
        where = emulator.fake(rng.random((1,) * (len(shape) - 1) + shape[-1:]) < 0.7)
    tol = TOL[dtype]
    for log in (False, True):
        fused = kernels.log_softmax if log else kernels.softmax
        ref = _ops.log_softmax if log else _ops.softmax
        kernels.emulator.calls.clear()
        y = fused(xp, x, (axis,), where, None)
        assert y.shape == x.shape and y.dtype == x.dtype
        if dtype == np.float32:
            assert any(variant in call for call in kernels.emulator.calls), kernels.emulator.calls
        np.testing.assert_allclose(
            y.astype(np.float64), ref(xp, _f64(x), (axis,), where), equal_nan=True, **tol
        )
        grad = _array(rng, shape, dtype, aligned, specials=False)
        y_ok = emulator.fake(
            np.ascontiguousarray(np.nan_to_num(np.asarray(y), nan=0.0, neginf=-30.0))
        )
        bwd = kernels.log_softmax_backward if log else kernels.softmax_backward
        bref = _ops.log_softmax_backward if log else _ops.softmax_backward
        dx = bwd(xp, grad, y_ok, (axis,), where, None)
        want = bref(xp, _f64(grad), _f64(y_ok), (axis,), where)
        np.testing.assert_allclose(dx.astype(np.float64), want, equal_nan=True, **tol)


def test_out_is_written_directly_only_when_it_shares_no_memory(kernels):
    import array_api_compat.numpy as xp

    rng = np.random.default_rng(0)
    x = _array(rng, (8, 100), np.float32)
    out = emulator.fake(np.empty_like(x))
    assert kernels.softmax(xp, x, (1,), None, out) is out
    np.testing.assert_allclose(out, _ops.softmax(xp, x, (1,)), rtol=3e-5)
    # in place: the kernel writes a fresh array (the public layer then copies it in)
    res = kernels.softmax(xp, x, (1,), None, x)
    assert res is not x and not np.shares_memory(res, x)
    # a non-contiguous out: a fresh result too
    wide = emulator.fake(np.empty((8, 200), np.float32))
    assert kernels.softmax(xp, x, (1,), None, wide[:, ::2]) is not wide


def test_what_the_kernels_do_not_cover_goes_to_the_written_once_kernels(kernels):
    import array_api_compat.numpy as xp

    rng = np.random.default_rng(1)
    x = _array(rng, (4, 5, 6), np.float32)
    kernels.emulator.calls.clear()
    np.testing.assert_allclose(
        kernels.softmax(xp, x, (1, 2)), _ops.softmax(xp, x, (1, 2)), rtol=1e-6
    )
    g64 = emulator.fake(rng.normal(size=(4, 5, 6)))
    y = kernels.softmax(xp, x, (2,))
    np.testing.assert_allclose(
        kernels.softmax_backward(xp, g64, y, (2,)),
        _ops.softmax_backward(xp, g64, y, (2,)),
        rtol=1e-6,
    )
    calls = [call.split("<")[0] for call in kernels.emulator.calls]
    assert calls == ["sd_forward_warp"]  # only the single-axis softmax


CE_CASES = [
    dict(shape=(16, 40), axis=1, weight=False, ignore=None, eps=0.0),
    dict(shape=(16, 40), axis=1, weight=True, ignore=3, eps=0.1),
    dict(shape=(5, 3000), axis=1, weight=True, ignore=-100, eps=0.0),
    dict(shape=(4, 12, 3), axis=1, weight=False, ignore=2, eps=0.2),  # PyTorch's (N, C, d)
    dict(shape=(9, 17), axis=-1, weight=True, ignore=None, eps=0.05),
    dict(shape=(3, 5000), axis=1, weight=True, ignore=None, eps=0.1),  # not on chip
]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize(
    "case", CE_CASES, ids=lambda c: f"{c['shape']}-{c['weight']}-{c['ignore']}-{c['eps']}"
)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_the_written_once_kernels(kernels, dtype, case, reduction):
    import array_api_compat.numpy as xp

    rng = np.random.default_rng(len(case["shape"]) * 7 + case["shape"][-1])
    shape, axis = case["shape"], case["axis"] % len(case["shape"])
    logits = _array(rng, shape, dtype, specials=False)
    classes = shape[axis]
    sample = tuple(s for i, s in enumerate(shape) if i != axis)
    target = rng.integers(0, classes, sample)
    target.reshape(-1)[::7] = classes  # out of range: NaN, no host synchronisation
    if case["ignore"] is not None:
        target.reshape(-1)[1::5] = case["ignore"]
    target = emulator.fake(target.astype(np.int32))
    weight = emulator.fake(rng.random(classes) + 0.5) if case["weight"] else None
    opts = dict(
        weight=weight,
        ignore_index=case["ignore"],
        label_smoothing=case["eps"],
        reduction=reduction,
        index_target=True,
    )
    tol = TOL[dtype]
    got = kernels.cross_entropy(xp, logits, target, axis, **opts)
    ref_opts = {**opts, "weight": _f64(weight)}
    want = _ops.cross_entropy(xp, _f64(logits), target, axis, **ref_opts)
    assert got.dtype == logits.dtype and np.shape(got) == np.shape(want)
    np.testing.assert_allclose(
        np.asarray(got, np.float64), np.asarray(want, np.float64), equal_nan=True, **tol
    )
    grad = emulator.fake(rng.random(sample).astype(dtype)) if reduction == "none" else 0.5
    kernels.emulator.calls.clear()
    got = kernels.cross_entropy_backward(xp, logits, target, grad, axis, **opts)
    (call,) = kernels.emulator.calls
    onchip = shape[axis] * np.dtype(dtype).itemsize * (2 if dtype == np.float16 else 1) <= 15 * 1024
    assert call.startswith("sd_ce_backward<") and call.endswith(f"{str(onchip).lower()}>")
    want = _ops.cross_entropy_backward(xp, _f64(logits), target, _f64(grad), axis, **ref_opts)
    assert got.shape == logits.shape and got.dtype == logits.dtype and got.flags.c_contiguous
    np.testing.assert_allclose(
        got.astype(np.float64), want.astype(np.float64), equal_nan=True, **tol
    )


def test_mean_over_no_counted_weight_has_exactly_zero_gradient(kernels):
    """As the written-once kernels' safe division: 0 even where the logits are NaN; an
    out-of-range class index still NaN."""
    import array_api_compat.numpy as xp

    logits = emulator.fake(np.random.default_rng(3).normal(size=(6, 40)))
    logits[2, 5] = np.nan
    target = emulator.fake(np.array([1, 2, 3, 1, 40, 2]))
    weight = emulator.fake(np.zeros(40))
    opts = dict(
        weight=weight, ignore_index=None, label_smoothing=0.0, reduction="mean", index_target=True
    )
    got = kernels.cross_entropy_backward(xp, logits, target, 1.0, 1, **opts)
    want = _ops.cross_entropy_backward(xp, logits, target, 1.0, 1, **opts)
    np.testing.assert_array_equal(got, want)
    assert (got[[0, 1, 2, 3, 5]] == 0).all() and np.isnan(got[4]).all()


def test_a_kernel_called_with_the_wrong_arguments_is_caught_by_the_emulator():
    """The emulator's checks have teeth: one argument too few, a wrong scalar type."""
    emu = emulator.Emulator()
    x = emulator.fake(np.zeros((2, 8), np.float32))
    plan = _geometry.forward_plan(2, 8, "float32", 4, _geometry.H100).launches[0]
    args = (
        x,
        x,
        emulator.fake(np.empty_like(x)),
        np.int64(2),
        np.int64(8),
        np.int32(0),
        np.int32(0),
    )
    emu.launch(0, plan, args)
    with pytest.raises(AssertionError):
        emu.launch(0, plan, args[:-1])
    with pytest.raises(AssertionError):
        emu.launch(0, plan, (*args[:3], 2, *args[4:]))
    with pytest.raises(AssertionError):
        emu.launch(0, plan, (x.astype(np.float64), *args[1:]))
