"""softmax_cross_entropy and its backward against torch.nn.functional.cross_entropy
(float64 loss and autograd gradient of the logits), central finite differences, and the
SoftmaxCrossEntropy layer."""

from __future__ import annotations

import re

import numpy as np
import pytest

import softmax_dispatch as sd

torch = pytest.importorskip("torch")
F = torch.nn.functional

SHAPE = (4, 3, 5)  # 3-D logits: the class axis may be any of them


# --------------------------------------------------------------------------- references


def torch_ce(logits, target, axis=-1, grad=1.0, *, index, **options):
    """Loss and ``grad``-weighted gradient of the logits from torch, class axis ``axis``.

    torch wants the class dimension at 1: the logits (and probability targets) are moved
    there; moving one axis keeps the order of the others, so sample shapes agree.
    """
    t = torch.tensor(np.asarray(logits, dtype=np.float64), requires_grad=True)
    ax = axis % t.ndim
    moved = torch.movedim(t, ax, 1)
    if index:
        tgt = torch.tensor(np.asarray(target), dtype=torch.int64)
    else:
        tgt = torch.movedim(torch.tensor(np.asarray(target, dtype=np.float64)), ax, 1)
    weight = options.pop("weight", None)
    if weight is not None:
        weight = torch.tensor(np.asarray(weight, dtype=np.float64))
    ignore_index = options.pop("ignore_index", None)
    loss = F.cross_entropy(
        moved,
        tgt,
        weight=weight,
        ignore_index=-100 if ignore_index is None else ignore_index,
        **options,
    )
    upstream = torch.as_tensor(np.asarray(grad, dtype=np.float64))
    loss.backward(upstream.expand(loss.shape))
    return loss.detach().numpy(), t.grad.numpy()


def _logits(shape=SHAPE, seed=0, scale=2.0, dtype=np.float64):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def _sample_shape(shape, axis):
    ax = axis % len(shape)
    return shape[:ax] + shape[ax + 1 :]


def _index_target(shape, axis, seed=1):
    n_classes = shape[axis]
    return np.random.default_rng(seed).integers(0, n_classes, size=_sample_shape(shape, axis))


def _prob_target(shape, axis, seed=2):
    raw = np.random.default_rng(seed).random(shape) + 0.05
    return raw / raw.sum(axis=axis, keepdims=True)


def _weight(n_classes, seed=3):
    return np.random.default_rng(seed).random(n_classes) + 0.25


def _assert_loss_shape(loss, reduction, sample_shape, dtype=np.float64):
    assert isinstance(loss, np.ndarray | np.generic)
    assert loss.dtype == dtype
    assert loss.shape == (sample_shape if reduction == "none" else ())


