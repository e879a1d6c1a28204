"""Train a small classifier in pure NumPy, with softmax_dispatch for the loss.

A one-hidden-layer network (2 -> 16 -> 3, tanh) learns three Gaussian blobs by full-batch
gradient descent. ``sd.SoftmaxCrossEntropy`` gives the loss (``forward``) and its gradient
with respect to the logits (``backward``); the rest of backpropagation is written out by
hand, so no framework is involved.

Run it with ``python examples/numpy_classifier.py``.
"""

from __future__ import annotations

import numpy as np

import softmax_dispatch as sd

CENTRES = np.array([[0.0, 3.0], [-2.6, -1.5], [2.6, -1.5]])


def make_blobs(rng: np.random.Generator, per_class: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian blobs in the plane: features of shape (n, 2) and labels 0, 1, 2."""
    labels = np.repeat(np.arange(len(CENTRES)), per_class)
    features = CENTRES[labels] + rng.normal(scale=1.0, size=(labels.size, 2))
    return features, labels


def fit(
    seed: int = 0, epochs: int = 200, lr: float = 0.5, hidden: int = 16
) -> tuple[float, list[float]]:
    """Train on a fresh data set; return the final training accuracy and the loss per epoch."""
    rng = np.random.default_rng(seed)
    x, labels = make_blobs(rng)
    w1 = rng.normal(scale=0.5, size=(2, hidden))
    b1 = np.zeros(hidden)
    w2 = rng.normal(scale=0.5, size=(hidden, 3))
    b2 = np.zeros(3)
    loss_fn = sd.SoftmaxCrossEntropy()  # mean over the batch, classes on the last axis
    losses = []
    for epoch in range(epochs):
        h = np.tanh(x @ w1 + b1)
        logits = h @ w2 + b2
        losses.append(float(loss_fn.forward(logits, labels)))
        dlogits = loss_fn.backward()  # dL/dlogits, already divided by the batch size
        dh = (dlogits @ w2.T) * (1.0 - h**2)
        w2 -= lr * (h.T @ dlogits)
        b2 -= lr * dlogits.sum(axis=0)
        w1 -= lr * (x.T @ dh)
        b1 -= lr * dh.sum(axis=0)
        if epoch % 25 == 0:
            print(f"epoch {epoch:3d}  loss {losses[-1]:.4f}")
    predictions = np.argmax(np.tanh(x @ w1 + b1) @ w2 + b2, axis=1)
    return float(np.mean(predictions == labels)), losses


def main(seed: int = 0) -> float:
    """Train, print the loss as it falls and the final accuracy; return the accuracy."""
    accuracy, losses = fit(seed)
    print(f"final loss {losses[-1]:.4f}  training accuracy {accuracy:.3f}")
    return accuracy


if __name__ == "__main__":
    main()
