"""softmax_cross_entropy and its backward: PyTorch's semantics, on every target."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import softmax_dispatch as sd
from softmax_dispatch.conformance import reference as ref
from softmax_dispatch.conformance._data import logits, rng

N_CLASSES = 5
OPTIONS = [
    dict(reduction=r, label_smoothing=ls, weighted=w, ignore=ig)
    for r, ls, w, ig in itertools.product(
        ("mean", "sum", "none"), (0.0, 0.2), (False, True), (False, True)
    )
]


def _ids(o: dict) -> str:
    flags = ("-w" if o["weighted"] else "") + ("-ign" if o["ignore"] else "")
    return f"{o['reduction']}-ls{o['label_smoothing']}{flags}"


def _case(target, dtype, opts, index_target=True, axis=-1):
    shape = (6, N_CLASSES) if axis in (-1, 1) else (N_CLASSES, 6)
    x, exact = target.exact(logits(shape, seed=31, scale=2.0), dtype)
    if index_target:
        t_host = rng(32).integers(0, N_CLASSES, size=6)
        if opts["ignore"]:
            t_host[[1, 4]] = -100
        target_arr = target.indices(t_host)
    else:
        q = rng(33).random(shape)
        q = q / q.sum(axis=axis, keepdims=True)
        target_arr, t_host = target.exact(q, dtype)
    kw = dict(reduction=opts["reduction"], label_smoothing=opts["label_smoothing"])
    ref_kw = dict(kw)
    if opts["weighted"]:
        w_arr, w_host = target.exact(rng(34).random(N_CLASSES) + 0.5, dtype)
        kw["weight"], ref_kw["weight"] = w_arr, w_host
    if opts["ignore"] and index_target:
        kw["ignore_index"] = ref_kw["ignore_index"] = -100
    return x, exact, target_arr, t_host, kw, ref_kw


def _tol(dtype: str, exact: np.ndarray, axis: int) -> float:
    return ref.UNIT_ROUNDOFF[dtype] * 4 + ref.SLACK * ref.compute_eps(dtype) * (
        4 + ref.spread(exact, (axis % exact.ndim,))
    )


@pytest.mark.parametrize("opts", OPTIONS, ids=_ids)
def test_loss_with_index_targets_matches_reference(target, dtype, opts):
    x, exact, t, t_host, kw, ref_kw = _case(target, dtype, opts)
    loss = target.call(sd.softmax_cross_entropy, x, t, -1, **kw)
    target.same_place(loss, x)
    assert loss.dtype == target.dtype(dtype)
    expected = ref.cross_entropy_ref(exact, t_host, -1, **ref_kw)
    assert tuple(loss.shape) == expected.shape
    tol = _tol(dtype, exact, -1)
    np.testing.assert_allclose(target.to_numpy(loss), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("opts", [o for o in OPTIONS if not o["ignore"]], ids=_ids)
def test_loss_with_probability_targets_matches_reference(target, dtype, opts):
    x, exact, q, q_host, kw, ref_kw = _case(target, dtype, opts, index_target=False)
    loss = target.call(sd.softmax_cross_entropy, x, q, -1, **kw)
    target.same_place(loss, x)
    expected = ref.cross_entropy_ref(exact, q_host, -1, **ref_kw)
    tol = _tol(dtype, exact, -1)
    np.testing.assert_allclose(target.to_numpy(loss), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("opts", OPTIONS, ids=_ids)
def test_gradient_matches_reference(target, dtype, opts):
    x, exact, t, t_host, kw, ref_kw = _case(target, dtype, opts)
    grad_host = rng(35).random(6) + 0.5 if opts["reduction"] == "none" else 1.5
    grad = target.exact(grad_host, dtype)[0] if opts["reduction"] == "none" else grad_host
    d = target.call(sd.softmax_cross_entropy_backward, x, t, grad, -1, **kw)
    target.same_place(d, x)
    assert d.dtype == target.dtype(dtype) and tuple(d.shape) == tuple(x.shape)
    g_exact = target.to_numpy(grad) if opts["reduction"] == "none" else grad_host
    expected = ref.cross_entropy_grad_ref(exact, t_host, -1, g_exact, **ref_kw)
    tol = _tol(dtype, exact, -1)
    np.testing.assert_allclose(target.to_numpy(d), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("index_target", [True, False], ids=["index", "probability"])
def test_class_axis_zero(target, dtype, index_target):
    opts = dict(reduction="mean", label_smoothing=0.1, weighted=True, ignore=False)
    x, exact, t, t_host, kw, ref_kw = _case(target, dtype, opts, index_target, axis=0)
    loss = target.to_numpy(target.call(sd.softmax_cross_entropy, x, t, 0, **kw))
    d = target.to_numpy(target.call(sd.softmax_cross_entropy_backward, x, t, 1.0, 0, **kw))
    tol = _tol(dtype, exact, 0)
    np.testing.assert_allclose(
        loss, ref.cross_entropy_ref(exact, t_host, 0, **ref_kw), rtol=tol, atol=tol
    )
    np.testing.assert_allclose(
        d, ref.cross_entropy_grad_ref(exact, t_host, 0, **ref_kw), rtol=tol, atol=tol
    )


def test_ignored_samples_are_exactly_zero_even_with_nan_logits(target, dtype):
    host = logits((4, 3), seed=36)
    host[1] = np.nan
    host[2] = -np.inf
    x = target.asarray(host, dtype)
    t = target.indices(np.array([0, -100, -100, 2]))
    per = target.to_numpy(
        target.call(sd.softmax_cross_entropy, x, t, reduction="none", ignore_index=-100)
    )
    assert per[1] == 0 and per[2] == 0 and np.isfinite(per).all()
    mean = target.to_numpy(target.call(sd.softmax_cross_entropy, x, t, ignore_index=-100))
    assert np.isfinite(mean)
    d = target.to_numpy(target.call(sd.softmax_cross_entropy_backward, x, t, ignore_index=-100))
    assert (d[1] == 0).all() and (d[2] == 0).all() and np.isfinite(d).all()


def test_all_targets_ignored_mean_is_zero(target, dtype):
    x = target.asarray(logits((3, 4), seed=37), dtype)
    t = target.indices(np.full(3, -100))
    loss = target.to_numpy(target.call(sd.softmax_cross_entropy, x, t, ignore_index=-100))
    d = target.to_numpy(target.call(sd.softmax_cross_entropy_backward, x, t, ignore_index=-100))
    assert float(loss) == 0.0
    assert (d == 0).all()


def test_full_label_smoothing_is_uniform_target(target, dtype):
    x, exact = target.exact(logits((3, 4), seed=38), dtype)
    t = target.indices(np.array([0, 1, 3]))
    loss = target.to_numpy(target.call(sd.softmax_cross_entropy, x, t, label_smoothing=1.0))
    expected = -np.mean(ref.log_softmax_ref(exact, (1,)).mean(axis=1))
    tol = _tol(dtype, exact, -1)
    np.testing.assert_allclose(loss, expected, rtol=tol, atol=tol)


def test_out_of_range_class_index_is_an_error_or_nan(target):
    x = target.asarray(logits((3, 4), seed=39))
    t = target.indices(np.array([0, 4, 1]))
    if target.lazy:  # values cannot be read eagerly: the sample's loss is NaN instead
        per = target.to_numpy(target.call(sd.softmax_cross_entropy, x, t, reduction="none"))
        assert np.isnan(per[1]) and np.isfinite(per[[0, 2]]).all()
        return
    with pytest.raises(IndexError, match="class index 4"):
        target.call(sd.softmax_cross_entropy, x, t)
    with pytest.raises(IndexError, match="class index -3"):
        target.call(
            sd.softmax_cross_entropy_backward,
            x,
            target.indices(np.array([0, -3, 1])),
        )


def test_zero_d_grad_array_with_reduction_none(target, dtype):
    x = target.asarray(logits((3, 4), seed=72), dtype)
    t = target.indices(np.array([0, 1, 2]))
    g0 = target.call(sd.softmax_cross_entropy_backward, x, t, 2.0, reduction="none")
    g1 = target.call(
        sd.softmax_cross_entropy_backward, x, t, target.asarray(2.0, dtype), reduction="none"
    )
    np.testing.assert_array_equal(target.to_numpy(g1), target.to_numpy(g0))


def test_small_unsigned_target_dtype_with_many_classes(target):
    xp = target.xp
    if not hasattr(xp, "uint8"):
        pytest.skip("namespace has no uint8")
    host = np.zeros((2, 300))
    host[0, 5] = 10.0
    x = target.asarray(host)
    t8 = target.asarray(np.array([5, 7], dtype=np.uint8), xp.uint8)
    per = target.to_numpy(target.call(sd.softmax_cross_entropy, x, t8, reduction="none"))
    expected = -(host[[0, 1], [5, 7]] - np.log(np.exp(host).sum(1)))
    np.testing.assert_allclose(per, expected, rtol=1e-5, atol=1e-5)  # float32: ~eps * 10
