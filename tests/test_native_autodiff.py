"""PyTorch and JAX at their own speed, with their own autodiff: one autograd node per op
that saves only the output, correct double backward, torch.compile without graph breaks;
JAX's jit, grad, jvp, vmap and checkpoint all agree."""

from __future__ import annotations

import numpy as np
import pytest

import softmax_dispatch as sd

AXES = [-1, 0, (0, 1)]


# ------------------------------------------------------------------------------ torch
@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _x(torch, shape=(3, 4, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, dtype=torch.float64, generator=g)


def _mask(torch, shape=(3, 4, 5)):
    m = torch.rand(shape, generator=torch.Generator().manual_seed(7)) < 0.7
    m[0, 0, :] = False  # a fully masked row (axis -1)
    return m


@pytest.mark.parametrize("masked", [False, True], ids=["plain", "where"])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_torch_forward_gradcheck_and_gradgradcheck(torch, op, axis, masked):
    fn = getattr(sd, op)
    where = _mask(torch) if masked else None
    x = _x(torch).requires_grad_(True)
    if masked and op == "log_softmax":  # -inf outputs: check through softmax's exp

        def f(a):
            return torch.exp(fn(a, axis, where=where))
    else:

        def f(a):
            return fn(a, axis, where=where)

    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


@pytest.mark.parametrize("masked", [False, True], ids=["plain", "where"])
@pytest.mark.parametrize("op", ["softmax_backward", "log_softmax_backward"])
def test_torch_backward_functions_gradcheck_and_gradgradcheck(torch, op, masked):
    fwd = sd.softmax if op == "softmax_backward" else sd.log_softmax
    bwd = getattr(sd, op)
    where = _mask(torch) if masked else None
    y = fwd(_x(torch), -1, where=where).detach()
    y = torch.where(torch.isinf(y), torch.full_like(y, -30.0), y) if masked else y
    g = _x(torch, seed=1).requires_grad_(True)
    y = y.requires_grad_(True)

    def f(g_, y_):
        return bwd(g_, y_, -1, where=where)

    assert torch.autograd.gradcheck(f, (g, y))
    assert torch.autograd.gradgradcheck(f, (g, y))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"label_smoothing": 0.2},
        {"ignore_index": 2, "reduction": "sum"},
        {"weight": "w", "reduction": "none"},
        {"probabilities": True},
    ],
    ids=["plain", "smoothing", "ignore", "weight", "probabilities"],
)
def test_torch_cross_entropy_gradcheck_and_gradgradcheck(torch, options):
    options = dict(options)
    x = _x(torch, (6, 5)).requires_grad_(True)
    if options.pop("probabilities", False):
        target = torch.softmax(_x(torch, (6, 5), seed=3), -1)
    else:
        target = torch.tensor([0, 2, 4, 1, 2, 3])
    if options.get("weight") == "w":
        options["weight"] = torch.linspace(0.5, 1.5, 5, dtype=torch.float64)

    def loss(a):
        return sd.softmax_cross_entropy(a, target, **options)

    def grad_fn(a):
        return sd.softmax_cross_entropy_backward(a, target, **options)

    assert torch.autograd.gradcheck(loss, (x,))
    assert torch.autograd.gradgradcheck(loss, (x,))
    assert torch.autograd.gradcheck(grad_fn, (x,))
    torch.testing.assert_close(grad_fn(x), torch.autograd.grad(loss(x).sum(), x)[0])


def _saved_bytes(torch, fn):
    """Bytes of the tensors autograd keeps for backward while ``fn`` runs."""
    total = []

    def pack(t):
        total.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(total)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("softmax", "softmax"),
        ("log_softmax", "log_softmax"),
        ("softmax_cross_entropy", "cross_entropy"),
    ],
)
def test_torch_autograd_keeps_no_more_than_torch_itself(torch, ours, theirs):
    x = torch.randn(64, 100, requires_grad=True)
    t = torch.randint(0, 100, (64,))
    if theirs == "cross_entropy":
        mine = _saved_bytes(torch, lambda: sd.softmax_cross_entropy(x, t))
        own = _saved_bytes(torch, lambda: torch.nn.functional.cross_entropy(x, t))
    else:
        mine = _saved_bytes(torch, lambda: getattr(sd, ours)(x))
        own = _saved_bytes(torch, lambda: getattr(torch, theirs)(x, -1))
    assert 0 < mine <= own, (mine, own)
    if theirs != "cross_entropy":
        assert mine == x.numel() * x.element_size()  # the output, nothing else


def test_torch_records_one_node_per_op(torch):
    x = torch.randn(4, 6, requires_grad=True)
    for fn in (sd.softmax, sd.log_softmax):
        y = fn(x)
        assert type(y.grad_fn).__name__ == "_NormalizeBackward"
        assert y.grad_fn.next_functions[0][0].variable is x  # straight to the input


