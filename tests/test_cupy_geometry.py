"""The CUDA kernels' launch geometry, on the CPU: which kernel, grid, block and shared
memory each shape gets, and that the kernels' loops (mirrored here from
``backends/softmax_dispatch_cupy/cuda/softmax.cu``) then cover every element exactly
once, including arrays of more than 2**31 elements."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from softmax_dispatch_cupy import _geometry as g

A100 = g.Limits(sms=108, max_shared=166912)
SOURCE = Path(g.__file__).with_name("cuda").joinpath("softmax.cu").read_text()
ROWS = [1, 3, 31, 132, 263, 264, 5000]
COLS = [
    1,
    2,
    7,
    8,
    31,
    32,
    33,
    100,
    256,
    512,
    513,
    1000,
    1024,
    1025,
    2048,
    4097,
    8192,
    32768,
    32769,
    100000,
    2**18,
]


def _template(kernel: str) -> list[str]:
    return [a.strip() for a in kernel[kernel.index("<") + 1 : -1].split(",")]


def _warp_cover(plan: g.Plan, rows: int, cols: int) -> Counter:
    """The elements the warp kernel touches: its loops, as written in softmax.cu."""
    (launch,) = plan.launches
    _, vec, items, width = (int(a) if a.isdigit() else a for a in _template(launch.kernel))
    per_warp = 32 // width
    warps_per_block = launch.block // 32
    stride = launch.grid * warps_per_block * per_warp
    seen: Counter = Counter()
    for block in range(launch.grid):
        for thread in range(launch.block):
            sub, group = thread % 32 % width, thread % 32 // width
            warp = block * warps_per_block + thread // 32
            base = warp * per_warp
            while base < rows:
                row = base + group
                for k in range(items):
                    j = (k * width + sub) * vec
                    if row < rows and j < cols:
                        seen.update((row, j + i) for i in range(vec))
                base += stride
    return seen


def _split_cover(plan: g.Plan, rows: int, cols: int) -> Counter:
    seen: Counter = Counter()
    launch = plan.launches[1]
    for block in range(launch.grid):
        job = block
        while job < rows * plan.splits:
            row, begin = job // plan.splits, job % plan.splits * plan.chunk
            end = min(cols, begin + plan.chunk)
            for thread in range(launch.block):
                j = begin + thread * plan.vec
                while j < end:
                    seen.update((row, j + i) for i in range(plan.vec))
                    j += launch.block * plan.vec
            job += launch.grid
    return seen


def _block_cover(plan: g.Plan, rows: int, cols: int) -> Counter:
    (launch,) = plan.launches
    seen: Counter = Counter()
    packs = cols // plan.vec
    for block in range(launch.grid):
        for row in range(block, rows, launch.grid):
            for thread in range(launch.block):
                for q in range(thread, packs, launch.block):
                    seen.update((row, q * plan.vec + i) for i in range(plan.vec))
    return seen


COVER = {"warp": _warp_cover, "split": _split_cover, "block": _block_cover}


@pytest.mark.parametrize("op", ["forward", "backward"])
@pytest.mark.parametrize("dtype", sorted(g.DTYPES))
@pytest.mark.parametrize(
    "rows, cols",
    [(r, c) for r in (1, 5, 37) for c in (1, 3, 8, 24, 32, 96, 250, 520, 1000, 1024, 5000)]
    + [(1, 2**15 + 8), (2, 9000)],
)
def test_every_element_is_covered_exactly_once(op, dtype, cols, rows):
    vec = g.vector_width(dtype, cols, aligned=True)
    plan_of = g.forward_plan if op == "forward" else g.backward_plan
    # small limits, so that grid-stride loops and splits happen at these sizes too
    plan = plan_of(rows, cols, dtype, vec, g.Limits(sms=2, max_shared=64 * 1024, max_grid=7))
    seen = COVER[plan.variant](plan, rows, cols)
    assert len(seen) == rows * cols and set(seen.values()) == {1}
    assert all(0 <= r < rows and 0 <= c < cols for r, c in seen)


def _launch_bounds() -> dict[str, int]:
    """Each kernel's ``__launch_bounds__`` in softmax.cu, its macro resolved."""
    macros = dict(re.findall(r"#define (SD_\w+) (\d+)", SOURCE))
    found = re.findall(r"__launch_bounds__\((\w+)\) (\w+)\(", SOURCE)
    return {name: int(macros.get(bound, bound)) for bound, name in found}


def test_the_launch_bounds_are_the_geometrys_block_sizes():
    """Kernels launched with up to MAX_BLOCK threads carry it as their launch bound (so
    their registers fit such a block); the warp and column kernels' blocks are small
    enough for any register count (255 x 256 fits a 64K register file)."""
    bounds = _launch_bounds()
    for name in re.findall(r"__global__ void (?:__launch_bounds__\(\w+\) )?(\w+)\(", SOURCE):
        if "warp" in name or "column" in name:
            assert name not in bounds
        else:
            assert bounds[name] == g.MAX_BLOCK, name
    assert 255 * max(g.WARP_BLOCK, g.COLUMN_BLOCK) <= 65536