# --------------------------------------------------------------------------- vs torch


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("index", [True, False], ids=["index", "probs"])
def test_loss_and_gradient_match_torch(index, axis, reduction, label_smoothing, weighted):
    logits = _logits(seed=10)
    target = _index_target(SHAPE, axis) if index else _prob_target(SHAPE, axis)
    weight = _weight(SHAPE[axis]) if weighted else None
    options = dict(reduction=reduction, label_smoothing=label_smoothing, weight=weight)
    loss = sd.softmax_cross_entropy(logits, target, axis, **options)
    dx = sd.softmax_cross_entropy_backward(logits, target, 1.0, axis, **options)
    t_loss, t_grad = torch_ce(logits, target, axis, index=index, **options)
    _assert_loss_shape(loss, reduction, _sample_shape(SHAPE, axis))
    assert dx.shape == SHAPE
    assert dx.dtype == np.float64
    np.testing.assert_allclose(loss, t_loss, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, t_grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("axis", [-1, 0])
def test_two_dimensional_logits_with_class_axis_first_or_last(axis):
    shape = (6, 4) if axis == -1 else (4, 6)
    logits = _logits(shape, seed=11)
    target = _index_target(shape, axis)
    loss = sd.softmax_cross_entropy(logits, target, axis)
    dx = sd.softmax_cross_entropy_backward(logits, target, axis=axis)
    t_loss, t_grad = torch_ce(logits, target, axis, index=True)
    assert loss.shape == ()
    np.testing.assert_allclose(loss, t_loss, rtol=1e-13)
    np.testing.assert_allclose(dx, t_grad, rtol=1e-12, atol=1e-15)


def test_plain_index_loss_is_minus_log_softmax_of_the_target_class():
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    target = np.array([2, 0])
    per = sd.softmax_cross_entropy(logits, target, reduction="none")
    lse0 = np.log(np.exp(1.0) + np.exp(2.0) + np.exp(3.0))
    np.testing.assert_allclose(per, [lse0 - 3.0, np.log(3.0)], rtol=1e-14)
    assert per.dtype == np.float64
    assert per.shape == (2,)


# --------------------------------------------------------------------------- ignore_index


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore_index", [-100, 1])
def test_ignore_index_matches_torch_on_finite_data(
    ignore_index, reduction, label_smoothing, weighted
):
    axis = 1
    logits = _logits(seed=12)
    target = _index_target(SHAPE, axis, seed=13)
    target[0, :2] = ignore_index
    target[2, 4] = ignore_index
    weight = _weight(SHAPE[axis]) if weighted else None
    options = dict(
        reduction=reduction,
        label_smoothing=label_smoothing,
        weight=weight,
        ignore_index=ignore_index,
    )
    loss = sd.softmax_cross_entropy(logits, target, axis, **options)
    dx = sd.softmax_cross_entropy_backward(logits, target, 1.0, axis, **options)
    t_loss, t_grad = torch_ce(logits, target, axis, index=True, **options)
    _assert_loss_shape(loss, reduction, (4, 5))
    np.testing.assert_allclose(loss, t_loss, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, t_grad, rtol=1e-12, atol=1e-14)
    ignored = target == ignore_index
    np.testing.assert_array_equal(dx[np.broadcast_to(ignored[:, None, :], SHAPE)], 0.0)
    if reduction == "none":
        np.testing.assert_array_equal(loss[ignored], 0.0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("poison", [np.nan, -np.inf, np.inf])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ignored_samples_contribute_exactly_zero_even_with_non_finite_logits(poison, reduction):
    logits = _logits((5, 4), seed=14)
    target = np.array([0, -100, 3, -100, 2])
    weight = _weight(4)
    poisoned = logits.copy()
    poisoned[1] = poison
    poisoned[3, 2] = poison
    options = dict(reduction=reduction, ignore_index=-100, weight=weight, label_smoothing=0.1)
    loss = sd.softmax_cross_entropy(poisoned, target, **options)
    dx = sd.softmax_cross_entropy_backward(poisoned, target, **options)
    assert np.isfinite(loss).all()
    assert np.isfinite(dx).all()
    np.testing.assert_array_equal(dx[[1, 3]], 0.0)
    # Ignored rows cannot matter, so torch on the finite logits is the reference
    # (torch on the poisoned logits leaks NaN into the loss and the gradient).
    t_loss, t_grad = torch_ce(logits, target, index=True, **options)
    np.testing.assert_allclose(loss, t_loss, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, t_grad, rtol=1e-12, atol=1e-14)
    if reduction == "none":
        np.testing.assert_array_equal(loss[[1, 3]], 0.0)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_all_targets_ignored_with_mean_gives_zero_loss_and_gradient(weighted, label_smoothing):
    logits = _logits((3, 4), seed=15)
    logits[0] = np.nan
    target = np.full(3, -1)
    options = dict(
        ignore_index=-1,
        weight=_weight(4) if weighted else None,
        label_smoothing=label_smoothing,
    )
    loss = sd.softmax_cross_entropy(logits, target, **options)
    dx = sd.softmax_cross_entropy_backward(logits, target, **options)
    assert loss.shape == ()
    assert loss.dtype == np.float64
    assert loss == 0.0
    assert dx.shape == (3, 4)
    np.testing.assert_array_equal(dx, 0.0)
    total = sd.softmax_cross_entropy(logits, target, reduction="sum", **options)
    assert total == 0.0


def test_in_range_ignore_index_class_is_not_an_out_of_range_error():
    logits = _logits((3, 4), seed=16)
    target = np.array([0, 3, 3])
    loss = sd.softmax_cross_entropy(logits, target, ignore_index=3, reduction="none")
    np.testing.assert_array_equal(loss[1:], 0.0)
    assert loss[0] > 0


# --------------------------------------------------------------------------- upstream grad


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("grad", [2.5, -1, np.array(0.75)], ids=["float", "int", "0d"])
def test_scalar_upstream_gradient_scales_the_result(reduction, grad):
    logits = _logits(seed=17)
    target = _prob_target(SHAPE, 0)
    dx = sd.softmax_cross_entropy_backward(logits, target, grad, 0, reduction=reduction)
    _, t_grad = torch_ce(logits, target, 0, grad=grad, index=False, reduction=reduction)
    assert dx.dtype == np.float64
    assert dx.shape == SHAPE
    np.testing.assert_allclose(dx, t_grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("index", [True, False], ids=["index", "probs"])
def test_per_sample_upstream_gradient_for_reduction_none(index, axis):
    logits = _logits(seed=18)
    target = _index_target(SHAPE, axis) if index else _prob_target(SHAPE, axis)
    grad = _logits(_sample_shape(SHAPE, axis), seed=19)
    options = dict(reduction="none", label_smoothing=0.05, weight=_weight(SHAPE[axis]))
    dx = sd.softmax_cross_entropy_backward(logits, target, grad, axis, **options)
    _, t_grad = torch_ce(logits, target, axis, grad=grad, index=index, **options)
    assert dx.shape == SHAPE
    assert dx.dtype == np.float64
    np.testing.assert_allclose(dx, t_grad, rtol=1e-12, atol=1e-14)


def test_per_sample_upstream_gradient_may_be_integer():
    logits = _logits((3, 4), seed=20)
    target = np.array([1, 0, 3])
    grad = np.array([2, 0, -1])
    dx = sd.softmax_cross_entropy_backward(logits, target, grad, reduction="none")
    _, t_grad = torch_ce(logits, target, grad=grad, index=True, reduction="none")
    assert dx.dtype == np.float64
    np.testing.assert_allclose(dx, t_grad, rtol=1e-12, atol=1e-15)


def test_ignored_sample_gets_zero_gradient_even_with_nan_upstream_gradient():
    logits = _logits((3, 4), seed=21)
    target = np.array([1, -100, 3])
    grad = np.array([1.0, np.nan, 2.0])
    dx = sd.softmax_cross_entropy_backward(
        logits, target, grad, reduction="none", ignore_index=-100
    )
    np.testing.assert_array_equal(dx[1], 0.0)
    assert np.isfinite(dx).all()


@pytest.mark.parametrize(
    ("reduction", "grad", "fragment"),
    [
        ("mean", np.ones(3), r"\(3,\)"),
        ("sum", np.ones((3, 1)), r"\(3, 1\)"),
        ("none", np.ones(4), r"\(4,\)"),
    ],
)
def test_upstream_gradient_of_wrong_shape_is_a_value_error(reduction, grad, fragment):
    with pytest.raises(ValueError, match=fragment):
        sd.softmax_cross_entropy_backward(
            np.zeros((3, 4)), np.array([0, 1, 2]), grad, reduction=reduction
        )


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("target", "ignore_index", "value"),
    [
        (np.array([0, 9, 1]), None, "9"),
        (np.array([0, 17, 1]), -100, "17"),
        (np.array([-1, 2, 1]), None, "-1"),
        (np.array([0, -5, -100]), -100, "-5"),
    ],
)
@pytest.mark.parametrize("backward", [False, True], ids=["loss", "backward"])
def test_out_of_range_class_index_is_an_index_error_naming_it(
    backward, target, ignore_index, value
):
    fn = sd.softmax_cross_entropy_backward if backward else sd.softmax_cross_entropy
    with pytest.raises(IndexError, match=rf"(?<![\d-]){value}(?!\d)"):
        fn(np.zeros((3, 4)), target, ignore_index=ignore_index)


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        (np.zeros((3, 1), dtype=np.int64), r"\(3, 1\)"),
        (np.zeros(4, dtype=np.int64), r"\(4,\)"),
        (np.zeros((4, 3)), r"\(4, 3\)"),
        (np.zeros(3), r"\(3,\)"),
    ],
    ids=["index-extra-dim", "index-wrong-length", "probs-transposed", "probs-missing-axis"],
)
def test_target_of_wrong_shape_is_a_value_error(target, fragment):
    with pytest.raises(ValueError, match=fragment):
        sd.softmax_cross_entropy(np.zeros((3, 4)), target)
    with pytest.raises(ValueError, match=fragment):
        sd.softmax_cross_entropy_backward(np.zeros((3, 4)), target)


