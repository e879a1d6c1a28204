"""Markdown tables from a ``softmax-dispatch bench --json`` file (docs/bench/*.json).

python benchmarks/bench_table.py docs/bench/numpy.json
"""

from __future__ import annotations

import json
import sys
from typing import Any


def tables(data: dict[str, Any]) -> str:
    m = data["machine"]
    libs = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    lines = [
        f"`--backend {m['backend']}` on {m['device']}: {m['cpu']}, {m['cores']} cores, "
        f"{m['threads']} threads, Python {m['python']}, {libs}.",
        "",
        "| case | implementation | median ms | GB/s | / floor |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for r in data["rows"]:
        gbs = "-" if r["gbs"] is None else f"{r['gbs']:.2f}"
        floor = "-" if r["of_floor"] is None else f"{r['of_floor']:.2f}"
        lines.append(f"| {r['case']} | {r['impl']} | {r['ms']:.3f} | {gbs} | {floor} |")
    if data["targets"]:
        lines += ["", "| case | ratio | value | target | |", "| --- | --- | ---: | --- | --- |"]
        for t in data["targets"]:
            ok = "ok" if t["ok"] else "**MISS**"
            lines.append(f"| {t['case']} | {t['what']} | {t['ratio']:.2f} | {t['target']} | {ok} |")
    for s in data["skipped"]:
        where = f" in {s['case']}" if s["case"] else ""
        lines.append(f"\nNot reported: {s['peer']}{where}: {s['reason']}")
    return "\n".join(lines)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        with open(path) as f:
            print(tables(json.load(f)))
            print()
