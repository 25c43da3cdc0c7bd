"""``prepare``: readies a compiled model to ``fit`` with the backend's speed settings,
dispatching once to the backend's module (``tensorflow``, ``jax``, ``torch.window``), each
of which installs its window train function."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import zoo.performance.jax as jax_window
import zoo.performance.keras_patches as keras_patches
import zoo.performance.tensorflow as tf_window
import zoo.performance.torch.window as torch_window
from zoo.performance.feed import Batches, EpochHooks, Window
from zoo.performance.settings import Settings

#: Each backend's ``install(model, window, settings, stack) -> (data, callbacks)``.
INSTALL = {
    "tensorflow": tf_window.install,
    "jax": jax_window.install,
    "torch": torch_window.install,
}


@contextlib.contextmanager
def prepare(
    model, x, y, batch_size: int, seed: int, settings: Settings, shard=None
) -> Iterator[tuple]:
    """Readies a compiled ``model`` to ``fit`` with ``settings`` for the ``with`` block,
    which gets ``(data, callbacks)``: what to pass to ``fit``, and the callbacks that must
    come first in ``fit``'s callbacks (they set each epoch's batch order). On leaving the
    block (even by an error) what ``fit`` must not keep is undone: Keras's swapped
    functions, the window (which holds the training arrays). ``shard=(index, count)``
    keeps this process's share of every batch. The model's compile config (what
    ``model.save`` writes) is left as it was compiled. On JAX (unless ``fast="off"``)
    JAX's compiles are kept in the zoo's cache folder for the block (``jax.compile_cache``).

    Example:
        >>> with prepare(model, x, y, 32, 0, settings) as (data, hooks):  # doctest: +SKIP
        ...     model.fit(data, callbacks=hooks, shuffle=False)
    """
    if settings.pipeline == "in-graph" and shard is not None and settings.backend == "jax":
        raise ValueError(
            "shard is for Keras's own train loop or the torch and TensorFlow windows, not JAX's "
            "in-graph window: train with fast='off' or under a keras.distribution"
        )
    if settings.pipeline == "torch":
        y = torch_window.targets_like_outputs(model, y)
    feed = Batches(x, y, batch_size, seed, settings.pipeline == "torch", shard)
    with contextlib.ExitStack() as stack:
        stack.enter_context(keras_patches.train_functions(model, settings))
        if settings.backend == "jax" and settings.mode != "off":  # every JAX loop compiles
            stack.enter_context(jax_window.compile_cache())
        if not settings.window:
            yield feed, [EpochHooks(feed.set_epoch)]
            return
        window = Window(feed, settings.steps_per_execution)
        yield INSTALL[settings.backend](model, window, settings, stack)


def fit_function(model, settings: Settings) -> Callable:
    """What runs the epochs: Keras's ``model.fit``, or under a multi-worker TensorFlow
    strategy the zoo's loop with ``fit``'s arguments (``tensorflow.multi_worker_fit``)."""
    if settings.multi_worker:
        return functools.partial(tf_window.multi_worker_fit, model)
    return model.fit