@pytest.mark.parametrize("reduction", ["avg", "MEAN", "", None, 0])
def test_bad_reduction_is_a_value_error_naming_it(reduction):
    with pytest.raises(ValueError, match=re.escape(repr(reduction))):
        sd.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1]), reduction=reduction)
    with pytest.raises(ValueError, match="reduction"):
        sd.SoftmaxCrossEntropy(reduction=reduction)


@pytest.mark.parametrize("label_smoothing", [1.5, -0.1, float("nan"), float("inf")])
def test_label_smoothing_outside_unit_interval_is_a_value_error(label_smoothing):
    with pytest.raises(ValueError, match=re.escape(str(label_smoothing))):
        sd.softmax_cross_entropy(
            np.zeros((2, 3)), np.array([0, 1]), label_smoothing=label_smoothing
        )
    with pytest.raises(ValueError, match=re.escape(str(label_smoothing))):
        sd.softmax_cross_entropy_backward(
            np.zeros((2, 3)), np.array([0, 1]), label_smoothing=label_smoothing
        )


@pytest.mark.parametrize("label_smoothing", ["0.1", None, True])
def test_non_numeric_label_smoothing_is_a_type_error(label_smoothing):
    with pytest.raises(TypeError, match="label_smoothing"):
        sd.softmax_cross_entropy(
            np.zeros((2, 3)), np.array([0, 1]), label_smoothing=label_smoothing
        )


