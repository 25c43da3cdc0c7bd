"""JAX: the window train function, one ``jit`` of a ``fori_loop`` over batches gathered on
the device, its state donated; and JAX's persistent compilation cache for a fit or a
predict (``compile_cache``)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import tempfile
from collections.abc import Iterator

import keras

import zoo.performance.costs as costs
import zoo.performance.keras_patches as keras_patches
from zoo.performance.feed import EpochHooks, Window

#: Set to 0 to keep JAX's compiles out of the zoo's cache folder.
CACHE_SWITCH = "ZOO_JAX_COMPILE_CACHE"
#: The most the zoo's JAX cache holds: JAX then evicts the least recently used programs,
#: and locks the folder while it writes (processes share it).
CACHE_MAX_BYTES = 1 << 30


@contextlib.contextmanager
def compile_cache() -> Iterator[str | None]:
    """JAX's persistent compilation cache in the zoo's cache folder
    (``costs.cache_dir() / "jax"``) for the block, every compile kept: a run that JAX
    has compiled before loads its programs instead (mnist_mlp's 500-step fit: 0.96 s,
    then 0.39 s, of which 0.54 s had been XLA compiling the window and Keras's small
    eager operations, on this 2-core CPU). Off where the user set a cache folder of
    their own (``jax_compilation_cache_dir``, ``JAX_COMPILATION_CACHE_DIR``: theirs is
    used, untouched), ``ZOO_JAX_COMPILE_CACHE=0`` or a folder that cannot be written.
    JAX's settings are put back after
    the block. Yields the folder (None: not used). JAX keeps no such cache unless told;
    Keras does not tell it."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    if os.environ.get(CACHE_SWITCH, "1") == "0" or jax.config.jax_compilation_cache_dir:
        yield None
        return
    folder = costs.cache_dir() / "jax"
    try:  # a folder that cannot be written: no cache, never a failed run (JAX would raise)
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        yield None
        return
    settings = {
        "jax_compilation_cache_dir": str(folder),
        "jax_persistent_cache_min_compile_time_secs": 0.0,  # JAX's default: only 1 s or more
    }
    if importlib.util.find_spec("filelock") is not None:  # what JAX needs to evict and lock
        settings["jax_compilation_cache_max_size"] = CACHE_MAX_BYTES
    before = {name: getattr(jax.config, name) for name in settings}
    try:
        for name, value in settings.items():
            jax.config.update(name, value)
        compilation_cache.reset_cache()  # checked again at the next compile (the model's
        # build compiled already, before the cache was set)
        yield str(folder)
    finally:
        for name, value in before.items():
            jax.config.update(name, value)
        compilation_cache.reset_cache()


def _window(model, window: Window):
    import jax
    import jax.numpy as jnp

    feed, bs = window.feed, window.feed.batch_size
    arrays = keras.tree.map_structure(jnp.asarray, (feed.x, feed.y))
    # what Keras's fit would build before the first step (the optimizer's slots, the
    # metrics), built here with its zeros copied from the host, not compiled per shape;
    # from the host arrays' first batch (slicing the device arrays would compile)
    first = keras.tree.map_structure(lambda a: a[:bs], (feed.x, feed.y))
    keras_patches.build_for_training(model, first)

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
