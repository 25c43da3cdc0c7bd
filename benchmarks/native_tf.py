"""The four benchmarked models written directly in TensorFlow: ``tf.Variable``
weights, RMSprop or Adam written by hand, the ticket router's LSTMs unrolled over their
(fixed) time steps, and, as the fastest form found here, a whole window of steps in one
``tf.function`` (a ``tf.range`` loop that gathers each batch from the data already in
memory).

That function is XLA-compiled for the models without convolutions (the MLP, the ticket
router), not for the ResNet and the autoencoder: on this CPU, XLA made the MLP's window
about 2.5x faster than a per-step ``tf.function`` loop, while the ResNet's convolutions
inside an XLA-compiled loop ran about 35x slower than without XLA (4 s against 0.1 s a
step), and per-step XLA was still 1.3x slower than the plain graph loop."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

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


def _lstm(x, kernel, recurrent_kernel, bias):
    """Keras's LSTM (gates i, f, c, o; tanh and sigmoid), its last output, unrolled."""
    projected = x @ kernel + bias  # every time step's input projection at once
    h = c = tf.zeros((tf.shape(x)[0], recurrent_kernel.shape[0]))
    for t in range(x.shape[1]):
        i, f, g, o = tf.split(projected[:, t] + h @ recurrent_kernel, 4, axis=1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
    return h


def _autoencoder(params, x):
    def conv(x, i):
        return tf.nn.relu(tf.nn.conv2d(x, params[2 * i], 1, "VALID") + params[2 * i + 1])

    def deconv(x, i):  # Keras's Conv2DTranspose kernel is (h, w, out, in), as TensorFlow's
        kernel = params[2 * i]
        shape = tf.stack([tf.shape(x)[0], x.shape[1] + 2, x.shape[2] + 2, kernel.shape[2]])
        return tf.nn.relu(tf.nn.conv2d_transpose(x, kernel, shape, 1, "VALID") + params[2 * i + 1])

    x = tf.nn.max_pool2d(conv(conv(x, 0), 1), 3, 3, "VALID")
    x = tf.reduce_max(conv(conv(x, 2), 3), axis=(1, 2))  # GlobalMaxPooling2D
    x = deconv(deconv(tf.reshape(x, (-1, 4, 4, 1)), 4), 5)
    x = tf.repeat(tf.repeat(x, 3, axis=1), 3, axis=2)  # UpSampling2D(3), nearest
    return deconv(deconv(x, 6), 7)


def _ticket_router(params, x):
    title_embedding, body_embedding, *rest = params
    title = _lstm(tf.gather(title_embedding, x["title"]), *rest[0:3])
    body = _lstm(tf.gather(body_embedding, x["body"]), *rest[3:6])
    features = tf.concat([title, body, x["tags"]], axis=1)
    return features @ rest[6] + rest[7], features @ rest[8] + rest[9]


def forward(architecture, params, x, training=False, dropout=0.5):
    if architecture == "conv_autoencoder":
        return _autoencoder(params, x)
    if architecture == "ticket_router":
        return _ticket_router(params, x)
    if architecture == "mnist_mlp":
        k1, b1, k2, b2, k3, b3 = params
        return tf.nn.relu(tf.nn.relu(x @ k1 + b1) @ k2 + b2) @ k3 + b3

    def conv(x, i):
        pad = RESNET_CONVS[i][1].upper()
        return tf.nn.relu(tf.nn.conv2d(x, params[2 * i], 1, pad) + params[2 * i + 1])

    x = tf.nn.max_pool2d(conv(conv(x, 0), 1), 3, 3, "VALID")
    for i in (2, 4):
        x = conv(conv(x, i), i + 1) + x
    x = tf.reduce_mean(conv(x, 6), axis=(1, 2))
    x = tf.nn.relu(x @ params[14] + params[15])
    if training and dropout:
        x = tf.nn.dropout(x, dropout)
    return x @ params[16] + params[17]


def _gather(data, idx):
    return tf.nest.map_structure(lambda a: tf.gather(a, idx), data)


def _loss(architecture, outputs, y):
    if architecture == "conv_autoencoder":
        return tf.reduce_mean(tf.square(outputs - y))
    if architecture == "ticket_router":
        priority, department = outputs
        bce = tf.nn.sigmoid_cross_entropy_with_logits(y["priority"], priority)
        cce = tf.nn.softmax_cross_entropy_with_logits(y["department"], department)
        return tf.reduce_mean(bce) + DEPARTMENT_WEIGHT * tf.reduce_mean(cce)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, outputs))


