"""The dask backend's fused kernels: lazy (no compute while the graph is built), one task
per block for row-chunked input, correct against NumPy for every chunk layout, and the
same graphs on a dask.distributed cluster (threads, and processes on 127.0.0.1 with a
worker killed mid-computation)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

import softmax_dispatch as sd

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

RNG = np.random.default_rng(7)


def _refuse(*args, **kwargs):
    raise AssertionError("the graph was computed while it was being built")


@pytest.fixture
def no_compute():
    """Any compute (or bool(), float(), int() on a Dask array) raises."""
    with dask.config.set(scheduler=_refuse):
        yield


def _sync(a):
    return a.compute(scheduler="sync")


def _tasks(a) -> int:
    return len(dict(a.__dask_graph__()))


def _x(shape=(24, 10), dtype=np.float64):
    return RNG.standard_normal(shape).astype(dtype)


LAYOUTS = {
    "rows": (6, -1),
    "split softmax axis": (6, 4),
    "irregular": ((5, 1, 10, 8), (3, 3, 4)),
    "one chunk": (-1, -1),
}


# ---------------------------------------------------------------------------- laziness
def test_building_every_op_computes_nothing(no_compute):
    x = da.from_array(_x(), chunks=(6, 4))
    g = da.from_array(_x(), chunks=(4, 10))
    m = x > -1.0
    t = da.from_array(RNG.integers(0, 10, 24), chunks=5)
    q = sd.softmax(x)
    ops = [
        sd.softmax(x),
        sd.log_softmax(x, axis=0, where=m),
        sd.softmax_backward(g, q),
        sd.log_softmax_backward(g, sd.log_softmax(x), where=m),
        sd.softmax_cross_entropy(x, t, ignore_index=2, weight=np.linspace(0.5, 1, 10)),
        sd.softmax_cross_entropy(x, q, label_smoothing=0.1),
        sd.softmax_cross_entropy_backward(x, t, 2.0),
        sd.softmax_cross_entropy_backward(x, t, da.ones(24, chunks=6), reduction="none"),
        sd.Softmax().forward(x),
    ]
    out = x.copy()
    sd.softmax(x, out=out)
    ops.append(out)
    assert all(isinstance(o, da.Array) for o in ops)


def test_row_chunked_input_adds_one_task_per_block():
    x = da.from_array(_x((40, 16)), chunks=(5, 16))  # 8 blocks, rows whole
    g = da.from_array(_x((40, 16)), chunks=(5, 16))
    blocks = x.numblocks[0]
    base = _tasks(x)
    for y in (sd.softmax(x), sd.log_softmax(x)):
        assert _tasks(y) - base <= 3 * blocks
        assert _tasks(y) - base == blocks  # exactly one map_blocks task each
    y = sd.softmax(x)
    for b in (sd.softmax_backward(g, y), sd.log_softmax_backward(g, y)):
        assert _tasks(b) - (_tasks(y) + _tasks(g)) <= 3 * blocks


def test_two_calls_in_one_graph_keep_their_own_keys():
    """Each call's tasks are named from its inputs: two softmaxes of different arrays in
    one graph (or a softmax and a log_softmax of one) never share a key."""
    xn = _x()
    x = da.from_array(xn, chunks=(6, 10))
    both = sd.softmax(x) + 2 * sd.softmax(x * 3) + sd.log_softmax(x)
    want = sd.softmax(xn) + 2 * sd.softmax(xn * 3) + sd.log_softmax(xn)
    np.testing.assert_allclose(_sync(both), want, rtol=1e-12)
    t = da.from_array(RNG.integers(0, 10, 24), chunks=6)
    two = sd.softmax_cross_entropy(x, t) + sd.softmax_cross_entropy(x * 2, t)
    tn = _sync(t)
    expected = sd.softmax_cross_entropy(xn, tn) + sd.softmax_cross_entropy(xn * 2, tn)
    np.testing.assert_allclose(_sync(two), expected, rtol=1e-12)


def test_the_generic_path_adds_ten_times_more_tasks():
    """What the fused path saves: the generic kernels' tree reductions and passes."""
    from softmax_dispatch._dispatch import generic_kernels

    x = da.from_array(_x((40, 16)), chunks=(5, 16))
    with generic_kernels():
        generic = _tasks(sd.softmax(x)) - _tasks(x)
    assert generic >= 5 * (_tasks(sd.softmax(x)) - _tasks(x))


