"""``softmax-dispatch bench --backend NAME``: our kernels on one backend's arrays, timed
in the same run as the memory floor (a copy of the same bytes) and as the library's own
implementations (the backend's `BenchKit` names them), interleaved, as medians and
ratios. The core knows no array library: everything library-specific comes from the
backend through ``Backend.bench``.

Peers are measured in the state their users run them in: each backend's kit imports its
peers as their users do (PyTorch before SciPy: the other order slows PyTorch 1.6-2x on
some machines), and every peer is first timed on a small case (`_cases.PROBE`); a peer
slower there than `HEALTHY` times a copy of the same bytes is in a state its users would
not run it in (two OpenMP runtimes in one process, say) and is not reported.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from .. import _plugins
from .._backend import BackendInfo, BenchKit, device_name
from . import _cases, _report
from ._timing import Clock, interleaved, medians

__all__ = ["DEFAULT_CASES", "main"]

#: Cases for a backend whose kit names none.
DEFAULT_CASES = (
    "softmax 4096x4096 f32",
    "log_softmax 4096x4096 f32",
    "softmax_backward 4096x4096 f32",
    "softmax 64x1000 f32",
    "softmax 8x10 f32",
)
#: A peer whose small-case time is above this many times a copy of the same bytes is not
#: reported. Healthy peers measured here take 1.5-8x (PyTorch ~2x, SciPy ~6x, jitted JAX
#: ~4x); PyTorch with a second OpenMP runtime loaded took ~400x (8 ms instead of 20 us).
HEALTHY = 50.0


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cores() -> int:
    """The cores this process may use (all of them off Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _device(info: BackendInfo, wanted: str | None) -> Any:
    if wanted is None:
        return info.devices[0] if info.devices else None
    for d in info.devices:
        if device_name(d) == wanted:
            return d
    known = ", ".join(device_name(d) for d in info.devices) or "none"
    raise LookupError(f"backend {info.name!r} has no device {wanted!r}; its devices: {known}")


def select(kit: BenchKit, only: Sequence[str] | None) -> list[_cases.Spec]:
    """The cases to run: the kit's (or `DEFAULT_CASES`), or every case of the catalog
    whose name contains one of ``only``."""
    if only:
        return [s for s in _cases.CATALOG.values() if any(o in s.name for o in only)]
    return [_cases.CATALOG[name] for name in (kit.cases or DEFAULT_CASES)]


def _healthy_peers(kit: BenchKit, xp: Any, device: Any, name: str, clock: Clock) -> dict[str, str]:
    """Peers to leave out, with why: those far slower than a copy on the small case."""
    case = _cases.make_case(_cases.PROBE, xp, device, kit.prepare)
    floor = _cases.ours_and_floor(case, xp, name)["floor"]
    refused: dict[str, str] = {}
    for peer, fn in kit.peers(case).items():
        if peer.startswith("ours"):
            continue
        try:
            samples = interleaved({"peer": fn, "floor": floor}, clock, rounds=5, inner=20)
        except Exception:  # a peer that cannot run the probe is judged case by case
            continue
        times = medians(samples)
        ratio = times["peer"] / times["floor"]
        if ratio > HEALTHY:
            refused[peer] = (
                f"its {case.name} took {times['peer'] * 1e3:.0f} us, {ratio:.0f}x a copy of "
                f"the same bytes (healthy peers: under {HEALTHY:.0f}x): it is in a state its "
                "users would not run it in (two OpenMP runtimes in one process?)"
            )
    return refused


def _run_case(
    spec: _cases.Spec,
    xp: Any,
    device: Any,
    name: str,
    kit: BenchKit,
    clock: Clock,
    refused: dict[str, str],
    rounds: int | None,
) -> dict[str, Any]:
    case = _cases.make_case(spec, xp, device, kit.prepare)
    impls = _cases.ours_and_floor(case, xp, name)
    for peer, fn in kit.peers(case).items():
        if peer not in refused:
            impls[peer] = fn
    skipped: dict[str, str] = {}
    for impl, fn in list(impls.items()):
        try:
            clock.done(fn())
        except Exception as exc:  # a peer without this dtype or op: reported, not fatal
            skipped[impl] = f"{type(exc).__name__}: {str(exc)[:120]}"
            del impls[impl]
    if not any(impl.startswith("ours") for impl in impls):
        why = "the backend gives no way to run ours on this case"
        return dict(case=case, samples={}, times={}, skipped={"ours": why, **skipped}, peak=None)
    samples = interleaved(impls, clock, rounds or spec.rounds, spec.inner)
    times = medians(samples)
    peak = None
    if kit.peak_memory is not None and "ours" in impls and case.kind != "autograd":
        result = impls["ours"]()
        peak = kit.peak_memory(impls["ours"]) / max(1, _nbytes(result))
        del result
    return dict(case=case, samples=samples, times=times, skipped=skipped, peak=peak)


def _nbytes(result: Any) -> int:
    n = getattr(result, "nbytes", None)
    if n is None:
        n = getattr(result, "size", 0) * getattr(getattr(result, "dtype", None), "itemsize", 4)
    return int(n)


def main(
    backend: str = "numpy",
    device: str | None = None,
    only: Sequence[str] | None = None,
    threads: int | None = None,
    as_json: bool = False,
    plot: str | None = None,
    rounds: int | None = None,
) -> int:
    """Run the bench; the exit status (2: nothing to run)."""
    try:
        info = _plugins.get_backend(backend)
    except LookupError as exc:
        print(f"softmax-dispatch bench: {exc}", file=sys.stderr)
        return 2
    if not info.available:
        print(
            f"softmax-dispatch bench: backend {backend!r} cannot run here: {info.reason}",
            file=sys.stderr,
        )
        return 2
    ent = _plugins.entry(backend)
    xp = _plugins.namespace_of(ent)
    if xp is None:
        print(
            f"softmax-dispatch bench: backend {backend!r} has no namespace of its own",
            file=sys.stderr,
        )
        return 2
    try:
        dev = _device(info, device)
    except LookupError as exc:
        print(f"softmax-dispatch bench: {exc}", file=sys.stderr)
        return 2
    kit = info.backend.bench(dev) if info.backend.bench is not None else BenchKit()
    n_threads = threads or cores()
    if kit.threads is not None:
        kit.threads(n_threads)
    specs = select(kit, only)
    if not specs:
        print(
            f"softmax-dispatch bench: no case matches {' or '.join(map(repr, only or []))}; "
            "`softmax-dispatch bench --list` lists them",
            file=sys.stderr,
        )
        return 2
    sync = info.backend.synchronize
    clock = Clock(kit.finish, (lambda: sync(dev)) if sync is not None else None, kit.timer)
    t0 = time.perf_counter()
    _progress(
        f"bench: backend {backend} on {device_name(dev) if dev is not None else '-'}, "
        f"{n_threads} thread(s), {len(specs)} case(s); checking peers on a small case"
    )
    refused = _healthy_peers(kit, xp, dev, backend, clock)
    for peer, why in refused.items():
        _progress(f"bench: not reporting {peer}: {why}")
    results = []
    for i, spec in enumerate(specs, 1):
        res = _run_case(spec, xp, dev, backend, kit, clock, refused, rounds)
        results.append(res)
        summary = ", ".join(f"{k} {v:.3g} ms" for k, v in res["times"].items()) or "skipped"
        _progress(f"[{i}/{len(specs)}] {spec.name}: {summary} ({time.perf_counter() - t0:.0f} s)")
    data = _report.collect(results, kit, info, dev, n_threads, refused)
    if as_json:
        _report.print_json(data)
    else:
        _report.print_table(data)
    if plot:
        _report.plot(data, plot)
    return 0


def case_names() -> list[str]:
    """Every case of the catalog, for ``--list``."""
    return list(_cases.CATALOG)