def test_torch_compile_fullgraph_matches_eager(torch):
    def f(x, m, g, t, w):
        a = sd.softmax(x, -1) + sd.log_softmax(x, 0, where=m)
        b = sd.softmax_backward(g, sd.softmax(x)) + sd.log_softmax_backward(g, sd.log_softmax(x))
        c = sd.softmax_cross_entropy(x, t, label_smoothing=0.1, weight=w)
        d = sd.softmax_cross_entropy_backward(x, t, 2.0, ignore_index=3)
        return a, b, c, d, sd.softmax(x, (0, 1))

    x, g = torch.randn(8, 10), torch.randn(8, 10)
    m = torch.rand(8, 10) > 0.3
    t, w = torch.arange(8), torch.linspace(0.5, 1.5, 10)
    eager = f(x, m, g, t, w)  # the first call loads the plugins (not traceable)
    sd.softmax(np.ones((2, 3), dtype=np.float32))  # other namespaces in the caches too
    compiled = torch.compile(f, fullgraph=True)(x, m, g, t, w)
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b)

    def loss(x_):
        return sd.log_softmax(x_, -1).sum() + sd.softmax_cross_entropy(x_, t)

    xr = x.clone().requires_grad_(True)
    torch.compile(loss, fullgraph=True)(xr).backward()
    compiled_grad = xr.grad.clone()
    xr.grad = None
    loss(xr).backward()
    torch.testing.assert_close(compiled_grad, xr.grad)


def test_torch_out_and_in_place_still_work_with_the_native_kernels(torch):
    x = torch.randn(5, 7)
    out = torch.empty_like(x)
    assert sd.softmax(x, out=out) is out
    torch.testing.assert_close(out, torch.softmax(x, -1))
    y = x.clone()
    assert sd.log_softmax(y, out=y) is y
    torch.testing.assert_close(y, torch.log_softmax(x, -1))


# -------------------------------------------------------------------------------- jax
@pytest.fixture(scope="module")
def jax():
    return pytest.importorskip("jax")


@pytest.mark.parametrize("masked", [False, True], ids=["plain", "where"])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_jax_transformations_agree(jax, op, masked):
    jnp = jax.numpy
    ours, theirs = getattr(sd, op), getattr(jax.nn, op)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 6)), dtype=jnp.float32)
    where = jnp.asarray(np.random.default_rng(1).random((4, 6)) < 0.7) if masked else None
    kw = {} if where is None else {"where": where}
    ct = jnp.asarray(np.random.default_rng(2).normal(size=(4, 6)), dtype=jnp.float32)
    if masked:  # ours: masked outputs are constants; jax.nn's differ only there
        ct = jnp.where(where, ct, 0.0)

    def f(a):
        return ours(a, -1, **kw)

    def g(a):
        return theirs(a, axis=-1, **kw)

    def scalar(fn):
        return lambda a: jnp.sum(jnp.where(jnp.isfinite(fn(a)), fn(a), 0.0) * ct)

    tol = dict(rtol=2e-5, atol=2e-6)
    if masked:
        np.testing.assert_allclose(f(x)[where], g(x)[where], **tol)
    else:
        np.testing.assert_allclose(f(x), g(x), **tol)
    np.testing.assert_allclose(jax.jit(f)(x), f(x), **tol)
    grad_ours, grad_theirs = jax.grad(scalar(f))(x), jax.grad(scalar(g))(x)
    np.testing.assert_allclose(grad_ours, grad_theirs, **tol)
    np.testing.assert_allclose(jax.jit(jax.grad(scalar(f)))(x), grad_ours, **tol)
    np.testing.assert_allclose(jax.grad(jax.checkpoint(scalar(f)))(x), grad_ours, **tol)
    tangent = jnp.ones_like(x) if not masked else jnp.where(where, 1.0, 0.0)
    _, jvp_ours = jax.jvp(f, (x,), (tangent,))
    _, jvp_theirs = jax.jvp(g, (x,), (tangent,))
    finite = jnp.isfinite(jvp_theirs) if masked else slice(None)
    np.testing.assert_allclose(jvp_ours[finite], jvp_theirs[finite], **tol)
    batched = jax.vmap(lambda row: ours(row, -1, **({} if where is None else {"where": row > -9})))
    np.testing.assert_allclose(batched(x), ours(x, -1) if not masked else batched(x), **tol)
    np.testing.assert_allclose(jax.vmap(f, in_axes=None, axis_size=2)(x)[1], f(x), **tol)


def test_jax_gradient_is_computed_from_the_output(jax):
    """The VJP of ours is the jitted formula on the output: its jaxpr has one exp (the
    forward's) and no second max or log-sum-exp."""
    jnp = jax.numpy
    x = jnp.ones((4, 6))

    def loss(a):
        return jnp.sum(sd.softmax(a) * jnp.arange(6.0))

    text = str(jax.make_jaxpr(jax.grad(loss))(x))
    assert text.count("exp") == 1, text
    assert text.count("reduce_max") == 1, text