class Trainer:
    def __init__(self, architecture, weights, x, y, dropout=0.5, jit_compile=None):
        if jit_compile is None:  # the faster form for each (see the module docstring)
            jit_compile = architecture in ("mnist_mlp", "ticket_router")
        self.architecture, self.dropout = architecture, dropout
        self.params = [tf.Variable(w) for w in weights]
        self.slots = [tf.Variable(tf.zeros_like(w)) for w in weights]  # RMSprop's v, Adam's m
        self.adam = uses_adam(architecture)
        # Adam's v
        self.slots_2 = [tf.Variable(tf.zeros_like(w)) for w in weights] if self.adam else []
        self.t = tf.Variable(0.0)  # Adam's step count
        self.x, self.y = tf.nest.map_structure(tf.constant, (x, y))
        self._steps = tf.function(self._run_steps, jit_compile=jit_compile)
        self._forward = tf.function(
            lambda x: forward(architecture, self.params, x), jit_compile=jit_compile
        )

    def _step(self, idx):
        with tf.GradientTape() as tape:
            outputs = forward(
                self.architecture, self.params, _gather(self.x, idx), True, self.dropout
            )
            loss = _loss(self.architecture, outputs, _gather(self.y, idx))
        grads = tape.gradient(loss, self.params)
        if self.adam:
            t = self.t.assign_add(1.0)
            lr = LEARNING_RATE * tf.sqrt(1 - BETA_2**t) / (1 - BETA_1**t)
            for p, m, v, g in zip(self.params, self.slots, self.slots_2, grads, strict=True):
                m.assign_add((g - m) * (1 - BETA_1))
                v.assign_add((g * g - v) * (1 - BETA_2))
                p.assign_sub(lr * m / (tf.sqrt(v) + EPSILON))
            return loss
        for p, v, g in zip(self.params, self.slots, grads, strict=True):
            if isinstance(g, tf.IndexedSlices):  # an embedding's gradient: one row per word
                # as Keras's RMSprop does on TensorFlow: the velocity adds each occurrence's
                # squared gradient (not the square of a word's summed gradient, as on JAX
                # and torch, where the gradient is dense), and only the rows seen move
                squares = tf.IndexedSlices(g.values * g.values, g.indices, g.dense_shape)
                v.assign(RHO * v + (1 - RHO) * tf.convert_to_tensor(squares))
                steps = LEARNING_RATE * g.values / tf.sqrt(tf.gather(v, g.indices) + EPSILON)
                p.scatter_sub(tf.IndexedSlices(steps, g.indices, g.dense_shape))
                continue
            v.assign(RHO * v + (1 - RHO) * g * g)
            p.assign_sub(LEARNING_RATE * g / tf.sqrt(v + EPSILON))
        return loss

    def _run_steps(self, order):
        losses = tf.TensorArray(tf.float32, size=tf.shape(order)[0])
        for i in tf.range(tf.shape(order)[0]):
            losses = losses.write(i, self._step(order[i]))
        return losses.stack()

    def losses(self, order: np.ndarray) -> list[float]:
        return [float(v) for v in self._steps(tf.constant(order)).numpy()]

    def train(self, order: np.ndarray) -> float:
        return float(self._steps(tf.constant(order))[-1])

    def predict(self, x, batch_size: int) -> None:
        x = tf.nest.map_structure(tf.constant, x)
        n = int(tf.nest.flatten(x)[0].shape[0])
        for i in range(0, n, batch_size):
            out = self._forward(take(x, slice(i, i + batch_size)))
        tf.nest.flatten(out)[0].numpy()
