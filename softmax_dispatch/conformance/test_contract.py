"""The calling contract: inputs never mutated, out=, clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest

import softmax_dispatch as sd
from softmax_dispatch.conformance._data import logits, rng


def _all_ops(target, dtype):
    """(name, callable, inputs) for every public op, on fresh arrays of ``target``."""
    x = target.asarray(logits((4, 5), seed=41), dtype)
    g = target.asarray(logits((4, 5), seed=42, scale=1.0), dtype)
    y = target.asarray(np.full((4, 5), 0.2), dtype)
    ly = target.asarray(np.full((4, 5), np.log(0.2)), dtype)
    t = target.indices(rng(43).integers(0, 5, size=4))
    w = target.asarray(np.linspace(0.5, 1.5, 5), dtype)
    mask = target.asarray(np.arange(20).reshape(4, 5) % 3 != 0)
    return [
        ("softmax", sd.softmax, (x,), {"where": mask}),
        ("log_softmax", sd.log_softmax, (x,), {"where": mask}),
        ("softmax_backward", sd.softmax_backward, (g, y), {"where": mask}),
        ("log_softmax_backward", sd.log_softmax_backward, (g, ly), {}),
        ("softmax_cross_entropy", sd.softmax_cross_entropy, (x, t), {"weight": w}),
        (
            "softmax_cross_entropy_backward",
            sd.softmax_cross_entropy_backward,
            (x, t),
            {"weight": w},
        ),
    ]


def test_inputs_are_never_mutated(target, dtype):
    for name, fn, args, kwargs in _all_ops(target, dtype):
        arrays = [*args, *kwargs.values()]
        before = [target.to_numpy(a) for a in arrays]
        target.call(fn, *args, **kwargs)
        for i, (a, b) in enumerate(zip(arrays, before)):
            np.testing.assert_array_equal(
                target.to_numpy(a), b, err_msg=f"{name} mutated input {i}"
            )


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_out_receives_the_result(target, dtype, op):
    fn = getattr(sd, op)
    x = target.asarray(logits((3, 7), seed=44), dtype)
    expected = target.to_numpy(target.call(fn, x))
    if not target.writeable:
        with pytest.raises(TypeError, match="item assignment"):
            target.call(fn, x, out=target.asarray(np.zeros((3, 7)), dtype))
        return
    out = target.asarray(np.zeros((3, 7)), dtype)
    result = target.call(fn, x, out=out)
    assert result is out
    np.testing.assert_array_equal(target.to_numpy(out), expected)
    inplace = target.asarray(target.to_numpy(x), dtype)
    assert target.call(fn, inplace, out=inplace) is inplace
    np.testing.assert_array_equal(target.to_numpy(inplace), expected)


def test_backward_out_receives_the_result(target, dtype):
    if not target.writeable:
        pytest.skip(f"{target.backend} arrays do not support item assignment")
    x = target.asarray(logits((3, 7), seed=45), dtype)
    y = target.call(sd.softmax, x)
    g = target.asarray(logits((3, 7), seed=46, scale=1.0), dtype)
    expected = target.to_numpy(target.call(sd.softmax_backward, g, y))
    out = target.asarray(np.zeros((3, 7)), dtype)
    assert target.call(sd.softmax_backward, g, y, out=out) is out
    np.testing.assert_array_equal(target.to_numpy(out), expected)


def test_out_of_wrong_shape_or_dtype_is_refused(target):
    if not target.writeable:
        pytest.skip(f"{target.backend} arrays do not support item assignment")
    x = target.asarray(logits((3, 4), seed=47), "float32")
    with pytest.raises(ValueError, match=r"out must have shape \(3, 4\)"):
        target.call(sd.softmax, x, out=target.asarray(np.zeros((4, 3)), "float32"))
    other = "float64" if "float64" in target.dtypes else None
    if other is not None:
        with pytest.raises(ValueError, match="dtype"):
            target.call(sd.softmax, x, out=target.asarray(np.zeros((3, 4)), other))


@pytest.mark.parametrize(
    ("axis", "fragment"),
    [
        (2, "axis 2 is out of bounds for array of dimension 2"),
        (-3, "axis -3 is out of bounds"),
        ((0, 0), "repeated axis"),
    ],
)
def test_bad_axis_names_axis_and_ndim(target, axis, fragment):
    x = target.asarray(logits((3, 4), seed=48))
    with pytest.raises(sd.AxisError, match=fragment):
        target.call(sd.softmax, x, axis)


def test_boolean_input_is_refused(target):
    x = target.asarray(np.array([True, False]))
    with pytest.raises(TypeError, match="bool"):
        target.call(sd.softmax, x)


def test_mask_must_be_boolean_and_broadcastable(target):
    x = target.asarray(logits((3, 4), seed=49))
    with pytest.raises(TypeError, match="where must be a boolean array"):
        target.call(sd.softmax, x, where=target.asarray(np.ones((3, 4))))
    with pytest.raises(ValueError, match=r"where has shape \(3,\)"):
        target.call(sd.softmax, x, where=target.asarray(np.ones(3, dtype=bool)))


def test_backward_shapes_must_match(target):
    g = target.asarray(np.ones((3, 4)))
    y = target.asarray(np.full((4, 3), 0.25))
    with pytest.raises(ValueError, match=r"grad has shape \(3, 4\) but y has shape \(4, 3\)"):
        target.call(sd.softmax_backward, g, y)


@pytest.mark.parametrize(
    ("kwargs", "exc", "fragment"),
    [
        ({"reduction": "avg"}, ValueError, "reduction must be one of"),
        ({"label_smoothing": 1.5}, ValueError, r"label_smoothing must be in \[0, 1\], got 1.5"),
        ({"label_smoothing": -0.1}, ValueError, "got -0.1"),
        ({"ignore_index": 1.5}, TypeError, "ignore_index must be an int"),
    ],
)
def test_cross_entropy_option_errors(target, kwargs, exc, fragment):
    x = target.asarray(logits((3, 4), seed=50))
    t = target.indices(np.array([0, 1, 2]))
    with pytest.raises(exc, match=fragment):
        target.call(sd.softmax_cross_entropy, x, t, **kwargs)


def test_errors_answer_habits_from_other_libraries(target):
    """PyTorch's ``dim=``, float class indices and PyTorch's class axis 1 each get a
    message that says what to write instead."""
    x = target.asarray(logits((2, 4, 3), seed=52))
    with pytest.raises(TypeError, match=r"'dim'.*use axis="):
        target.call(sd.softmax, x, dim=1)
    floats = target.asarray(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"class indices must be integers"):
        target.call(sd.softmax_cross_entropy, x, floats)
    with pytest.raises(ValueError, match=r"pass axis=1"):
        target.call(sd.softmax_cross_entropy, x, target.indices(np.zeros((2, 3))))


def test_cross_entropy_target_shape_errors(target):
    x = target.asarray(logits((3, 4), seed=51))
    with pytest.raises(ValueError, match=r"class-index target must have .* \(3,\), got \(4,\)"):
        target.call(sd.softmax_cross_entropy, x, target.indices(np.zeros(4)))
    with pytest.raises(ValueError, match=r"probability target must have the logits' shape"):
        target.call(sd.softmax_cross_entropy, x, target.asarray(np.full((3, 5), 0.2)))
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\)"):
        target.call(
            sd.softmax_cross_entropy,
            x,
            target.indices(np.zeros(3)),
            weight=target.asarray(np.ones(3)),
        )
    with pytest.raises(ValueError, match="ignore_index applies to class-index"):
        target.call(
            sd.softmax_cross_entropy, x, target.asarray(np.full((3, 4), 0.25)), ignore_index=0
        )


def _arguments(target):
    """(op, callable, positional arrays by name) for every public op."""
    x = target.asarray(logits((3, 4), seed=52))
    y = target.call(sd.softmax, x)
    t = target.indices(np.array([0, 1, 2]))
    return [
        ("softmax", sd.softmax, {"x": x}),
        ("log_softmax", sd.log_softmax, {"x": x}),
        ("softmax_backward", sd.softmax_backward, {"grad": x, "y": y}),
        ("log_softmax_backward", sd.log_softmax_backward, {"grad": x, "y": y}),
        ("softmax_cross_entropy", sd.softmax_cross_entropy, {"logits": x, "target": t}),
        (
            "softmax_cross_entropy_backward",
            sd.softmax_cross_entropy_backward,
            {"logits": x, "target": t, "grad": target.asarray(1.0)},
        ),
    ]


def test_none_for_an_array_argument_is_a_type_error_naming_it(target):
    for op, fn, args in _arguments(target):
        for name in args:
            call = dict(args, **{name: None})
            with pytest.raises(TypeError, match=name) as info:
                target.call(fn, *call.values())
            assert "None" in str(info.value), f"{op}({name}=None): {info.value}"


def test_complex_input_is_refused_by_every_op(target):
    info = target.xp.__array_namespace_info__()
    try:
        complex_dtypes = info.dtypes(device=target.device, kind="complex floating")
    except Exception:
        complex_dtypes = {}
    if not complex_dtypes:
        pytest.skip(f"{target.backend} on {target.device_name} has no complex dtype")
    dtype = next(iter(complex_dtypes.values()))
    z = target.from_host(np.ones((2, 3)), dtype)
    real = target.asarray(np.full((2, 3), 1 / 3))
    t = target.indices(np.array([0, 1]))
    calls = [
        (sd.softmax, (z,)),
        (sd.log_softmax, (z,)),
        (sd.softmax_backward, (z, real)),
        (sd.softmax_backward, (real, z)),
        (sd.log_softmax_backward, (z, real)),
        (sd.softmax_cross_entropy, (z, t)),
        (sd.softmax_cross_entropy_backward, (z, t)),
    ]
    for fn, args in calls:
        with pytest.raises(TypeError, match="complex"):
            target.call(fn, *args)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_out_overlapping_the_input_gives_the_result_of_a_copy(target, dtype, op):
    """``out`` one row further on than ``x`` in the same buffer: each row written is read
    later as input. The result must be what a separate ``out`` would get (where slicing
    gives views; elsewhere the check is trivially the same)."""
    if not target.writeable:
        pytest.skip(f"{target.backend} arrays do not support item assignment")
    fn = getattr(sd, op)
    buf = target.asarray(logits((201, 120), seed=53), dtype)  # over the small-input cut-off
    expected = target.to_numpy(target.call(fn, target.asarray(target.to_numpy(buf)[:-1], dtype)))
    result = target.call(fn, buf[:-1, ...], out=buf[1:, ...])
    np.testing.assert_array_equal(target.to_numpy(result), expected)


@pytest.mark.parametrize("over", ["grad", "y"])
def test_backward_out_overlapping_an_input_gives_the_result_of_a_copy(target, dtype, over):
    if not target.writeable:
        pytest.skip(f"{target.backend} arrays do not support item assignment")
    y_host = target.to_numpy(target.call(sd.softmax, target.asarray(logits((201, 120), seed=54))))
    g_host = logits((201, 120), seed=55, scale=1.0)
    y, g = target.asarray(y_host, dtype), target.asarray(g_host, dtype)
    head, tail = (slice(None, -1), ...), (slice(1, None), ...)
    expected = target.to_numpy(target.call(sd.softmax_backward, g[head], y[head]))
    out = g[tail] if over == "grad" else y[tail]
    result = target.call(sd.softmax_backward, g[head], y[head], out=out)
    np.testing.assert_array_equal(target.to_numpy(result), expected)
