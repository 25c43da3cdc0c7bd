"""JAX: the window train function, one ``jit`` of a ``fori_loop`` over batches gathered on
the device, its state donated."""

from __future__ import annotations

import keras

import zoo.performance.keras_patches as keras_patches
from zoo.performance.feed import EpochHooks, Window


def _window(model, window: Window):
    import jax
    import jax.numpy as jnp

    feed, bs = window.feed, window.feed.batch_size
    arrays = keras.tree.map_structure(jnp.asarray, (feed.x, feed.y))

    def batch(arrays, order, first, n):
        idx = jax.lax.dynamic_slice_in_dim(order, first, n)
        return keras.tree.map_structure(lambda a: jnp.take(a, idx, axis=0), arrays)

    def some_steps(state, arrays, order, begin, count):  # `count` >= 1 full batches
        def body(i, carry):
            state, _ = carry
            logs, state = model.train_step(state, batch(arrays, order, (begin + i) * bs, bs))
            return state, logs

        # the loop's first logs: zeros of the step's logs' shapes, which eval_shape finds
        # without a second copy of the step in the compiled program (a first step outside
        # the loop doubled what XLA compiles)
        shapes = jax.eval_shape(lambda s: body(0, (s, None))[1], state)
        logs = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
        state, logs = jax.lax.fori_loop(0, count, body, (state, logs))
        return logs, state

    def one_step(state, arrays, order, first, n):
        return model.train_step(state, batch(arrays, order, first, n))

    some_steps = jax.jit(some_steps, donate_argnums=0)
    one_step = jax.jit(one_step, donate_argnums=0, static_argnums=4)
    current = {"order": jnp.asarray(feed.order)}

    def train_function(state, iterator):  # the window's batches come from `order`
        begin, full_end, partial = window.take()
        logs, order = None, current["order"]
        if begin < full_end:
            logs, state = some_steps(state, arrays, order, begin, full_end - begin)
        if partial:
            first = window.partial_first
            logs, state = one_step(state, arrays, order, first, feed.size - first)
        return logs, state

    def set_epoch(epoch):
        window.set_epoch(epoch)
        current["order"] = jnp.asarray(feed.order)

    return train_function, set_epoch


def install(model, window: Window, settings, stack):
    """Sets the JAX window as ``model``'s train function; returns ``(data, callbacks)``."""
    train_function, set_epoch = _window(model, window)
    keras_patches.set_train_function(model, train_function)
    return window.feed, [EpochHooks(set_epoch)]
