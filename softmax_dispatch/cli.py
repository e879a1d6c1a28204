"""``softmax-dispatch``: list backends, check them (conformance), benchmark them."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import sys
import textwrap
import warnings
from collections.abc import Sequence
from typing import Any

from . import _plugins
from ._backend import device_name


def _backends_rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with warnings.catch_warnings():  # this listing is where the failures are shown
        warnings.simplefilter("ignore", _plugins.PluginWarning)
        _plugins.loaded_registry()
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
            "kernels": b.kernels_status,
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
            _fit(", ".join(r["devices"]) or ("(the array's own)" if r["available"] else "-"), 36),
            str(r["priority"]),
            _fit(f"{r['distribution'] or 'run time'} {r['version'] or ''}".strip(), 24),
        ]
        for r in rows
    ]
    print(_table(["backend", "available", "devices", "priority", "distribution"], table))
    print("\nwhat each runs:")
    for r in rows:
        kernels = f" (kernels: {r['kernels']})" if r["kernels"] else ""
        print(_wrapped(f"{r['name']}: {r['description'] or '-'}{kernels}"))
    unavailable = [r for r in rows if r["reason"]]
    if unavailable:
        print("\nwhy unavailable:")
        for r in unavailable:
            print(_wrapped(f"{r['name']}: {r['reason']}"))
    if failures:
        print("\nplugins that failed to load:")
        for f in failures:
            origin = f"{f['distribution'] or '?'} {f['version'] or ''}".strip()
            print(_wrapped(f"{f['plugin']} ({origin}): {f['error']}"))
    print("\n(--json: every field in full)")
    return 0


WIDTH = 100


def _fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` columns, ending in an ellipsis if cut."""
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _wrapped(text: str) -> str:
    """A line of prose wrapped to the table width, continuation lines indented."""
    return textwrap.fill(text, WIDTH, initial_indent="  ", subsequent_indent="    ")


def cmd_version() -> int:
    """The package's version, then each backend's library and its installed version."""
    from . import __version__

    print(f"softmax-dispatch {__version__}")
    rows, _failures = _backends_rows()
    for r in rows:
        libs = _LIBRARIES.get(r["name"], ())
        found = []
        for lib in libs:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                found.append(f"{lib} {importlib.metadata.version(lib)}")
        if libs and not found:
            found = [f"{libs[0]} not installed"]
        origin = f"{r['distribution'] or 'run time'} {r['version'] or ''}".strip()
        print(f"{r['name']:18} {'  '.join(found) or '-':40} ({origin})"[:WIDTH].rstrip())
        if r["kernels"]:
            print(_wrapped(f"{'':16} kernels: {r['kernels']}").rstrip())
    print(f"Python {sys.version.split()[0]}")
    return 0


#: The distributions each built-in backend runs on (third-party ones report their own).
_LIBRARIES = {
    "numpy": ("numpy",),
    "cupy": ("cupy-cuda12x", "cupy-cuda13x", "cupy"),
    "torch": ("torch",),
    "jax": ("jax", "jaxlib"),
    "array_api_strict": ("array-api-strict",),
    "dask": ("dask",),
    "cubed": ("cubed",),
    "array_api": ("array-api-compat",),
}


