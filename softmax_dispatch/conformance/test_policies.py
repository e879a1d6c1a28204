"""NaN, infinities and masks: the documented policies, on every target."""

from __future__ import annotations

import numpy as np
import pytest

import softmax_dispatch as sd
from softmax_dispatch.conformance import reference as ref
from softmax_dispatch.conformance._data import logits

NAN, INF = float("nan"), float("inf")


def test_nan_poisons_its_row_only(target, dtype):
    x = target.asarray([[1.0, NAN, 2.0], [1.0, 2.0, 3.0]], dtype)
    for fn in (sd.softmax, sd.log_softmax):
        y = target.to_numpy(target.call(fn, x, -1))
        assert np.isnan(y[0]).all(), f"{fn.__name__}: row with NaN gave {y[0]}"
        assert np.isfinite(y[1]).all(), f"{fn.__name__}: NaN leaked into another row: {y[1]}"


def test_row_of_only_minus_inf_is_nan(target, dtype):
    x = target.asarray([[-INF, -INF, -INF], [0.0, -INF, 0.0]], dtype)
    y = target.to_numpy(target.call(sd.softmax, x, -1))
    assert np.isnan(y[0]).all()
    np.testing.assert_allclose(y[1], [0.5, 0.0, 0.5], rtol=4 * ref.UNIT_ROUNDOFF[dtype])
    ly = target.to_numpy(target.call(sd.log_softmax, x, -1))
    assert np.isnan(ly[0]).all()
    assert ly[1, 1] == -INF


def test_row_with_plus_inf_is_nan(target, dtype):
    x = target.asarray([[INF, 1.0, 0.0], [1.0, 1.0, 1.0]], dtype)
    for fn in (sd.softmax, sd.log_softmax):
        y = target.to_numpy(target.call(fn, x, -1))
        assert np.isnan(y[0]).all(), f"{fn.__name__}: +inf row gave {y[0]}"
        assert np.isfinite(y[1]).all()


def _masked_case(target, dtype):
    host = logits((4, 6), seed=11)
    host[1, 2] = NAN  # masked-out garbage must not leak
    host[2, :] = -INF  # row 2 is fully masked below
    mask = np.ones((4, 6), dtype=bool)
    mask[0, [1, 4]] = False
    mask[1, 2] = False
    mask[2, :] = False
    mask[3, :] = False
    x, exact = target.exact(host, dtype)
    return x, exact, target.asarray(mask), mask


def test_masked_softmax_matches_reference_on_unmasked_entries(target, dtype):
    x, exact, where, mask = _masked_case(target, dtype)
    y = target.call(sd.softmax, x, -1, where=where)
    target.same_place(y, x)
    got = target.to_numpy(y)
    expected = np.zeros_like(exact)
    for r in range(exact.shape[0]):
        if mask[r].any():
            expected[r, mask[r]] = ref.softmax_ref(exact[r, mask[r]], (0,))
    assert not np.isnan(got).any(), f"masked softmax produced NaN: {got}"
    assert (got[~mask] == 0).all(), "masked entries must be exactly 0"
    bound = ref.softmax_bound(np.where(mask, exact, -INF), expected, (1,), dtype)
    ref.assert_within(got, expected, bound, "masked softmax")


def test_masked_log_softmax_gives_minus_inf_on_masked_entries(target, dtype):
    x, exact, where, mask = _masked_case(target, dtype)
    got = target.to_numpy(target.call(sd.log_softmax, x, -1, where=where))
    assert not np.isnan(got).any()
    assert (got[~mask] == -INF).all()
    row0 = ref.log_softmax_ref(exact[0, mask[0]], (0,))
    bound = ref.log_softmax_bound(exact[0, mask[0]], row0, (0,), dtype)
    ref.assert_within(got[0, mask[0]], row0, bound, "masked log_softmax")


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("poison", [NAN, INF, "all -inf"])
def test_masked_entries_stay_constant_when_the_rest_of_the_row_is_nan(target, dtype, op, poison):
    """A masked entry is 0 (-inf in log_softmax) whatever its row holds: a NaN, +inf or
    all -inf among the unmasked entries makes those NaN, not the masked ones."""
    host = logits((3, 5), seed=14)
    if poison == "all -inf":
        host[1, :] = -INF
    else:
        host[1, 0] = poison
    mask = np.array([True, True, False, True, False])
    x = target.asarray(host, dtype)
    got = target.to_numpy(target.call(getattr(sd, op), x, -1, where=target.asarray(mask)))
    constant = -INF if op == "log_softmax" else 0.0
    assert (got[:, ~mask] == constant).all(), f"{op}: masked entries gave {got[:, ~mask]}"
    assert np.isnan(got[1, mask]).all(), f"{op}: the poisoned row's unmasked entries {got[1]}"
    assert np.isfinite(got[[0, 2]][:, mask]).all()


def test_mask_broadcasts(target, dtype):
    x, exact = target.exact(logits((3, 5), seed=12), dtype)
    cols = np.array([True, False, True, True, False])
    y = target.to_numpy(target.call(sd.softmax, x, -1, where=target.asarray(cols)))
    expected = np.zeros_like(exact)
    expected[:, cols] = ref.softmax_ref(exact[:, cols], (1,))
    ref.assert_within(
        y, expected, ref.softmax_bound(exact, expected, (1,), dtype), "broadcast mask"
    )


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_masked_entries_get_exactly_zero_gradient(target, dtype, op):
    x, _, where, mask = _masked_case(target, dtype)
    fwd, bwd = getattr(sd, op), getattr(sd, f"{op}_backward")
    y = target.call(fwd, x, -1, where=where)
    g_host = logits((4, 6), seed=13)
    g_host[~mask] = NAN  # upstream garbage at masked positions must not leak either
    g = target.asarray(g_host, dtype)
    dx = target.to_numpy(target.call(bwd, g, y, -1, where=where))
    assert not np.isnan(dx).any(), f"{op}_backward produced NaN: {dx}"
    assert (dx[~mask] == 0).all()
    assert (dx[2] == 0).all() and (dx[3] == 0).all(), "fully masked rows need zero gradient"