def test_ignore_index_with_probability_targets_is_a_value_error():
    with pytest.raises(ValueError, match="ignore_index"):
        sd.softmax_cross_entropy(np.zeros((2, 3)), np.full((2, 3), 1 / 3), ignore_index=-100)
    with pytest.raises(ValueError, match="ignore_index"):
        sd.softmax_cross_entropy_backward(
            np.zeros((2, 3)), np.full((2, 3), 1 / 3), ignore_index=-100
        )


@pytest.mark.parametrize("ignore_index", [1.5, "x", True])
def test_non_integer_ignore_index_is_a_type_error(ignore_index):
    with pytest.raises(TypeError, match="ignore_index"):
        sd.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1]), ignore_index=ignore_index)


def test_weight_of_wrong_shape_is_a_value_error():
    with pytest.raises(ValueError, match=r"\(2,\)"):
        sd.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1]), weight=np.ones(2))


@pytest.mark.parametrize(
    "target", [np.array([True, False]), np.array([0j, 1j])], ids=["bool", "complex"]
)
def test_target_of_bool_or_complex_dtype_is_a_type_error(target):
    with pytest.raises(TypeError, match="target"):
        sd.softmax_cross_entropy(np.zeros((2, 3)), target)


@pytest.mark.parametrize("axis", [(0, 1), None])
def test_class_axis_must_be_one_int(axis):
    with pytest.raises(TypeError, match="axis"):
        sd.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1]), axis)


def test_class_axis_out_of_range_names_axis_and_ndim():
    with pytest.raises((ValueError, IndexError), match=r"axis 2 .*dimension 2"):
        sd.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1]), 2)


