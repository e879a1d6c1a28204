"""Layer objects keep what backward needs safe from the caller: an in-place edit of the
output that forward returned never silently changes the gradient."""

from __future__ import annotations

import numpy as np
import pytest

import softmax_dispatch as sd

LAYERS = [sd.Softmax, sd.LogSoftmax]


def _data(xp_asarray=np.asarray):
    rng = np.random.default_rng(0)
    return xp_asarray(rng.normal(size=(4, 6))), xp_asarray(rng.normal(size=(4, 6)))


@pytest.mark.parametrize("layer_type", LAYERS)
def test_numpy_output_cannot_be_edited_in_place_behind_backward(layer_type):
    x, g = _data()
    layer = layer_type()
    y = layer.forward(x)
    reference = (sd.softmax_backward if layer_type is sd.Softmax else sd.log_softmax_backward)(
        g, np.array(y)
    )
    with pytest.raises(ValueError, match="read-only"):
        y += 1
    with pytest.raises(ValueError, match="read-only"):
        y[0, 0] = 5.0
    np.testing.assert_array_equal(layer.backward(g), reference)
    editable = np.array(y)  # a copy is the caller's to change
    editable += 1
    np.testing.assert_array_equal(layer.backward(g), reference)


@pytest.mark.parametrize("layer_type", LAYERS)
def test_functions_still_return_writeable_arrays(layer_type):
    x, _ = _data()
    fn = sd.softmax if layer_type is sd.Softmax else sd.log_softmax
    y = fn(x)
    y += 1  # only the layer protects what it saved
    assert y.flags.writeable


@pytest.mark.parametrize("layer_type", LAYERS)
def test_torch_output_edited_in_place_is_detected_by_backward(layer_type):
    torch = pytest.importorskip("torch")
    x, g = _data(torch.as_tensor)
    layer = layer_type()
    y = layer.forward(x)
    good = layer.backward(g)
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified in place"):
        layer.backward(g)
    y2 = layer.forward(x)  # a new forward saves the new output: fine again
    torch.testing.assert_close(layer.backward(g), good)
    assert y2 is not y


def test_torch_mask_edited_in_place_is_detected_by_backward():
    torch = pytest.importorskip("torch")
    x, g = _data(torch.as_tensor)
    mask = torch.ones(4, 6, dtype=torch.bool)
    layer = sd.Softmax()
    layer.forward(x, where=mask)
    mask[0, 0] = False
    with pytest.raises(RuntimeError, match=r"where.*modified in place"):
        layer.backward(g)


def test_cross_entropy_inputs_edited_in_place_are_detected_on_torch():
    torch = pytest.importorskip("torch")
    logits = torch.randn(4, 5)
    target = torch.tensor([0, 1, 2, 3])
    layer = sd.SoftmaxCrossEntropy()
    layer.forward(logits, target)
    logits.mul_(2)
    with pytest.raises(RuntimeError, match=r"logits.*modified in place"):
        layer.backward()


@pytest.mark.parametrize("layer_type", LAYERS)
def test_array_api_strict_output_edited_in_place_leaves_backward_intact(layer_type):
    xp = pytest.importorskip("array_api_strict")
    x, g = _data(xp.asarray)
    layer = layer_type()
    y = layer.forward(x)
    before = layer.backward(g)
    y[0, :] = 100.0  # item assignment: the library can neither refuse nor tell us
    after = layer.backward(g)
    assert bool(xp.all(before == after))


@pytest.mark.parametrize("layer_type", LAYERS)
def test_dask_output_edited_in_place_leaves_backward_intact(layer_type):
    da = pytest.importorskip("dask.array")
    x, g = _data()
    layer = layer_type()
    y = layer.forward(da.from_array(x, chunks=2))
    before = layer.backward(da.from_array(g, chunks=2)).compute()
    y[0, :] = 100.0
    after = layer.backward(da.from_array(g, chunks=2)).compute()
    np.testing.assert_array_equal(before, after)
