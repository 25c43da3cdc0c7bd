"""The four benchmarked models written directly in JAX: pure functions of a list of
arrays, NHWC convolutions through ``lax.conv_general_dilated`` (and
``lax.conv_transpose``), the ticket router's LSTMs as a ``lax.scan`` over time, RMSprop
or Adam written by hand, and, as the fastest form found here for each: for the models
without convolutions (the MLP, the ticket router) a whole window of steps in one
``jax.jit`` (a ``lax.scan`` over the window's batch indices, each batch gathered from the
data already on the device, the weights and optimizer state donated); for the ResNet and
the autoencoder one jitted step per batch, since XLA ran the ResNet's convolutions inside
the scan far slower on this CPU (a 15-step window took minutes)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import (
    BETA_1,
    BETA_2,
    DEPARTMENT_WEIGHT,
    EPSILON,
    LEARNING_RATE,
    RESNET_CONVS,
    RHO,
    take,
    uses_adam,
)


def _conv(x, kernel, bias, padding):
    y = jax.lax.conv_general_dilated(
        x, kernel, (1, 1), padding.upper(), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return y + bias


def _lstm(x, kernel, recurrent_kernel, bias):
    """Keras's LSTM (gates i, f, c, o; tanh and sigmoid): its last output."""
    projected = jnp.swapaxes(x @ kernel + bias, 0, 1)  # (time, batch, 4 * units)

    def step(carry, z):
        h, c = carry
        i, f, g, o = jnp.split(z + h @ recurrent_kernel, 4, axis=1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), None

    zeros = jnp.zeros((x.shape[0], recurrent_kernel.shape[0]), x.dtype)
    (h, _), _ = jax.lax.scan(step, (zeros, zeros), projected)
    return h


def _autoencoder(params, x):
    def conv(x, i):
        return jax.nn.relu(_conv(x, params[2 * i], params[2 * i + 1], "valid"))

    def deconv(x, i):  # as Keras's JAX backend calls it: the kernel is (h, w, out, in)
        y = jax.lax.conv_transpose(
            x,
            params[2 * i],
            (1, 1),
            "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            transpose_kernel=True,
        )
        return jax.nn.relu(y + params[2 * i + 1])

    x = conv(conv(x, 0), 1)
    x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 3, 3, 1), "VALID")
    x = conv(conv(x, 2), 3).max(axis=(1, 2))  # GlobalMaxPooling2D
    x = deconv(deconv(x.reshape(-1, 4, 4, 1), 4), 5)
    x = jnp.repeat(jnp.repeat(x, 3, axis=1), 3, axis=2)  # UpSampling2D(3), nearest
    return deconv(deconv(x, 6), 7)


def _ticket_router(params, x):
    title_embedding, body_embedding, *rest = params
    title = _lstm(title_embedding[x["title"]], *rest[0:3])
    body = _lstm(body_embedding[x["body"]], *rest[3:6])
    features = jnp.concatenate([title, body, x["tags"]], axis=1)
    return features @ rest[6] + rest[7], features @ rest[8] + rest[9]


def forward(architecture, params, x, key=None, dropout=0.5):
    """Logits. ``key`` (a PRNG key) turns dropout on, as in training."""
    if architecture == "conv_autoencoder":
        return _autoencoder(params, x)
    if architecture == "ticket_router":
        return _ticket_router(params, x)
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
    outputs = forward(architecture, params, x, key, dropout)
    if architecture == "conv_autoencoder":
        return jnp.mean(jnp.square(outputs - y))
    if architecture == "ticket_router":
        (priority, department), p = outputs, y["priority"]
        # Keras's binary cross-entropy from logits, and categorical from logits
        bce = jnp.maximum(priority, 0) - priority * p + jnp.log1p(jnp.exp(-jnp.abs(priority)))
        cce = -jnp.sum(y["department"] * jax.nn.log_softmax(department), axis=1)
        return jnp.mean(bce) + DEPARTMENT_WEIGHT * jnp.mean(cce)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(outputs), y[:, None], axis=1))