# --------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("index", [True, False], ids=["index", "probs"])
def test_float16_logits_keep_dtype_and_match_torch_float64(index, reduction):
    logits16 = _logits((8, 6), seed=22, dtype=np.float16)
    target = _index_target((8, 6), -1) if index else _prob_target((8, 6), -1)
    options = dict(reduction=reduction, label_smoothing=0.1, weight=_weight(6))
    loss = sd.softmax_cross_entropy(logits16, target, **options)
    dx = sd.softmax_cross_entropy_backward(logits16, target, **options)
    _assert_loss_shape(loss, reduction, (8,), dtype=np.float16)
    assert dx.dtype == np.float16
    assert dx.shape == (8, 6)
    t_loss, t_grad = torch_ce(logits16.astype(np.float64), target, index=index, **options)
    np.testing.assert_allclose(loss.astype(np.float64), t_loss, rtol=2e-3, atol=1e-4)
    np.testing.assert_allclose(dx.astype(np.float64), t_grad, rtol=2e-3, atol=1e-5)


def test_float32_logits_keep_dtype():
    logits = _logits((5, 7), seed=23, dtype=np.float32)
    target = _index_target((5, 7), -1)
    loss = sd.softmax_cross_entropy(logits, target)
    dx = sd.softmax_cross_entropy_backward(logits, target)
    assert loss.dtype == dx.dtype == np.float32
    t_loss, t_grad = torch_ce(logits.astype(np.float64), target, index=True)
    np.testing.assert_allclose(loss, t_loss, rtol=1e-6)
    np.testing.assert_allclose(dx, t_grad, rtol=1e-5, atol=1e-7)


def test_huge_logits_are_stable():
    logits = np.array([[1e30, -1e30, 0.0], [0.0, 1e30, 0.0]], dtype=np.float32)
    target = np.array([0, 0])
    per = sd.softmax_cross_entropy(logits, target, reduction="none")
    dx = sd.softmax_cross_entropy_backward(logits, target, reduction="sum")
    np.testing.assert_array_equal(per, np.array([0.0, 1e30], dtype=np.float32))
    np.testing.assert_array_equal(dx, np.array([[0, 0, 0], [-1, 1, 0]], dtype=np.float32))


def test_inputs_are_not_mutated():
    logits = _logits((3, 4), seed=24)
    target = np.array([1, -100, 2])
    weight = _weight(4)
    copies = [a.copy() for a in (logits, target, weight)]
    options = dict(ignore_index=-100, weight=weight, label_smoothing=0.1)
    sd.softmax_cross_entropy(logits, target, **options)
    sd.softmax_cross_entropy_backward(logits, target, **options)
    for a, c in zip((logits, target, weight), copies):
        np.testing.assert_array_equal(a, c)


# --------------------------------------------------------------------------- finite differences


def _finite_difference(loss_fn, x, h=1e-6):
    x = np.array(x, dtype=np.float64)
    out = np.zeros_like(x)
    flat, res = x.reshape(-1), out.reshape(-1)
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + h
        up = loss_fn(x)
        flat[i] = orig - h
        down = loss_fn(x)
        flat[i] = orig
        res[i] = (up - down) / (2 * h)
    return out


