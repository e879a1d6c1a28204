"""Our calls on supported input emit no warnings: a user running with ``-W error`` (or
pytest's ``filterwarnings = error``) never sees one of ours, on any installed backend."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import softmax_dispatch as sd

SCRIPT = """
import array_api_compat
import numpy as np
import softmax_dispatch as sd
from softmax_dispatch import _plugins
from softmax_dispatch._validate import supports_item_assignment

name = {name!r}
xp = _plugins.namespace_of(_plugins.entry(name))
dev = sd.get_backend(name).devices[0]
info = xp.__array_namespace_info__()
floats = [d for d in ("float16", "float32", "float64") if d in info.dtypes(device=dev)]


def arr(values, dtype=None):
    return xp.asarray(np.asarray(values), dtype=dtype, device=dev)


rng = np.random.default_rng(0)
host = rng.normal(size=(4, 6))
host[1, 2] = np.nan  # the documented policies are supported input too
host[2, :] = -np.inf
mask = arr(rng.random((4, 6)) < 0.6)
target = arr(np.array([0, 5, 2, 3]), dtype=info.default_dtypes(device=dev)["indexing"])
probs = arr(np.full((4, 6), 1 / 6))
for dt in floats:
    dtype = getattr(xp, dt)
    x = arr(host, dtype)
    for fn in (sd.softmax, sd.log_softmax):
        y = fn(x)
        fn(x, axis=0, where=mask)
        fn(x, axis=None)
        fn(x, axis=())
        fn(arr(3.0, dtype))
        fn(arr(np.zeros((0, 3)), dtype))
        fn(arr(np.arange(6)))  # integers: cast first
        fn(x, dtype=dtype)
    g = arr(rng.normal(size=(4, 6)), dtype)
    y = sd.softmax(x, where=mask)
    sd.softmax_backward(g, y, where=mask)
    sd.log_softmax_backward(g, sd.log_softmax(x))
    clean = arr(rng.normal(size=(4, 6)), dtype)
    for kw in ({{}}, {{"reduction": "none"}}, {{"label_smoothing": 0.1}}, {{"ignore_index": 5}}):
        sd.softmax_cross_entropy(clean, target, **kw)
        sd.softmax_cross_entropy_backward(clean, target, **kw)
    sd.softmax_cross_entropy(clean, probs)
    sd.softmax_cross_entropy(clean, target, weight=arr(np.ones(6), dtype))
    for layer in (sd.Softmax(), sd.LogSoftmax()):
        layer.forward(clean)
        layer.backward(g)
    ce = sd.SoftmaxCrossEntropy()
    ce.forward(clean, target)
    ce.backward()
    if supports_item_assignment(clean):
        out = arr(np.zeros((4, 6)), dtype)
        sd.softmax(clean, out=out)
        sd.softmax(out, out=out)
if name == "torch":
    import torch

    t = torch.randn(4, 10, requires_grad=True)
    sd.softmax_cross_entropy(t, torch.tensor([0, 1, 2, 3])).backward()
    s = torch.tensor(1.0, requires_grad=True)
    sd.softmax(s).backward()
    sd.log_softmax(t, where=torch.rand(4, 10) < 0.5).sum().backward()
    sd.softmax(torch.zeros(0, 3, requires_grad=True))
if name == "jax":
    import jax

    jax.grad(lambda a: sd.log_softmax(a)[0, 0])(arr(rng.normal(size=(2, 3)), xp.float32))
    jax.jit(sd.softmax)(arr(rng.normal(size=(2, 3)), xp.float32))
print("quiet")
"""


def _available() -> list[str]:
    skip = {"array_api"}  # the catch-all has no namespace of its own
    return [b.name for b in sd.backends() if b.available and b.name not in skip]


def test_the_public_api_on_every_installed_backend_is_quiet_under_W_error():
    names = _available()
    assert "numpy" in names
    failures = []
    for name in names:
        code = textwrap.dedent(SCRIPT.format(name=name))
        proc = subprocess.run(
            [sys.executable, "-W", "error", "-c", code],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0 or proc.stdout.strip() != "quiet":
            failures.append(f"--- {name}:\n{proc.stderr[-1500:]}")
    assert not failures, "\n".join(failures)
