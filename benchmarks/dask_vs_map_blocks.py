"""The dask backend against a bare ``map_blocks`` of the same kernel and the textbook Dask
expression, interleaved round by round in one process (what docs/performance.md quotes
beside the bench, whose paired ratios for these two move with the VM's noise).

    python benchmarks/dask_vs_map_blocks.py [ROUNDS]     # default 7

softmax of a persisted 400000x500 float32 array in ~32 MiB row chunks; each call is
computed to one NumPy array (fresh memory every call, as a user's ``compute()`` gets).
"""

from __future__ import annotations

import sys
import time

import dask.array as da
import numpy as np

import softmax_dispatch as sd


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    host = (np.random.default_rng(0).standard_normal((400_000, 500)) * 3).astype(np.float32)
    x = da.from_array(host, chunks=(16_777, 500)).persist()
    del host

    def textbook() -> da.Array:
        e = da.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    impls = {
        "ours": lambda: sd.softmax(x),
        "map_blocks": lambda: x.map_blocks(sd.softmax, axis=-1, dtype=x.dtype),
        "textbook": textbook,
    }
    times: dict[str, list[float]] = {k: [] for k in impls}
    for _ in range(rounds):
        for name, make in impls.items():
            t0 = time.perf_counter()
            result = make().compute()
            times[name].append(time.perf_counter() - t0)
            del result
    med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    for k, v in med.items():
        print(f"{k:11s} median {v:7.1f} ms  ({', '.join(f'{t * 1e3:.0f}' for t in times[k])})")
    print(f"ours / map_blocks {med['ours'] / med['map_blocks']:.2f} (target <= 1.1)")
    print(f"ours / textbook   {med['ours'] / med['textbook']:.2f} (target <= 0.5)")


if __name__ == "__main__":
    main()