@pytest.mark.parametrize(
    "case",
    [
        dict(index=True, axis=-1, reduction="mean"),
        dict(index=True, axis=0, reduction="sum", label_smoothing=0.3, weighted=True),
        dict(index=True, axis=1, reduction="mean", ignore_index=0, weighted=True),
        dict(index=False, axis=1, reduction="mean", label_smoothing=0.2, weighted=True),
        dict(index=False, axis=-1, reduction="none", label_smoothing=1.0),
        dict(index=True, axis=0, reduction="none", weighted=True, ignore_index=1),
    ],
    ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()),
)
def test_backward_equals_central_finite_differences(case):
    case = dict(case)
    index, axis = case.pop("index"), case.pop("axis")
    shape = (3, 4, 2)
    logits = _logits(shape, seed=25)
    target = _index_target(shape, axis, seed=26) if index else _prob_target(shape, axis)
    weighted = case.pop("weighted", False)
    options = dict(case, weight=_weight(shape[axis]) if weighted else None)
    grad = 1.0
    if options["reduction"] == "none":
        grad = _logits(_sample_shape(shape, axis), seed=27)
    dx = sd.softmax_cross_entropy_backward(logits, target, grad, axis, **options)

    def loss_fn(z):
        return float(np.sum(grad * sd.softmax_cross_entropy(z, target, axis, **options)))

    np.testing.assert_allclose(dx, _finite_difference(loss_fn, logits), rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------- layer


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(reduction="sum", label_smoothing=0.1),
        dict(reduction="none", ignore_index=2, weight=np.array([1.0, 2.0, 0.5, 1.5])),
    ],
    ids=["default", "sum-smoothed", "none-ignore-weight"],
)
def test_layer_equals_the_functions_and_torch(options):
    logits = _logits((5, 4), seed=28)
    target = np.array([0, 2, 3, 1, 2])
    layer = sd.SoftmaxCrossEntropy(**options)
    loss = layer.forward(logits, target)
    grad = 1.0 if options.get("reduction") != "none" else _logits((5,), seed=29)
    dx = layer.backward(grad)
    np.testing.assert_array_equal(loss, sd.softmax_cross_entropy(logits, target, **options))
    np.testing.assert_array_equal(
        dx, sd.softmax_cross_entropy_backward(logits, target, grad, **options)
    )
    t_loss, t_grad = torch_ce(logits, target, grad=grad, index=True, **options)
    np.testing.assert_allclose(loss, t_loss, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, t_grad, rtol=1e-12, atol=1e-14)
    assert dx.shape == (5, 4)
    assert dx.dtype == np.float64


def test_layer_with_class_axis_0_and_probability_targets():
    logits = _logits((4, 6), seed=30)
    target = _prob_target((4, 6), 0)
    layer = sd.SoftmaxCrossEntropy(axis=0, label_smoothing=0.1)
    loss = layer.forward(logits, target)
    dx = layer.backward()
    t_loss, t_grad = torch_ce(logits, target, 0, index=False, label_smoothing=0.1)
    np.testing.assert_allclose(loss, t_loss, rtol=1e-12)
    np.testing.assert_allclose(dx, t_grad, rtol=1e-12, atol=1e-14)


def test_layer_backward_before_forward_is_a_runtime_error():
    with pytest.raises(RuntimeError, match="forward"):
        sd.SoftmaxCrossEntropy().backward()


def test_layer_rejects_bad_options_at_construction():
    with pytest.raises(ValueError, match=r"1\.5"):
        sd.SoftmaxCrossEntropy(label_smoothing=1.5)
    with pytest.raises(TypeError, match="axis"):
        sd.SoftmaxCrossEntropy(axis=(0, 1))


SMALL_INT_PATHS = ["fused", "generic"]


def _ce_call(path, fn, *args, **kw):
    from softmax_dispatch import _dispatch

    if path == "generic":
        with _dispatch.generic_kernels():
            return fn(*args, **kw)
    return fn(*args, **kw)


@pytest.mark.parametrize("path", SMALL_INT_PATHS)
def test_small_unsigned_target_dtype_with_many_classes(path):
    """uint8 targets with 300 classes: no wraparound in the class range."""
    x = np.zeros((2, 300))
    x[0, 5] = 10.0
    t8 = np.array([5, 7], dtype=np.uint8)
    t64 = t8.astype(np.int64)
    got = _ce_call(path, sd.softmax_cross_entropy, x, t8, reduction="none")
    want = _ce_call(path, sd.softmax_cross_entropy, x, t64, reduction="none")
    np.testing.assert_allclose(got, want, rtol=1e-12)
    ref = -(x[[0, 1], [5, 7]] - np.log(np.exp(x).sum(1)))
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    # and ignore_index outside the uint8 range is fine
    _ce_call(path, sd.softmax_cross_entropy, x, t8, ignore_index=-100)


