"""Reproduce the table and plot in docs/performance.md.

    python benchmarks/bench_numpy.py --plot docs/bench.png      # == softmax-dispatch bench

Times the NumPy backend's fused kernels against SciPy, textbook NumPy, PyTorch (same
thread count) and JAX, in one run, interleaved; see ``softmax_dispatch.bench``. Run it on
an otherwise idle machine: it reports medians, but a busy neighbour still adds noise.
"""

import sys

from softmax_dispatch.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
