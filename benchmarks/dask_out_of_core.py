"""Out of core on Dask: softmax over a lazily generated input larger than memory should be,
reduced to one number, on the dask backend's fused kernels and on the generic path.

    python benchmarks/dask_out_of_core.py [ROWS] [COLS]      # default 2000000 1000

Each path runs in a process of its own (peak RSS is per process): the input, 2,000,000 x
1000 float32 (7.45 GiB), is generated chunk by chunk by Dask's random generator and never
held whole; the result is the sum of all probabilities, which must equal the row count.
Prints time and peak RSS per path, and the ratio generic / fused.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time
import dask, dask.array as da, numpy as np
import softmax_dispatch as sd
from softmax_dispatch._dispatch import generic_kernels

rows, cols, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
x = da.random.default_rng(0).standard_normal((rows, cols), chunks=(50_000, cols), dtype=np.float32)
t0 = time.perf_counter()
if path == "generic":
    with generic_kernels():
        total = sd.softmax(x).sum(dtype=np.float64)
else:
    total = sd.softmax(x).sum(dtype=np.float64)
value = float(total.compute())
seconds = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"path": path, "seconds": seconds, "peak_rss": rss, "sum": value,
                  "tasks": len(dict(total.__dask_graph__())), "chunks": x.numblocks[0]}))
"""


def run(rows: int, cols: int, path: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(rows), str(cols), path],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
    cols = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    gib = rows * cols * 4 / 2**30
    print(f"input {rows}x{cols} float32 = {gib:.2f} GiB, generated lazily", file=sys.stderr)
    results = {}
    for path in ("fused", "generic"):
        t0 = time.perf_counter()
        r = results[path] = run(rows, cols, path)
        ok = abs(r["sum"] - rows) <= 1e-6 * rows
        print(
            f"{path:8s} {r['seconds']:7.2f} s  peak RSS {r['peak_rss'] / 2**30:5.2f} GiB  "
            f"sum {r['sum']:.1f} ({'ok' if ok else 'WRONG'})  tasks {r['tasks']}  "
            f"({time.perf_counter() - t0:.0f} s with start-up)"
        )
    speedup = results["generic"]["seconds"] / results["fused"]["seconds"]
    print(f"generic / fused time: {speedup:.2f} (target >= 1.3); fused peak RSS target < 1.0 GiB")


if __name__ == "__main__":
    main()
