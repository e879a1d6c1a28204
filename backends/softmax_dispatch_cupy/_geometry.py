"""Which CUDA kernel runs, and how it is launched: plain Python, no CuPy.

Everything here depends only on the shape, the dtype, the alignment of the arrays and
two numbers about the device (its SM count and the shared memory a block may opt into),
so it is unit-tested on machines without a GPU (``tests/test_cupy_geometry.py``).

Variants, by row length (``cols``) and number of rows:

- ``warp``: ``32 // width`` rows per warp, a row in registers (``items`` packs of ``vec``
  values per lane); rows up to ``warp_max_cols`` (1K for float32 forward).
- ``block``: a block per row, the row in dynamic shared memory (forward only), up to what
  a block may hold (56K float32 values on an H100).
- ``split``: each row cut into ``splits`` chunks, one block per chunk; a first kernel
  writes each chunk's (max, sum), a second merges them and writes the chunk. Rows are
  split when there are fewer than ``2 x SM count`` of them; ``splits == 1`` is the online
  two-pass kernel for rows too long for shared memory (and the backward beyond the warp).
- ``column``: the softmax axis is not the last and the inner size is at least
  ``COLUMN_MIN_INNER``: a thread per column, strided reads that neighbouring threads
  coalesce. Smaller inner sizes are made contiguous (moved to the last axis) first.

Every kernel indexes with 64-bit integers and loops grid-stride over its rows (or jobs),
so the grid is capped at ``Limits.max_grid`` whatever the array's size.

>>> plan = forward_plan(rows=4096, cols=1000, dtype="float32", vec=4, limits=H100)
>>> plan.variant, plan.launches[0].kernel, plan.launches[0].block
('warp', 'sd_forward_warp<float, 4, 8, 32>', 128)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "COLUMN_MIN_INNER",
    "DTYPES",
    "H100",
    "Launch",
    "Limits",
    "Plan",
    "backward_plan",
    "column_plan",
    "cross_entropy_plan",
    "forward_plan",
    "instantiations",
    "vector_width",
    "warp_max_cols",
]

#: The CUDA type of each dtype the kernels take, and its size in bytes.
DTYPES = {"float16": ("sd_half", 2), "float32": ("float", 4), "float64": ("double", 8)}
#: Threads per block of the warp kernels (4 warps) and the column kernels.
WARP_BLOCK = 128
COLUMN_BLOCK = 256
#: The most threads a block of the other kernels gets (the kernels' launch bounds).
MAX_BLOCK = 512
#: Inner sizes from which a strided softmax axis is read in place (a warp's 32 threads
#: then read 32 neighbouring columns); below it the axis is moved last by a copy.
COLUMN_MIN_INNER = 32
#: Values one lane holds in registers per array (forward: x; backward: grad and y).
_LANE_VALUES = {"forward": 32, "backward": 16}
#: The smallest chunk a split row is cut into, in elements.
_MIN_CHUNK = 2048
_MAX_SPLITS = 64
#: Static shared memory the block kernels use besides the row (reduction scratch).
_STATIC_SHARED = 1024


@dataclass(frozen=True)
class Limits:
    """What the geometry needs to know about a device."""

    sms: int
    max_shared: int
    max_grid: int = 2**31 - 1

    @property
    def grid_cap(self) -> int:
        """Blocks launched at most: enough waves to fill the device many times over;
        the kernels loop over whatever is left."""
        return min(self.max_grid, self.sms * 512)


#: An H100 SXM: 132 SMs, 227 KiB of shared memory a block may opt into.
H100 = Limits(sms=132, max_shared=232448)


@dataclass(frozen=True)
class Launch:
    """One kernel launch: the template instantiation's name expression and its
    (1-D) grid, block and dynamic shared memory in bytes."""

    kernel: str
    grid: int
    block: int
    shared: int = 0


@dataclass(frozen=True)
class Plan:
    """How one op runs: the variant, the vector width, the launches in order, and for
    ``split`` the chunking (``chunk`` elements, ``splits`` chunks per row)."""

    variant: str
    vec: int
    launches: tuple[Launch, ...]
    splits: int = 1
    chunk: int = 0


def _ctype(dtype: str) -> str:
    try:
        return DTYPES[dtype][0]
    except KeyError:
        raise ValueError(f"the CUDA kernels take {sorted(DTYPES)}, got {dtype!r}") from None


def _acc_size(dtype: str) -> int:
    return 8 if dtype == "float64" else 4


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def vector_width(dtype: str, cols: int, aligned: bool) -> int:
    """Values per 128-bit access (8 float16, 4 float32, 2 float64) where every row starts
    on a 16-byte boundary (``aligned``: the arrays' addresses are, and ``cols`` is a
    multiple of the width); 1 otherwise (scalar accesses).

    >>> vector_width("float32", 1000, True), vector_width("float32", 1001, True)
    (4, 1)
    """
    width = 16 // DTYPES[dtype][1] if dtype in DTYPES else 1
    return width if aligned and cols % width == 0 and cols >= width else 1


def warp_max_cols(op: str, dtype: str) -> int:
    """The longest row the warp kernels take for ``op`` ("forward" or "backward"): 32 lanes
    holding ``_LANE_VALUES[op]`` values each (half of that for float64)."""
    values = _LANE_VALUES[op] // (2 if dtype == "float64" else 1)
    return 32 * values


def _warp_shape(cols: int, vec: int) -> tuple[int, int]:
    """``(items, width)``: packs per lane and lanes per row, powers of two, covering
    ``cols`` (several rows per warp when a row has fewer than 32 packs)."""
    packs = _cdiv(cols, vec)
    if packs <= 32:
        return 1, _pow2_at_least(packs)
    return _pow2_at_least(_cdiv(packs, 32)), 32


def _warp_launch(op: str, rows: int, cols: int, dtype: str, vec: int, limits: Limits) -> Plan:
    items, width = _warp_shape(cols, vec)
    rows_per_block = (WARP_BLOCK // 32) * (32 // width)
    grid = min(_cdiv(rows, rows_per_block), limits.grid_cap)
    name = f"sd_{op}_warp<{_ctype(dtype)}, {vec}, {items}, {width}>"
    return Plan("warp", vec, (Launch(name, grid, WARP_BLOCK),))


def _threads(packs: int) -> int:
    """Block size for ``packs`` packs handled by one block: about 8 packs per thread,
    128 to MAX_BLOCK threads."""
    return min(MAX_BLOCK, max(128, _pow2_at_least(_cdiv(packs, 8))))


def _split(op: str, rows: int, cols: int, dtype: str, vec: int, limits: Limits) -> Plan:
    splits = 1
    if rows < 2 * limits.sms:
        wanted = _cdiv(4 * limits.sms, rows)
        splits = max(1, min(wanted, _MAX_SPLITS, cols // _MIN_CHUNK))
    chunk = _cdiv(_cdiv(cols, splits), vec) * vec
    splits = _cdiv(cols, chunk)  # no empty chunk
    threads = _threads(_cdiv(chunk, vec))
    grid = min(rows * splits, limits.grid_cap)
    ct = _ctype(dtype)
    launches = (
        Launch(f"sd_{op}_partial<{ct}, {vec}>", grid, threads),
        Launch(f"sd_{op}_finish<{ct}, {vec}>", grid, threads),
    )
    return Plan("split", vec, launches, splits=splits, chunk=chunk)


def _check(rows: int, cols: int, vec: int) -> None:
    if rows < 1 or cols < 1:
        raise ValueError(f"rows and cols must be positive, got {rows} x {cols}")
    if vec not in (1, 2, 4, 8) or cols % vec:
        raise ValueError(f"vec must be 1, 2, 4 or 8 and divide cols ({cols}), got {vec}")


def forward_plan(rows: int, cols: int, dtype: str, vec: int, limits: Limits) -> Plan:
    """softmax / log_softmax over the last axis of a C-contiguous ``(rows, cols)`` array.

    >>> forward_plan(8, 2**20, "float32", 4, H100).splits
    64
    >>> forward_plan(65536, 32768, "float32", 4, H100).variant
    'block'
    """
    _check(rows, cols, vec)
    if cols <= warp_max_cols("forward", dtype):
        return _warp_launch("forward", rows, cols, dtype, vec, limits)
    row_bytes = cols * _acc_size(dtype)
    few_rows = rows < 2 * limits.sms and cols >= 2 * _MIN_CHUNK
    if not few_rows and row_bytes + _STATIC_SHARED <= limits.max_shared:
        launch = Launch(
            f"sd_forward_block<{_ctype(dtype)}, {vec}>",
            min(rows, limits.grid_cap),
            _threads(cols // vec),
            row_bytes,
        )
        return Plan("block", vec, (launch,))
    return _split("forward", rows, cols, dtype, vec, limits)


def backward_plan(rows: int, cols: int, dtype: str, vec: int, limits: Limits) -> Plan:
    """softmax_backward / log_softmax_backward over the last axis (rows of ``cols``).

    >>> backward_plan(4096, 512, "float32", 4, H100).variant
    'warp'
    >>> backward_plan(4096, 8192, "float32", 4, H100).variant
    'split'
    """
    _check(rows, cols, vec)
    if cols <= warp_max_cols("backward", dtype):
        return _warp_launch("backward", rows, cols, dtype, vec, limits)
    return _split("backward", rows, cols, dtype, vec, limits)


def column_plan(op: str, outer: int, n: int, inner: int, dtype: str, limits: Limits) -> Plan:
    """``op`` ("forward" or "backward") over the middle axis of ``(outer, n, inner)``.

    >>> column_plan("forward", 4, 1000, 4096, "float16", H100).launches[0].grid
    64
    """
    if min(outer, n, inner) < 1:
        raise ValueError(f"outer, n and inner must be positive, got {outer}, {n}, {inner}")
    grid = min(_cdiv(outer * inner, COLUMN_BLOCK), limits.grid_cap)
    name = f"sd_{op}_column<{_ctype(dtype)}>"
    return Plan("column", 1, (Launch(name, grid, COLUMN_BLOCK),))


def cross_entropy_plan(rows: int, classes: int, dtype: str, vec: int, limits: Limits) -> Plan:
    """Cross-entropy forward and backward kernels (class indices), a block per sample; the
    backward keeps a sample's logits in shared memory where they fit (read once).

    >>> [launch.kernel for launch in cross_entropy_plan(8, 32000, "float32", 4, H100).launches]
    ['sd_ce_forward<float, 4>', 'sd_ce_backward<float, 4, true>']
    >>> cross_entropy_plan(8, 128000, "float32", 4, H100).launches[1].kernel
    'sd_ce_backward<float, 4, false>'
    """
    _check(rows, classes, vec)
    threads = _threads(_cdiv(classes, vec))
    grid = min(rows, limits.grid_cap)
    ct = _ctype(dtype)
    row_bytes = classes * _acc_size(dtype)
    onchip = row_bytes + _STATIC_SHARED <= limits.max_shared
    backward = Launch(
        f"sd_ce_backward<{ct}, {vec}, {'true' if onchip else 'false'}>",
        grid,
        threads,
        row_bytes if onchip else 0,
    )
    return Plan("block", vec, (Launch(f"sd_ce_forward<{ct}, {vec}>", grid, threads), backward))


def instantiations() -> list[str]:
    """Every template instantiation a plan can name (what the compile tests build)."""
    names: set[str] = set()
    for dtype in DTYPES:
        for vec in sorted({1, vector_width(dtype, 64, True)}):
            for op in ("forward", "backward"):
                cols = vec
                while cols <= warp_max_cols(op, dtype):
                    names.add(_warp_launch(op, 1, cols, dtype, vec, H100).launches[0].kernel)
                    cols *= 2
                names.update(
                    launch.kernel
                    for launch in _split(op, 1, 4 * _MIN_CHUNK, dtype, vec, H100).launches
                )
                names.add(column_plan(op, 1, 1, 1, dtype, H100).launches[0].kernel)
            names.add(f"sd_forward_block<{_ctype(dtype)}, {vec}>")
            for classes in (vec, 2**20):  # the backward on chip, and not
                plan = cross_entropy_plan(1, classes, dtype, vec, H100)
                names.update(launch.kernel for launch in plan.launches)
    return sorted(names)
