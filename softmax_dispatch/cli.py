"""``softmax-dispatch``: list backends (and, later, check and benchmark them)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from . import _plugins
from ._backend import device_name


def _backends_rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows = [
        {
            "name": b.name,
            "available": b.available,
            "devices": [device_name(d) for d in b.devices],
            "priority": b.priority,
            "distribution": b.distribution,
            "version": b.version,
            "reason": b.reason,
            "description": b.description,
        }
        for b in _plugins.backends()
    ]
    failures = [
        {
            "plugin": f.plugin,
            "distribution": f.distribution,
            "version": f.version,
            "error": f.error,
        }
        for f in _plugins.failed_plugins()
    ]
    return rows, failures


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def cmd_backends(args: argparse.Namespace) -> int:
    rows, failures = _backends_rows()
    if args.json:
        print(json.dumps({"backends": rows, "failed_plugins": failures}, indent=2))
        return 0
    table = [
        [
            r["name"],
            "yes" if r["available"] else "no",
            ", ".join(r["devices"]) or ("(the array's own)" if r["available"] else "-"),
            str(r["priority"]),
            f"{r['distribution'] or 'run time'} {r['version'] or ''}".strip(),
            r["reason"] or "",
        ]
        for r in rows
    ]
    print(_table(["backend", "available", "devices", "priority", "distribution", "reason"], table))
    if failures:
        print("\nplugins that failed to load:")
        for f in failures:
            origin = f"{f['distribution'] or '?'} {f['version'] or ''}".strip()
            print(f"  {f['plugin']} ({origin}): {f['error']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="softmax-dispatch",
        description="The softmax family on any Array API array: backends, checks, benchmarks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("backends", help="list backends: availability, devices, origin")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_backends)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
