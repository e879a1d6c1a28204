"""Reproduce the NumPy table and plot in docs/performance.md.

    python benchmarks/bench_numpy.py --json > docs/bench/numpy.json   # == softmax-dispatch bench

Times the NumPy backend's fused kernels against the memory floor, SciPy, PyTorch (same
thread count, imported first) and textbook NumPy, in one run, interleaved; see
``softmax_dispatch.bench``. Run it on an otherwise idle machine: it reports medians, but a
busy neighbour still adds noise.
"""

import sys

from softmax_dispatch.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--backend", "numpy", *sys.argv[1:]]))
