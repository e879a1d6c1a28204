"""Side-by-side tables for the Numerics page: our result and SciPy's, PyTorch's and JAX's
for the same input, computed when the page is built (or the docs test runs).

Each case is the input and, for each library, the call its users would write; a call that
raises shows the exception's type and the start of its message. Nothing is pasted.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

LIBRARIES = ("ours", "SciPy", "PyTorch", "JAX")


@dataclass(frozen=True)
class Case:
    """One row of a comparison: an input and each library's call on it."""

    what: str
    setup: str  # Python that defines ``x`` (and ``m``, a mask, where used), NumPy arrays
    calls: dict[str, str] = field(default_factory=dict)  # library -> expression of x


def _namespace() -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import scipy.special
    import torch

    import softmax_dispatch as sd

    return {"np": np, "sd": sd, "scipy": scipy, "torch": torch, "jax": jax, "jnp": jnp}


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        return f"`{value!r}`"
    try:
        arr = np.asarray(value.detach() if hasattr(value, "detach") else value)
    except Exception:  # a library's object we cannot show as an array
        return f"`{value!r}`"
    if arr.dtype.kind not in "fiub":
        return f"`{arr!r}`"
    text = np.array2string(
        arr.astype(np.float64) if arr.dtype.kind == "f" else arr,
        precision=4,
        separator=", ",
        max_line_width=10_000,
        threshold=8,
        edgeitems=2,
    )
    dtype = f" {arr.dtype}" if arr.dtype != np.float64 else ""
    return f"`{text}`{dtype}".replace("|", "\\|").replace("\n", " ")


def _run(call: str, setup: str, ns: dict[str, Any]) -> str:
    local = dict(ns)
    exec(setup, local)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _fmt(eval(call, local))
    except Exception as exc:
        message = str(exc).splitlines()[0] if str(exc) else ""
        if len(message) > 70:
            message = message[:67] + "..."
        return f"*{type(exc).__name__}*: {message}".replace("|", "\\|")


def table(cases: list[Case]) -> str:
    """A Markdown table (and, below it, the exact calls) for ``cases``."""
    ns = _namespace()
    lines = ["| input | " + " | ".join(LIBRARIES) + " |", "|" + " --- |" * (len(LIBRARIES) + 1)]
    for case in cases:
        cells = []
        for lib in LIBRARIES:
            call = case.calls.get(lib)
            cells.append("n/a" if call is None else _run(call, case.setup, ns))
        lines.append(f"| {case.what} | " + " | ".join(cells) + " |")
    lines += ["", "<details><summary>The calls behind this table</summary>", "", "```python"]
    for case in cases:
        lines += ["", f"# {case.what}".replace("`", ""), case.setup]
        lines += [f"{case.calls[lib]}  # {lib}" for lib in LIBRARIES if lib in case.calls]
    lines += ["```", "", "</details>"]
    return "\n".join(lines)


def softmax_case(what: str, setup: str, log: bool = False, axis: int = -1) -> Case:
    """Each library's softmax (or log_softmax) of ``x`` over ``axis``, as users call it."""
    op = "log_softmax" if log else "softmax"
    return Case(
        what,
        setup,
        {
            "ours": f"sd.{op}(x, axis={axis})",
            "SciPy": f"scipy.special.{op}(x, axis={axis})",
            "PyTorch": f"torch.{op}(torch.from_numpy(x), dim={axis})",
            "JAX": f"jax.nn.{op}(jnp.asarray(x), axis={axis})",
        },
    )


def masked_case(what: str, setup: str) -> Case:
    """Each library's way to mask: ``where=`` where it has one, else ``-inf`` fill."""
    return Case(
        what,
        setup,
        {
            "ours": "sd.softmax(x, where=m)",
            "SciPy": "scipy.special.softmax(np.where(m, x, -np.inf), axis=-1)",
            "PyTorch": "torch.softmax(torch.from_numpy(x).masked_fill("
            "~torch.from_numpy(m), -torch.inf), dim=-1)",
            "JAX": "jax.nn.softmax(jnp.asarray(x), where=jnp.asarray(m))",
        },
    )


def batch_invariance(rows: int = 64, cols: int = 1000, seed: int = 0) -> str:
    """How many rows of a batch equal, bit for bit, the same row computed alone."""
    ns = _namespace()
    x = np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32)
    torch, jax, jnp, sd, scipy = (ns[k] for k in ("torch", "jax", "jnp", "sd", "scipy"))
    jitted = jax.jit(lambda a: jax.nn.softmax(a, axis=-1))
    calls = {
        "ours": lambda a: np.asarray(sd.softmax(a)),
        "SciPy": lambda a: scipy.special.softmax(a, axis=-1),
        "PyTorch": lambda a: torch.softmax(torch.from_numpy(a), dim=-1).numpy(),
        "JAX": lambda a: np.asarray(jitted(jnp.asarray(a))),
    }
    cells = []
    for lib in LIBRARIES:
        batch = calls[lib](x)
        same = sum(np.array_equal(batch[i], calls[lib](x[i : i + 1])[0]) for i in range(rows))
        cells.append(f"{same} of {rows}")
    header = "| rows equal to the row alone | " + " | ".join(LIBRARIES) + " |"
    return "\n".join(
        [
            header,
            "|" + " --- |" * (len(LIBRARIES) + 1),
            f"| {rows}x{cols} float32 | " + " | ".join(cells) + " |",
        ]
    )
