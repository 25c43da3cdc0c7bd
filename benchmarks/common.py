"""What every reference shares: the four architectures, their data and the optimizers.

All references train the same thing as the zoo model: the same layers, the same
initial weights (copied from the Keras model), the recipe's loss (sparse categorical
cross-entropy on logits for the MLP and the ResNet, the mean squared error for the
autoencoder, the guide's two weighted losses for the ticket router), averaged over the
batch, and the recipe's optimizer as Keras defines it: RMSprop
(``v = rho * v + (1 - rho) * g**2``, ``w -= lr * g / sqrt(v + eps)``) with Keras's
defaults ``lr=1e-3, rho=0.9, eps=1e-7``, or Adam for the autoencoder (below).
"""

from __future__ import annotations

import numpy as np

ARCHITECTURES = ("mnist_mlp", "toy_resnet", "conv_autoencoder", "ticket_router")
LEARNING_RATE, RHO, EPSILON = 1e-3, 0.9, 1e-7
# Adam as Keras defines it, for the autoencoder (the zoo's reconstruction recipe):
# ``m += (g - m) * (1 - beta_1)``, ``v += (g**2 - v) * (1 - beta_2)``,
# ``w -= lr * sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (sqrt(v) + eps)``, t from 1
BETA_1, BETA_2 = 0.9, 0.999
# ticket_router's loss: binary cross-entropy on the priority logit plus 0.2 x categorical
# cross-entropy on the department logits (the guide's loss weights), each a batch mean
DEPARTMENT_WEIGHT = 0.2
# conv_autoencoder: the filters of its convolutions, encoder then decoder (all 3x3,
# "valid", relu; 3x3 max pooling and 3x upsampling between the two pairs of each half)
AUTOENCODER_ENCODER = (16, 32, 32, 16)
AUTOENCODER_DECODER = (16, 32, 16, 1)


def uses_adam(architecture: str) -> bool:
    return architecture == "conv_autoencoder"


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


def take(data, idx):
    """``data[idx]``, for an array or a dict of arrays (the ticket router's inputs and
    targets), numpy or a framework's tensors."""
    if isinstance(data, dict):
        return {k: v[idx] for k, v in data.items()}
    return data[idx]
