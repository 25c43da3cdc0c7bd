"""The MLP and the toy ResNet written directly in TensorFlow: ``tf.Variable``
weights, RMSprop written by hand, and, as the fastest form found here, a whole
window of steps in one ``tf.function`` (a ``tf.range`` loop that gathers each batch
from the data already in memory).

That function is XLA-compiled for the MLP, not for the ResNet: on this CPU, XLA made
the MLP's window about 2.5x faster than a per-step ``tf.function`` loop, while the
ResNet's convolutions inside an XLA-compiled loop ran about 35x slower than without
XLA (4 s against 0.1 s a step), and per-step XLA was still 1.3x slower than the
plain graph loop."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from benchmarks.common import EPSILON, LEARNING_RATE, RESNET_CONVS, RHO


def forward(architecture, params, x, training=False, dropout=0.5):
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


class Trainer:
    def __init__(self, architecture, weights, x, y, dropout=0.5, jit_compile=None):
        if jit_compile is None:  # the faster form for each (see the module docstring)
            jit_compile = architecture == "mnist_mlp"
        self.architecture, self.dropout = architecture, dropout
        self.params = [tf.Variable(w) for w in weights]
        self.velocities = [tf.Variable(tf.zeros_like(w)) for w in weights]
        self.x, self.y = tf.constant(x), tf.constant(y)
        self._steps = tf.function(self._run_steps, jit_compile=jit_compile)
        self._forward = tf.function(
            lambda x: forward(architecture, self.params, x), jit_compile=True
        )

    def _step(self, idx):
        with tf.GradientTape() as tape:
            logits = forward(
                self.architecture, self.params, tf.gather(self.x, idx), True, self.dropout
            )
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(tf.gather(self.y, idx), logits)
            )
        grads = tape.gradient(loss, self.params)
        for p, v, g in zip(self.params, self.velocities, grads, strict=True):
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

    def predict(self, x: np.ndarray, batch_size: int) -> None:
        x = tf.constant(x)
        for i in range(0, len(x), batch_size):
            out = self._forward(x[i : i + batch_size])
        out.numpy()