@pytest.mark.parametrize("limits", [g.H100, A100], ids=["H100", "A100"])
@pytest.mark.parametrize("dtype", sorted(g.DTYPES))
def test_every_plan_is_a_launch_the_device_takes(limits, dtype):
    known = set(g.instantiations())
    bounds = _launch_bounds()
    for rows in ROWS:
        for cols in COLS:
            for aligned in (True, False):
                vec = g.vector_width(dtype, cols, aligned)
                plans = [
                    g.forward_plan(rows, cols, dtype, vec, limits),
                    g.backward_plan(rows, cols, dtype, vec, limits),
                    g.cross_entropy_plan(rows, cols, dtype, vec, limits),
                    g.column_plan("forward", rows, cols, 64, dtype, limits),
                ]
                for plan in plans:
                    for launch in plan.launches:
                        assert launch.kernel in known, launch.kernel
                        assert 1 <= launch.grid <= limits.grid_cap
                        assert launch.block % 32 == 0 and 32 <= launch.block <= 1024
                        assert launch.block <= bounds.get(launch.kernel.split("<")[0], 256)
                        assert launch.shared + 1024 <= limits.max_shared
                    if plan.variant == "split":
                        assert plan.chunk % vec == 0 and 1 <= plan.splits <= 64
                        assert (plan.splits - 1) * plan.chunk < cols <= plan.splits * plan.chunk


def test_the_variant_follows_the_row_length_and_the_row_count():
    f32 = lambda rows, cols: g.forward_plan(rows, cols, "float32", 4, g.H100)  # noqa: E731
    assert f32(4096, 1024).variant == "warp"
    assert f32(4096, 2048).variant == "block"
    assert f32(4096, 32768).variant == "block"  # 128 KiB of float32 on chip
    assert f32(4096, 65536).variant == "split" and f32(4096, 65536).splits == 1  # online
    assert f32(8, 32768).variant == "split" and f32(8, 32768).splits == 16  # few rows
    assert g.forward_plan(4096, 1024, "float64", 2, g.H100).variant == "block"  # 8 KiB rows
    assert g.forward_plan(4096, 32768, "float64", 2, A100).variant == "split"  # 256 KiB
    # several short rows per warp
    assert _template(f32(1000, 8).launches[0].kernel) == ["float", "4", "1", "2"]
    assert _template(f32(1000, 12).launches[0].kernel) == ["float", "4", "1", "4"]


def test_registers_hold_at_most_32_values_per_lane():
    for dtype in g.DTYPES:
        for op, plan_of in (("forward", g.forward_plan), ("backward", g.backward_plan)):
            for cols in range(1, g.warp_max_cols(op, dtype) + 1, 7):
                for vec in {1, g.vector_width(dtype, cols, True)}:
                    plan = plan_of(64, cols, dtype, vec, g.H100)
                    _, v, items, width = _template(plan.launches[0].kernel)
                    values = int(items) * int(v) * (2 if op == "backward" else 1)
                    assert values * g.DTYPES[dtype][1] <= 32 * 4 * (2 if dtype == "float16" else 1)
                    assert int(items) * int(width) * int(v) >= cols


def test_vector_width_needs_alignment_and_a_multiple():
    assert [g.vector_width("float16", c, True) for c in (8, 16, 12, 4)] == [8, 8, 1, 1]
    assert [g.vector_width("float64", c, True) for c in (2, 3, 1000)] == [2, 1, 2]
    assert g.vector_width("float32", 1024, aligned=False) == 1


@pytest.mark.parametrize(
    "rows, cols, dtype",
    [
        (2**22, 1024, "float16"),
        (2**16, 2**16, "float32"),
        (3, 2**31 + 8, "float16"),
        (2**33, 1, "float32"),
    ],
)
def test_arrays_over_2_31_elements_are_covered_by_grid_stride_loops(rows, cols, dtype):
    assert rows * cols > 2**31
    vec = g.vector_width(dtype, cols, True)
    for plan in (
        g.forward_plan(rows, cols, dtype, vec, g.H100),
        g.backward_plan(rows, cols, dtype, vec, g.H100),
    ):
        launch = plan.launches[-1]
        assert launch.grid <= g.H100.grid_cap
        if plan.variant == "warp":
            width = int(_template(launch.kernel)[3])
            per_step = launch.grid * launch.block // 32 * (32 // width)
        elif plan.variant == "split":
            per_step = launch.grid / plan.splits
            assert plan.splits * plan.chunk >= cols
        else:
            per_step = launch.grid
        steps = -(-rows // per_step)
        assert steps * per_step >= rows  # the last row is reached
        # the last element's offset needs 64 bits: every offset in the kernels is i64
        assert (rows - 1) * cols + cols - 1 > 2**31 - 1


def test_every_index_in_the_kernels_is_64_bit():
    """Offsets, rows, columns and jobs are ``i64`` (long long) everywhere in the source:
    no ``int``/``unsigned`` loop or offset variable that would wrap past 2**31."""
    index_names = r"(row|rows|cols|off|j|q|c|job|base|begin|end|stride|step|at|packs|chunk|splits)"
    narrow = re.findall(rf"\b(?:int|unsigned|size_t)\s+{index_names}\b", SOURCE)
    assert narrow == []
    for kernel in re.findall(
        r"__global__ void (?:__launch_bounds__\(\w+\) )?(\w+)\(([^)]*)\)", SOURCE
    ):
        name, params = kernel
        for size in ("rows", "cols", "outer", "inner", "classes", "chunk", "splits"):
            if re.search(rf"\b{size}\b", params):
                assert re.search(rf"\bi64 {size}\b", params), (name, size)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="the CUDA kernels take"):
        g.forward_plan(4, 4, "bfloat16", 1, g.H100)
    with pytest.raises(ValueError, match="vec must be"):
        g.forward_plan(4, 10, "float32", 4, g.H100)
    with pytest.raises(ValueError, match="positive"):
        g.backward_plan(0, 10, "float32", 1, g.H100)
