"""How batches reach the train functions: the ``(seed, epoch)`` order (``Batches``),
the windows of steps (``Window``), the callback that sets each epoch's order, and the
progress bar.

Keras's ``fit`` calls ``model.train_function`` once per ``steps_per_execution`` steps,
between the callbacks' batch hooks. The zoo's train functions run that whole window of
steps in one call (TensorFlow: one ``tf.function``; JAX: one ``jit`` of a ``fori_loop``;
torch: a loop over the (compiled) step), gathering each batch from the arrays in memory
in the epoch's ``(seed, epoch)`` order, each through Keras's own ``train_step``. Keras
does not offer this: its TensorFlow loop is a ``tf.while_loop`` around one step fed by a
``tf.data`` iterator, its JAX loop a Python loop of jitted steps, and its torch trainer
refuses ``steps_per_execution > 1``."""

from __future__ import annotations

import math

import keras
import numpy as np


class ProgressBar(keras.callbacks.ProgbarLogger):
    """Keras's progress bar, its count capped at the epoch's steps: an epoch's last window
    may be shorter than ``steps_per_execution``, and Keras counts whole windows (it
    showed e.g. ``24/18`` at the end of an 18-step epoch)."""

    def on_train_batch_end(self, batch, logs=None):
        if self.target is not None:
            batch = min(batch, self.target - 1)
        super().on_train_batch_end(batch, logs)


class Batches(keras.utils.PyDataset):
    """Batches of ``(x, y)`` in an order drawn from ``(seed, epoch)`` alone, the same
    on every backend, with every setting, and after a resume. ``set_epoch`` is called
    at the start of every epoch (by ``zoo.training.fit``)."""

    def __init__(self, x, y, batch_size, seed, as_torch=False, shard=None):
        super().__init__()
        self.size = len(keras.tree.flatten(x)[0])
        self.batch_size, self.seed, self.shard = batch_size, seed, shard
        if as_torch:
            import torch

            x, y = keras.tree.map_structure(torch.from_numpy, (x, y))
        self.x, self.y = x, y
        self.set_epoch(0)

    def set_epoch(self, epoch):
        self.order = np.random.default_rng([self.seed, epoch]).permutation(self.size)

    def __len__(self):
        return math.ceil(self.size / self.batch_size)

    def indices(self, i):
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        if self.shard is not None:  # this process's share of the global batch
            index, count = self.shard
            idx = np.array_split(idx, count)[index]
        return idx

    def __getitem__(self, i):
        idx = self.indices(i)
        return keras.tree.map_structure(lambda a: a[idx], (self.x, self.y))


class Window:
    """Which step of the epoch a window starts at: reset by ``set_epoch``, advanced by the
    train function (Keras calls it once per window, in order)."""

    def __init__(self, feed: Batches, steps_per_execution: int):
        self.feed, self.spe = feed, steps_per_execution
        self.steps = len(feed)
        self.full = feed.size // feed.batch_size  # full batches; a partial one may follow
        self.next_step = 0

    def set_epoch(self, epoch):
        self.feed.set_epoch(epoch)
        self.next_step = 0

    def take(self):
        """``(begin, full_end, partial)``: this window's full batches are the steps
        ``begin`` to ``full_end``; ``partial``: it ends with the epoch's partial batch."""
        begin = self.next_step
        self.next_step = min(begin + self.spe, self.steps)
        return begin, min(self.next_step, self.full), self.next_step > self.full

    @property
    def partial_first(self):
        """The first sample of the epoch's partial last batch."""
        return self.full * self.feed.batch_size


def local_order(feed: Batches) -> np.ndarray:
    """The epoch's sample order as this process takes it: its share of every batch in turn
    (the whole order for one process)."""
    if feed.shard is None:
        return feed.order.astype("int64")
    return np.concatenate([feed.indices(i) for i in range(len(feed))]).astype("int64")


class EpochHooks(keras.callbacks.Callback):
    """Sets each epoch's batch order at its start (``set_epoch``), and runs
    ``at_train_begin`` once ``fit``'s epoch iterator is made."""

    def __init__(self, set_epoch, at_train_begin=None):
        super().__init__()
        self.set_epoch, self.at_train_begin = set_epoch, at_train_begin

    def on_train_begin(self, logs=None):
        if self.at_train_begin is not None:
            self.at_train_begin()

    def on_epoch_begin(self, epoch, logs=None):
        self.set_epoch(epoch)
