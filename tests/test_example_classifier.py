"""The NumPy classifier example trains with sd.SoftmaxCrossEntropy and learns its data."""

from __future__ import annotations

import importlib.util
import itertools
import math
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "numpy_classifier.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("numpy_classifier_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_main_reaches_high_training_accuracy(example, capsys):
    accuracy = example.main(seed=0)
    assert isinstance(accuracy, float)
    assert accuracy > 0.9
    printed = capsys.readouterr().out
    assert "loss" in printed
    assert "accuracy" in printed


@pytest.mark.parametrize("seed", [0, 1])
def test_training_loss_decreases_from_chance_level(example, seed):
    accuracy, losses = example.fit(seed)
    assert accuracy > 0.9
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0]
    # Full-batch gradient descent with a small step: the loss goes down nearly every epoch.
    assert sum(b > a + 1e-12 for a, b in itertools.pairwise(losses)) <= len(losses) // 20


def test_loss_and_gradient_come_from_softmax_cross_entropy(example, monkeypatch):
    import softmax_dispatch as sd

    calls = {"forward": 0, "backward": 0}
    original = sd.SoftmaxCrossEntropy

    class Counting(original):
        def forward(self, logits, target):
            calls["forward"] += 1
            return super().forward(logits, target)

        def backward(self, grad=1.0):
            calls["backward"] += 1
            return super().backward(grad)

    monkeypatch.setattr(example.sd, "SoftmaxCrossEntropy", Counting)
    _, losses = example.fit(0, epochs=5)
    assert calls == {"forward": 5, "backward": 5}
    assert len(losses) == 5