def _step(architecture, params, slots, x, y, idx, key, dropout):
    """One step; ``slots`` is RMSprop's ``[v]`` or Adam's ``[m, v, t]``."""
    key = key if dropout else None
    loss, grads = jax.value_and_grad(partial(loss_fn, architecture), argnums=0)(
        params, take(x, idx), take(y, idx), key, dropout
    )
    if uses_adam(architecture):
        m, v, t = slots
        t = t + 1
        m = [m + (g - m) * (1 - BETA_1) for m, g in zip(m, grads, strict=True)]
        v = [v + (g * g - v) * (1 - BETA_2) for v, g in zip(v, grads, strict=True)]
        lr = LEARNING_RATE * jnp.sqrt(1 - BETA_2**t) / (1 - BETA_1**t)
        params = [
            p - lr * a / (jnp.sqrt(b) + EPSILON) for p, a, b in zip(params, m, v, strict=True)
        ]
        return params, [m, v, t], loss
    (velocities,) = slots
    velocities = [RHO * v + (1 - RHO) * g * g for v, g in zip(velocities, grads, strict=True)]
    params = [
        p - LEARNING_RATE * g / jnp.sqrt(v + EPSILON)
        for p, g, v in zip(params, grads, velocities, strict=True)
    ]
    return params, [velocities], loss


train_step = jax.jit(_step, static_argnums=(0, 7), donate_argnums=(1, 2))


@partial(jax.jit, static_argnums=(0, 7), donate_argnums=(1, 2))
def train_window(architecture, params, slots, x, y, order, key, dropout):
    """One step per row of ``order``, in one compiled ``lax.scan``."""

    def body(carry, idx):
        params, slots, key = carry
        key, step_key = jax.random.split(key)
        params, slots, loss = _step(architecture, params, slots, x, y, idx, step_key, dropout)
        return (params, slots, key), loss

    (params, slots, key), losses = jax.lax.scan(body, (params, slots, key), order)
    return params, slots, key, losses[-1]


class Trainer:
    def __init__(self, architecture, weights, x, y, dropout=0.5, scan=None):
        self.architecture, self.dropout = architecture, dropout
        self.scan = architecture in ("mnist_mlp", "ticket_router") if scan is None else scan
        self.params = [jnp.asarray(w) for w in weights]
        zeros = [jnp.zeros_like(p) for p in self.params]
        self.slots = (
            [zeros, [jnp.zeros_like(p) for p in self.params], jnp.zeros(())]
            if uses_adam(architecture)
            else [zeros]
        )
        self.x, self.y = jax.device_put(x), jax.device_put(y)
        self.key = jax.random.key(0)
        self.predict_fn = jax.jit(partial(forward, architecture))

    def _step(self, idx):
        self.key, key = jax.random.split(self.key)
        self.params, self.slots, loss = train_step(
            self.architecture, self.params, self.slots, self.x, self.y, idx, key, self.dropout
        )
        return loss

    def losses(self, order: np.ndarray) -> list[float]:
        return [float(self._step(jnp.asarray(idx))) for idx in order]

    def train(self, order: np.ndarray) -> float:
        if not self.scan:
            for idx in jax.device_put(order):
                loss = self._step(idx)
            return float(loss)
        self.params, self.slots, self.key, loss = train_window(
            self.architecture,
            self.params,
            self.slots,
            self.x,
            self.y,
            jax.device_put(order),
            self.key,
            self.dropout,
        )
        return float(loss)

    def predict(self, x, batch_size: int) -> None:
        x = jax.device_put(x)
        n = len(jax.tree.leaves(x)[0])
        for i in range(0, n, batch_size):
            out = self.predict_fn(self.params, take(x, slice(i, i + batch_size)))
        jax.block_until_ready(out)
