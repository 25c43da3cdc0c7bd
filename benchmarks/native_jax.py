"""The MLP and the toy ResNet written directly in JAX: pure functions of a list of
arrays, NHWC convolutions through ``lax.conv_general_dilated``, RMSprop written by
hand, and, as the fastest form found here for each: for the MLP a whole window of
steps in one ``jax.jit`` (a ``lax.scan`` over the window's batch indices, each batch
gathered from the data already on the device, the weights and optimizer state
donated); for the ResNet one jitted step per batch, since XLA ran its convolutions
inside the scan far slower on this CPU (a 15-step window took minutes)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import EPSILON, LEARNING_RATE, RESNET_CONVS, RHO


def _conv(x, kernel, bias, padding):
    y = jax.lax.conv_general_dilated(
        x, kernel, (1, 1), padding.upper(), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return y + bias


def forward(architecture, params, x, key=None, dropout=0.5):
    """Logits. ``key`` (a PRNG key) turns dropout on, as in training."""
    if architecture == "mnist_mlp":
        k1, b1, k2, b2, k3, b3 = params
        return jax.nn.relu(jax.nn.relu(x @ k1 + b1) @ k2 + b2) @ k3 + b3
    convs = [(params[2 * i], params[2 * i + 1], pad) for i, (_, pad) in enumerate(RESNET_CONVS)]
    x = jax.nn.relu(_conv(jax.nn.relu(_conv(x, *convs[0])), *convs[1]))
    x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 3, 3, 1), "VALID")
    for i in (2, 4):
        x = jax.nn.relu(_conv(jax.nn.relu(_conv(x, *convs[i])), *convs[i + 1])) + x
    x = jax.nn.relu(_conv(x, *convs[6])).mean(axis=(1, 2))
    x = jax.nn.relu(x @ params[14] + params[15])
    if key is not None and dropout:
        keep = jax.random.bernoulli(key, 1 - dropout, x.shape)
        x = jnp.where(keep, x / (1 - dropout), 0)
    return x @ params[16] + params[17]


def loss_fn(architecture, params, x, y, key=None, dropout=0.5):
    logits = forward(architecture, params, x, key, dropout)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


def _step(architecture, params, velocities, x, y, idx, key, dropout):
    key = key if dropout else None
    loss, grads = jax.value_and_grad(partial(loss_fn, architecture), argnums=0)(
        params, x[idx], y[idx], key, dropout
    )
    velocities = [RHO * v + (1 - RHO) * g * g for v, g in zip(velocities, grads, strict=True)]
    params = [
        p - LEARNING_RATE * g / jnp.sqrt(v + EPSILON)
        for p, g, v in zip(params, grads, velocities, strict=True)
    ]
    return params, velocities, loss


train_step = jax.jit(_step, static_argnums=(0, 7), donate_argnums=(1, 2))


@partial(jax.jit, static_argnums=(0, 7), donate_argnums=(1, 2))
def train_window(architecture, params, velocities, x, y, order, key, dropout):
    """One step per row of ``order``, in one compiled ``lax.scan``."""

    def body(carry, idx):
        params, velocities, key = carry
        key, step_key = jax.random.split(key)
        params, velocities, loss = _step(
            architecture, params, velocities, x, y, idx, step_key, dropout
        )
        return (params, velocities, key), loss

    (params, velocities, key), losses = jax.lax.scan(body, (params, velocities, key), order)
    return params, velocities, key, losses[-1]


class Trainer:
    def __init__(self, architecture, weights, x, y, dropout=0.5, scan=None):
        self.architecture, self.dropout = architecture, dropout
        self.scan = architecture == "mnist_mlp" if scan is None else scan
        self.params = [jnp.asarray(w) for w in weights]
        self.velocities = [jnp.zeros_like(p) for p in self.params]
        self.x, self.y = jax.device_put(x), jax.device_put(y)
        self.key = jax.random.key(0)
        self.predict_fn = jax.jit(partial(forward, architecture))

    def _step(self, idx):
        self.key, key = jax.random.split(self.key)
        self.params, self.velocities, loss = train_step(
            self.architecture, self.params, self.velocities, self.x, self.y, idx, key, self.dropout
        )
        return loss

    def losses(self, order: np.ndarray) -> list[float]:
        return [float(self._step(jnp.asarray(idx))) for idx in order]

    def train(self, order: np.ndarray) -> float:
        if not self.scan:
            for idx in jax.device_put(order):
                loss = self._step(idx)
            return float(loss)
        self.params, self.velocities, self.key, loss = train_window(
            self.architecture,
            self.params,
            self.velocities,
            self.x,
            self.y,
            jax.device_put(order),
            self.key,
            self.dropout,
        )
        return float(loss)

    def predict(self, x: np.ndarray, batch_size: int) -> None:
        x = jax.device_put(x)
        for i in range(0, len(x), batch_size):
            out = self.predict_fn(self.params, x[i : i + batch_size])
        out.block_until_ready()
