"""What every reference shares: the two architectures, their data and the optimizer.

All references train the same thing as the zoo model: the same layers, the same
initial weights (copied from the Keras model), sparse categorical cross-entropy on
logits averaged over the batch, and RMSprop as Keras defines it
(``v = rho * v + (1 - rho) * g**2``, ``w -= lr * g / sqrt(v + eps)``) with Keras's
defaults ``lr=1e-3, rho=0.9, eps=1e-7``.
"""

from __future__ import annotations

import numpy as np

ARCHITECTURES = ("mnist_mlp", "toy_resnet")
LEARNING_RATE, RHO, EPSILON = 1e-3, 0.9, 1e-7

# toy_resnet's layers, in the order of the Keras model's weights: (name, kind, padding).
RESNET_CONVS = (
    ("stem_conv_1", "valid"),
    ("stem_conv_2", "valid"),
    ("block_1_conv_1", "same"),
    ("block_1_conv_2", "same"),
    ("block_2_conv_1", "same"),
    ("block_2_conv_2", "same"),
    ("head_conv", "valid"),
)


def synthetic(architecture: str, n: int, seed: int = 0):
    """``n`` samples shaped like MNIST (flattened) or CIFAR-10, uniform in [0, 1),
    with random labels in [0, 10): throughput does not depend on the values."""
    rng = np.random.default_rng(seed)
    shape = (784,) if architecture == "mnist_mlp" else (32, 32, 3)
    x = rng.random((n, *shape), dtype=np.float32)
    y = rng.integers(0, 10, n).astype("int32")
    return x, y


def batch_order(n: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """``(steps, batch_size)`` sample indices: full batches of a seeded permutation,
    drawn again whenever it runs out."""
    rng = np.random.default_rng(seed)
    per_epoch = n // batch_size
    rows = []
    while len(rows) < steps:
        order = rng.permutation(n)[: per_epoch * batch_size].reshape(per_epoch, batch_size)
        rows.extend(order)
    return np.stack(rows[:steps]).astype("int32")


def keras_weights(model) -> list[np.ndarray]:
    """The zoo model's weights as numpy arrays, in its layer order (kernel, bias)."""
    return [np.asarray(w) for w in model.get_weights()]