# --------------------------------------------------------------------------- forward
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("axis", [-1, 0, (0, 1)])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_forward_matches_numpy_for_every_chunk_layout(layout, axis, op):
    xn = _x()
    x = da.from_array(xn, chunks=LAYOUTS[layout])
    want = getattr(sd, op)(xn, axis=axis)
    np.testing.assert_allclose(_sync(getattr(sd, op)(x, axis=axis)), want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("axis", [0, 1, 2, (1, 2), (0, 2)])
def test_three_dimensional_input(axis):
    xn = _x((4, 6, 5))
    x = da.from_array(xn, chunks=(2, 3, 2))
    np.testing.assert_allclose(_sync(sd.softmax(x, axis)), sd.softmax(xn, axis), rtol=1e-12)
    np.testing.assert_allclose(_sync(sd.log_softmax(x, axis)), sd.log_softmax(xn, axis), rtol=1e-12)


@pytest.mark.parametrize("mask_kind", ["numpy", "dask other chunks", "row-broadcast"])
def test_where_masks_from_numpy_or_dask(mask_kind):
    xn = _x()
    mn = RNG.random((24, 10)) > 0.4
    mn[3] = False  # a fully masked row: zeros, never NaN
    x = da.from_array(xn, chunks=(5, 4))
    if mask_kind == "numpy":
        m = mn
    elif mask_kind == "dask other chunks":
        m = da.from_array(mn, chunks=(7, 3))
    else:
        mn = mn[:1]
        m = mn
    np.testing.assert_array_equal(_sync(sd.softmax(x, where=m)), sd.softmax(xn, where=mn))
    np.testing.assert_array_equal(_sync(sd.log_softmax(x, where=m)), sd.log_softmax(xn, where=mn))


def test_float16_and_integer_input():
    xn = (RNG.standard_normal((16, 12)) * 4).astype(np.float16)
    x = da.from_array(xn, chunks=(4, 5))
    np.testing.assert_array_equal(_sync(sd.softmax(x)), sd.softmax(xn))
    xi = RNG.integers(-128, 127, (16, 12), dtype=np.int8)
    np.testing.assert_array_equal(_sync(sd.softmax(da.from_array(xi, chunks=4))), sd.softmax(xi))


def test_rows_larger_than_the_chunk_size_stay_on_the_tree_reductions():
    xn = _x((6, 4096))
    x = da.from_array(xn, chunks=(6, 512))
    with dask.config.set({"array.chunk-size": "8KiB"}):  # one row is 32 KiB
        y = sd.softmax(x)
    assert max(y.chunks[1]) == 512  # never rechunked into whole rows
    np.testing.assert_allclose(_sync(y), sd.softmax(xn), rtol=1e-12)


def test_out_is_written_by_lazy_item_assignment():
    xn = _x()
    x = da.from_array(xn, chunks=(5, 4))
    out = da.zeros_like(x)
    assert sd.softmax(x, out=out) is out
    np.testing.assert_allclose(_sync(out), sd.softmax(xn), rtol=1e-12)


# -------------------------------------------------------------------------- backward
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_backward_with_grad_and_y_chunked_differently(op):
    xn, gn = _x(), _x()
    yn = getattr(sd, op)(xn)
    y = da.from_array(yn, chunks=(5, 10))
    g = da.from_array(gn, chunks=(3, 4))
    back = getattr(sd, f"{op}_backward")
    np.testing.assert_allclose(_sync(back(g, y)), back(gn, yn), rtol=1e-10, atol=1e-14)
    mn = RNG.random((24, 10)) > 0.3
    np.testing.assert_allclose(
        _sync(back(g, y, where=mn)), back(gn, yn, where=mn), rtol=1e-10, atol=1e-14
    )


# ---------------------------------------------------------------------- unknown sizes
def test_unknown_chunk_sizes_are_unknown_not_unequal():
    xn = _x()
    d = da.from_array(xn, chunks=(5, 10))
    keep = xn[:, 0] > -0.5
    du = d[d[:, 0] > -0.5]
    assert np.isnan(du.shape[0])
    ref = xn[keep]
    y = sd.softmax(du)
    np.testing.assert_allclose(_sync(y), sd.softmax(ref), rtol=1e-12)
    np.testing.assert_allclose(
        _sync(sd.softmax_backward(du, y)), sd.softmax_backward(ref, sd.softmax(ref)), rtol=1e-10
    )
    np.testing.assert_array_equal(
        _sync(sd.softmax(du, where=du > 0)), sd.softmax(ref, where=ref > 0)
    )
    tu = (du[:, 1] > 0).astype(np.int64)
    tn = (ref[:, 1] > 0).astype(np.int64)
    np.testing.assert_allclose(
        _sync(sd.softmax_cross_entropy(du, tu)), sd.softmax_cross_entropy(ref, tn), rtol=1e-12
    )
    np.testing.assert_allclose(
        _sync(sd.softmax_cross_entropy_backward(du, tu, 1.0)),
        sd.softmax_cross_entropy_backward(ref, tn, 1.0),
        rtol=1e-10,
    )
    with pytest.raises(ValueError, match=r"unknown chunk sizes.*compute_chunk_sizes"):
        sd.softmax(du, out=du.copy())


def test_a_shape_mismatch_with_known_sizes_is_still_refused():
    d = da.zeros((4, 5), chunks=2)
    with pytest.raises(ValueError, match=r"grad has shape \(4, 4\)"):
        sd.softmax_backward(da.zeros((4, 4), chunks=2), d)


# ---------------------------------------------------------------------- cross-entropy
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_with_targets_chunked_along_the_batch(reduction, weighted):
    xn = _x((30, 7))
    tn = RNG.integers(0, 7, 30)
    tn[[2, 9]] = -100
    w = np.linspace(0.5, 1.5, 7) if weighted else None
    x = da.from_array(xn, chunks=(8, 3))
    t = da.from_array(tn, chunks=6)
    kw = {"reduction": reduction, "weight": w, "ignore_index": -100, "label_smoothing": 0.1}
    np.testing.assert_allclose(
        _sync(sd.softmax_cross_entropy(x, t, **kw)),
        sd.softmax_cross_entropy(xn, tn, **kw),
        rtol=1e-12,
    )
    gn = RNG.standard_normal(30) if reduction == "none" else 2.0
    g = da.from_array(gn, chunks=11) if reduction == "none" else gn
    np.testing.assert_allclose(
        _sync(sd.softmax_cross_entropy_backward(x, t, g, **kw)),
        sd.softmax_cross_entropy_backward(xn, tn, gn, **kw),
        rtol=1e-10,
        atol=1e-15,
    )


def test_cross_entropy_reduces_the_loss_with_one_tree_reduction():
    x = da.from_array(_x((64, 7)), chunks=(8, 7))
    t = da.from_array(RNG.integers(0, 7, 64), chunks=8)
    loss = sd.softmax_cross_entropy(x, t)
    names = {k[0] if isinstance(k, tuple) else k for k in dict(loss.__dask_graph__())}
    assert sum(n.startswith(("sum-aggregate", "sum-partial")) for n in names) <= 2


def test_cross_entropy_out_of_range_classes_give_nan_lazily(no_compute):
    xn = _x((6, 4))
    tn = np.array([0, 9, 1, 3, -1, 2])
    loss = sd.softmax_cross_entropy(da.from_array(xn, chunks=2), tn, reduction="none")
    grad = sd.softmax_cross_entropy_backward(da.from_array(xn, chunks=2), tn, 1.0)
    with dask.config.set(scheduler="sync"):
        values, dx = loss.compute(), grad.compute()
    assert np.isnan(values[[1, 4]]).all() and np.isfinite(values[[0, 2, 3, 5]]).all()
    assert np.isnan(dx[[1, 4]]).all() and np.isfinite(dx[[0, 2, 3, 5]]).all()


def test_mean_over_nothing_counted_is_zero():
    x = da.from_array(_x((4, 3)), chunks=2)
    t = np.full(4, 5)
    assert _sync(sd.softmax_cross_entropy(x, t, ignore_index=5)) == 0.0
    assert not _sync(sd.softmax_cross_entropy_backward(x, t, 1.0, ignore_index=5)).any()


# ------------------------------------------------------------------------ distributed
def test_local_cluster_with_threads():
    distributed = pytest.importorskip("distributed")
    xn = _x((200, 50))
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        x = da.from_array(xn, chunks=(40, 25))
        y = sd.softmax(x)
        np.testing.assert_allclose(client.compute(y).result(), sd.softmax(xn), rtol=1e-12)
        t = da.from_array(RNG.integers(0, 50, 200), chunks=40)
        loss = client.compute(sd.softmax_cross_entropy(x, t)).result()
        np.testing.assert_allclose(loss, sd.softmax_cross_entropy(xn, t.compute()), rtol=1e-12)


def _die_once(block: np.ndarray, marker: str) -> np.ndarray:
    """Kills the worker process running it the first time it runs on data."""
    if block.size == 0:  # Dask probing the output type, in this process
        return block
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return block
    os.close(fd)
    os._exit(1)


def test_process_cluster_recovers_from_a_killed_worker(tmp_path: Path):
    distributed = pytest.importorskip("distributed")
    import cloudpickle

    # this test module is not importable in the workers: ship _die_once by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    marker = str(tmp_path / "killed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        x = da.random.default_rng(3).standard_normal((400, 64), chunks=(50, 64))
        x = x.map_blocks(_die_once, marker=marker, dtype=x.dtype, meta=np.empty((0, 0)))
        y, ls = sd.softmax(x), sd.log_softmax(x)
        total, row_max = client.compute([y.sum(), (ls.max(axis=1))]).__iter__()
        total, row_max = total.result(timeout=180), row_max.result(timeout=180)
    assert os.path.exists(marker)  # a worker really died
    assert abs(total - 400) < 1e-9
    assert (row_max <= 0).all()
