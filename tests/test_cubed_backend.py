"""Cubed arrays: every op lazy (no computation while the plan is built) and correct on a
user's own `cubed.Spec` (every array of one computation must share it)."""

from __future__ import annotations

import numpy as np
import pytest

import softmax_dispatch as sd

cubed = pytest.importorskip("cubed")

RNG = np.random.default_rng(11)


@pytest.fixture
def spec(tmp_path):
    return cubed.Spec(work_dir=str(tmp_path), allowed_mem="200MB")


@pytest.fixture
def no_compute(monkeypatch):
    """Any computation of a Cubed plan raises."""

    def refuse(*args, **kwargs):
        raise AssertionError("a Cubed plan was computed while it was being built")

    monkeypatch.setattr(cubed, "compute", refuse)
    monkeypatch.setattr(cubed.Array, "compute", refuse)
    monkeypatch.setattr(cubed.Array, "__bool__", refuse)
    monkeypatch.setattr(cubed.Array, "__int__", refuse)
    monkeypatch.setattr(cubed.Array, "__float__", refuse)


def test_the_cubed_backend_owns_cubed_arrays(spec):
    x = cubed.from_array(np.zeros((2, 3)), spec=spec)
    y = sd.softmax(x)
    assert sd.get_backend("cubed").backend.owns(x)
    assert type(y) is type(x) and y.spec == spec


def test_every_op_is_lazy_on_a_user_spec(spec, no_compute):
    xn = RNG.standard_normal((12, 5))
    x = cubed.from_array(xn, chunks=(4, 5), spec=spec)
    t = cubed.from_array(RNG.integers(0, 5, 12), chunks=4, spec=spec)
    g = cubed.from_array(RNG.standard_normal((12, 5)), chunks=(4, 5), spec=spec)
    w = cubed.from_array(np.linspace(0.5, 1.5, 5), spec=spec)
    y = sd.softmax(x)
    results = [
        y,
        sd.log_softmax(x, axis=0),
        sd.softmax_backward(g, y),
        sd.log_softmax_backward(g, sd.log_softmax(x)),
        sd.softmax_cross_entropy(x, t, weight=w, ignore_index=2, label_smoothing=0.1),
        sd.softmax_cross_entropy(x, y),
        sd.softmax_cross_entropy_backward(x, t, 2.0, weight=w),
        sd.softmax_cross_entropy(x, t, reduction="none"),
    ]
    assert all(r.spec == spec for r in results)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_on_a_user_spec_matches_numpy(spec, reduction):
    xn = RNG.standard_normal((12, 5))
    tn = RNG.integers(0, 5, 12)
    tn[3] = -100
    wn = np.linspace(0.5, 1.5, 5)
    x = cubed.from_array(xn, chunks=(4, 5), spec=spec)
    t = cubed.from_array(tn, chunks=4, spec=spec)
    w = cubed.from_array(wn, spec=spec)
    kw = {"reduction": reduction, "ignore_index": -100, "label_smoothing": 0.1}
    np.testing.assert_allclose(
        sd.softmax_cross_entropy(x, t, weight=w, **kw).compute(),
        sd.softmax_cross_entropy(xn, tn, weight=wn, **kw),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        sd.softmax_cross_entropy_backward(x, t, 1.5, weight=w, **kw).compute(),
        sd.softmax_cross_entropy_backward(xn, tn, 1.5, weight=wn, **kw),
        rtol=1e-12,
        atol=1e-15,
    )
    qn = sd.softmax(RNG.standard_normal((12, 5)))
    q = cubed.from_array(qn, chunks=(4, 5), spec=spec)
    np.testing.assert_allclose(
        sd.softmax_cross_entropy(x, q, reduction=reduction).compute(),
        sd.softmax_cross_entropy(xn, qn, reduction=reduction),
        rtol=1e-12,
    )


def test_out_of_range_classes_are_nan_not_read(spec):
    x = cubed.from_array(RNG.standard_normal((3, 4)), spec=spec)
    t = cubed.from_array(np.array([0, 9, 1]), spec=spec)
    per = sd.softmax_cross_entropy(x, t, reduction="none").compute()
    assert np.isnan(per[1]) and np.isfinite(per[[0, 2]]).all()


def test_out_is_refused_with_the_reason(spec):
    x = cubed.from_array(np.zeros((2, 3)), spec=spec)
    with pytest.raises(TypeError, match="Cubed arrays are immutable"):
        sd.softmax(x, out=cubed.from_array(np.zeros((2, 3)), spec=spec))
