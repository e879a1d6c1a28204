"""Markdown tables from a ``softmax-dispatch bench --json`` file (docs/bench/*.json).

python benchmarks/bench_table.py docs/bench/numpy.json

(The docs site renders the same tables from the same files: ``_report.markdown``.)
"""

from __future__ import annotations

import json
import sys

from softmax_dispatch.bench._report import markdown

if __name__ == "__main__":
    for path in sys.argv[1:]:
        with open(path) as f:
            print(markdown(json.load(f)))
            print()
