"""The bench's results: rows per (case, implementation) with GB/s and the fraction of the
memory floor, the backend's targets checked, the machine; as a table, JSON or a plot."""

from __future__ import annotations

import datetime
import json
import platform
import shlex
import sys
import textwrap
from typing import Any

from .._backend import BackendInfo, BenchKit, device_name
from ._cases import bytes_moved
from ._timing import paired_ratio

__all__ = ["collect", "plot", "print_json", "print_table"]


def _floor_of(impl: str) -> str:
    return "floor out=" if impl.endswith("out=") else "floor"


def collect(
    results: list[dict[str, Any]],
    kit: BenchKit,
    info: BackendInfo,
    device: Any,
    threads: int,
    refused: dict[str, str],
) -> dict[str, Any]:
    rows = []
    by_case: dict[str, dict[str, list[float]]] = {}
    peaks: dict[str, float] = {}
    skipped = [dict(peer=p, case=None, reason=why) for p, why in refused.items()]
    for res in results:
        case, times = res["case"], res["times"]
        by_case[case.name] = res["samples"]
        if res["peak"] is not None:
            peaks[case.name] = res["peak"]
        moved = bytes_moved(case)
        for impl, ms in times.items():
            floor = times.get(_floor_of(impl))
            rows.append(
                dict(
                    case=case.name,
                    impl=impl,
                    ms=ms,
                    gbs=None if moved is None else moved / ms / 1e6,
                    of_floor=None if floor is None else ms / floor,
                )
            )
        skipped += [dict(peer=p, case=case.name, reason=why) for p, why in res["skipped"].items()]
    targets = []
    for t in kit.targets:
        if t.numerator == "peak memory":
            value = peaks.get(t.case)
            what = "peak memory / result"
        else:
            samples = by_case.get(t.case, {})
            have = t.numerator in samples and t.denominator in samples
            value = paired_ratio(samples, t.numerator, t.denominator) if have else None
            what = f"{t.numerator} / {t.denominator}"
        if value is None:
            continue
        ok = value <= t.bound if t.sense == "<=" else value >= t.bound
        targets.append(
            dict(case=t.case, what=what, ratio=value, target=f"{t.sense} {t.bound}", ok=ok)
        )
    from . import cores as usable_cores  # (the package imports this module)

    cores = usable_cores()
    machine = dict(
        backend=info.name,
        device=device_name(device) if device is not None else None,
        cpu=platform.processor() or platform.machine(),
        cores=cores,
        threads=threads,
        python=platform.python_version(),
        versions=dict(kit.versions()) if kit.versions is not None else {},
        date=datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
        command="softmax-dispatch " + shlex.join(sys.argv[1:]),
    )
    return dict(machine=machine, rows=rows, targets=targets, skipped=skipped)


def markdown(data: dict[str, Any]) -> str:
    """Markdown tables of a ``--json`` result: machine, command and date, the timings,
    the targets and what was not reported (the docs site renders the committed files)."""
    m = data["machine"]
    libs = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    run = f"`{m['command']}`" if m.get("command") else f"`--backend {m['backend']}`"
    when = f" on {m['date']}" if m.get("date") else ""
    lines = [
        f"{run}{when}, device {m['device']}: {m['cpu']}, {m['cores']} cores, "
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


def print_json(data: dict[str, Any]) -> None:
    print(json.dumps(data, indent=2))


WIDTH = 100


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_table(data: dict[str, Any]) -> None:
    m = data["machine"]
    libs = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    print(
        textwrap.fill(
            f"backend {m['backend']} on {m['device']}: {m['cpu']}, {m['cores']} cores, "
            f"threads={m['threads']}, Python {m['python']}" + (f"; {libs}" if libs else ""),
            WIDTH,
            subsequent_indent="  ",
        )
    )
    print(f"\n{'case':34} {'impl':14} {'median ms':>10} {'GB/s':>7} {'/floor':>7}")
    for r in data["rows"]:
        print(
            f"{r['case'][:34]:34} {r['impl'][:14]:14} {r['ms']:10.3f} "
            f"{_fmt(r['gbs'], '7.2f'):>7} {_fmt(r['of_floor'], '7.2f'):>7}"
        )
    if data["targets"]:
        print(f"\n{'case':34} {'ratio':26} {'value':>7} {'target':>8}  ok")
        for t in data["targets"]:
            print(
                f"{t['case'][:34]:34} {t['what'][:26]:26} {t['ratio']:7.2f} "
                f"{t['target']:>8}  {'ok' if t['ok'] else 'MISS'}"
            )
    for s in data["skipped"]:
        where = f" in {s['case']}" if s["case"] else ""
        text = f"not reported: {s['peer']}{where}: {s['reason']}"
        print(textwrap.fill(textwrap.shorten(text, 400), WIDTH, subsequent_indent="  "))
    footer = (
        "floor: a copy of the bytes the op must move (fresh, or into out=). Times: medians of "
        "interleaved rounds; target ratios: medians of the per-round ratios, each target the "
        "backend's own (MISS: not met in this run). A loaded machine moves every ratio: "
        "compare runs on a quiet machine."
    )
    print("\n" + textwrap.fill(footer, WIDTH))


def plot(data: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cases = list(dict.fromkeys(r["case"] for r in data["rows"]))
    impls = list(dict.fromkeys(r["impl"] for r in data["rows"]))
    ms = {(r["case"], r["impl"]): r["ms"] for r in data["rows"]}
    fig, ax = plt.subplots(figsize=(11, 5))
    width = 0.8 / len(impls)
    for i, impl in enumerate(impls):
        vals = []
        for c in cases:
            base = ms.get((c, "ours")) or ms.get((c, "ours out="))
            vals.append(ms[(c, impl)] / base if (c, impl) in ms and base else np.nan)
        ax.bar(np.arange(len(cases)) + i * width, vals, width, label=impl)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(cases)) + 0.4 - width / 2)
    ax.set_xticklabels(cases, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("time / ours (median; above 1: slower than ours)")
    ax.set_yscale("log")
    m = data["machine"]
    title = f"softmax-dispatch bench --backend {m['backend']}"
    ax.set_title(f"{title}: {m['cores']} cores, {m['threads']} threads")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