@pytest.mark.parametrize("path", SMALL_INT_PATHS)
def test_out_of_range_int8_target_names_the_value(path):
    x = np.zeros((2, 200))
    with pytest.raises(IndexError, match="class index -1"):
        _ce_call(path, sd.softmax_cross_entropy, x, np.array([-1, 3], dtype=np.int8))


@pytest.mark.parametrize("path", SMALL_INT_PATHS)
def test_zero_d_grad_with_reduction_none(path):
    x = np.zeros((3, 4))
    t = np.array([0, 1, 2])
    got = _ce_call(path, sd.softmax_cross_entropy_backward, x, t, np.asarray(2.0), reduction="none")
    want = _ce_call(path, sd.softmax_cross_entropy_backward, x, t, 2.0, reduction="none")
    np.testing.assert_allclose(got, want)
    np.testing.assert_allclose(got, 2.0 * (0.25 - np.eye(4)[t]))


@pytest.mark.parametrize("path", SMALL_INT_PATHS)
@pytest.mark.parametrize("ignore_index", [None, -100, 3])
def test_uint64_class_index_beyond_int64_is_named_as_it_is(path, ignore_index):
    """2**64 - 1 in a uint64 target must be reported as itself, not wrapped to -1."""
    x = np.zeros((2, 4))
    t = np.array([1, 2**64 - 1], dtype=np.uint64)
    for fn in (sd.softmax_cross_entropy, sd.softmax_cross_entropy_backward):
        with pytest.raises(IndexError, match=r"class index 18446744073709551615\b"):
            _ce_call(path, fn, x, t, ignore_index=ignore_index)


def test_ignore_index_outside_the_int64_range_is_refused():
    with pytest.raises(ValueError, match=r"ignore_index .* -2\*\*63 .* 2\*\*63 - 1"):
        sd.softmax_cross_entropy(np.zeros((1, 3)), np.array([0]), ignore_index=2**64 - 1)


def test_class_indices_are_read_eagerly_only_where_that_needs_no_device_sync():
    """Host arrays are checked (an IndexError naming the value); arrays whose values
    cannot be read without a device sync or a computation are not read: their
    out-of-range samples get a NaN loss instead (documented in the user guide)."""
    from softmax_dispatch._validate import reads_are_cheap

    assert reads_are_cheap(np.zeros(3, dtype=np.int64))
    torch = pytest.importorskip("torch")
    # the torch backend decides for tensors (Backend.cheap_reads): host memory only
    torch_reads_are_cheap = sd.get_backend("torch").backend.cheap_reads
    assert torch_reads_are_cheap(torch.zeros(3, dtype=torch.int64))
    assert not torch_reads_are_cheap(torch.zeros(3, dtype=torch.int64, device="meta"))
    with pytest.raises(IndexError, match="9"):
        sd.softmax_cross_entropy(torch.zeros((2, 3)), torch.tensor([0, 9]))
    da = pytest.importorskip("dask.array")
    assert not reads_are_cheap(da.zeros(3, dtype=np.int64, chunks=1))
    jax = pytest.importorskip("jax")
    # JAX arrays never: the same semantics eagerly as under jit, where values are tracers
    assert not reads_are_cheap(jax.numpy.zeros(3, dtype=jax.numpy.int32))


def test_an_out_of_range_class_on_a_lazy_array_is_nan_without_computing():
    da = pytest.importorskip("dask.array")
    import dask

    logits = da.from_array(np.zeros((3, 4)), chunks=(1, 4))
    target = da.from_array(np.array([0, 9, 1]), chunks=1)

    def no_compute(*args, **kwargs):
        raise AssertionError("the call computed the graph")

    with dask.config.set(scheduler=no_compute):
        loss = sd.softmax_cross_entropy(logits, target, reduction="none")
    np.testing.assert_array_equal(np.isnan(loss.compute()), [False, True, False])