def cmd_check(args: argparse.Namespace) -> int:
    # find_spec, not import: pytest must import hypothesis itself (assertion rewriting)
    missing = [m for m in ("pytest", "hypothesis", "mpmath") if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"softmax-dispatch check: the conformance suite needs pytest, hypothesis and "
            f"mpmath (missing: {', '.join(missing)}); install them with: "
            "pip install 'softmax-dispatch[check]'",
            file=sys.stderr,
        )
        return 2
    from .conformance import runner

    extra = [a for a in args.pytest_args if a != "--"]
    try:
        code, rows, not_run = runner.run(args.backend, args.device, extra, quiet=args.json)
    except runner.Unrunnable as exc:
        print(f"softmax-dispatch check: {exc}", file=sys.stderr)
        return 2
    every_row, rows = rows, [r for r in rows if (r.backend, r.device) != runner.UNATTRIBUTED]
    failed = any(r.failed for r in rows)
    if args.json:
        data = {
            "targets": [
                {
                    "backend": r.backend,
                    "device": r.device,
                    "paths": sorted(r.paths),
                    "dtypes": sorted(r.dtypes),
                    "passed": r.passed,
                    "failed": r.failed,
                    "skipped": r.skipped,
                    "seconds": round(r.seconds, 3),
                    "failures": r.failures,
                    "batch_invariant": r.batch_invariant,
                    "skip_reasons": r.skip_reasons,
                }
                for r in rows
            ],
            "skip_reasons": [
                {"count": n, "reason": why} for n, why in runner.skip_summary(every_row, 10**6)
            ],
            "not_run": [{"backend": b, "reason": why} for b, why in not_run],
            "pytest_exit_code": code,
        }
        print(json.dumps(data, indent=2))
    else:
        table = [
            [
                r.backend,
                _fit(r.device, 12),
                ",".join(sorted(r.paths)),
                ",".join(_DTYPE_SHORT[d] for d in _DTYPE_ORDER if d in r.dtypes),
                str(r.passed),
                str(r.failed),
                str(r.skipped),
                {True: "yes", False: "no", None: "-"}[r.batch_invariant],
                f"{r.seconds:.0f}s",
            ]
            for r in rows
        ]
        headers = [
            "backend", "device", "kernels", "dtypes", "pass", "fail", "skip", "row-inv", "time",
        ]  # fmt: skip
        print()
        print(_table(headers, table))
        print(
            _wrapped(
                "row-inv: each row computed from itself alone, bit for bit in any batch "
                "(checked, not promised, unless the backend promises it)"
            ).strip()
        )
        reasons = runner.skip_summary(every_row)
        if reasons:
            print("skipped:")
            for count, why in reasons:
                print(f"  {count} x {_fit(why, WIDTH - 8 - len(str(count)))}")
        for name, why in not_run:
            print(_wrapped(f"not run: {name}: {why}").strip())
    if not any(r.passed + r.failed for r in rows):
        print("softmax-dispatch check: no test ran", file=sys.stderr)
        return 1
    if failed or code not in (0, 5):
        return 1
    return 0


_DTYPE_ORDER = ("float16", "bfloat16", "float32", "float64")
_DTYPE_SHORT = {"float16": "f16", "bfloat16": "bf16", "float32": "f32", "float64": "f64"}


def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    if args.list:
        print("\n".join(bench.case_names()))
        return 0
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        print(
            "softmax-dispatch bench: --plot needs matplotlib: pip install 'softmax-dispatch[plot]'",
            file=sys.stderr,
        )
        return 2
    return bench.main(
        args.backend, args.device, args.case, args.threads, args.json, args.plot, args.rounds
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="softmax-dispatch",
        description="The softmax family on any Array API array: backends, checks, benchmarks.",
    )
    parser.add_argument(
        "--version",
        action="store_true",
        help="print the version, each backend's library version, and exit",
    )
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("backends", help="list backends: availability, devices, origin")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_backends)
    c = sub.add_parser(
        "check",
        help="run the conformance suite on backends and devices",
        description="Run the shared conformance suite (same as `pytest --pyargs "
        "softmax_dispatch.conformance`). Arguments after `--` go to pytest.",
    )
    c.add_argument(
        "--backend",
        action="append",
        default=[],
        metavar="NAME",
        help="backend to check (repeatable); default: every available backend",
    )
    c.add_argument("--device", metavar="DEV", help="only this device (e.g. cuda:1, cpu)")
    c.add_argument("--json", action="store_true", help="print results as JSON")
    c.add_argument("pytest_args", nargs=argparse.REMAINDER, help="-- then pytest options")
    c.set_defaults(func=cmd_check)
    b = sub.add_parser(
        "bench",
        help="time ours against the memory floor and the library's own softmax",
        description="Time ours, a same-run copy of the same bytes (the floor) and the "
        "backend's library's own implementations in one run, interleaved; report medians, "
        "GB/s, ratios to the floor and the backend's targets. Progress goes to stderr.",
    )
    b.add_argument("--backend", default="numpy", metavar="NAME", help="backend (default numpy)")
    b.add_argument("--device", metavar="DEV", help="device by name (default: the first)")
    b.add_argument("--case", action="append", metavar="TEXT", help="only cases containing TEXT")
    b.add_argument("--list", action="store_true", help="list the cases and exit")
    b.add_argument("--threads", type=int, help="threads for ours and the peers (default: cores)")
    b.add_argument("--rounds", type=int, help="timed rounds per case (default: per case)")
    b.add_argument("--json", action="store_true", help="print results as JSON")
    b.add_argument("--plot", metavar="FILE.png", help="draw the comparison (needs matplotlib)")
    b.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.version:
            return cmd_version()
        if args.command is None:
            parser.error("a command is required: backends, check or bench")
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not at exit as "Exception ignored"
        return code
    except BrokenPipeError:
        # The reader went away (`softmax-dispatch backends | head -1`): stop quietly, with
        # the status of a command ended by SIGPIPE, as other command-line tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
