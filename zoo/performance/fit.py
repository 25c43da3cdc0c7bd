"""``prepare``: readies a compiled model to ``fit`` with the backend's speed settings."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

from zoo import distribute
from zoo.performance.feed import _Batches, _Hooks, _one_step_evaluation, _Window
from zoo.performance.jax import _jax_window
from zoo.performance.settings import Settings
from zoo.performance.tensorflow import _multi_worker_fit, _tf_window
from zoo.performance.torch.keras_patches import _torch_swaps
from zoo.performance.torch.step import _compiled_torch_step, _gather
from zoo.performance.torch.window import _steps_only, _targets_like_outputs, _torch_window


def prepare(model, x, y, batch_size: int, seed: int, settings: Settings, shard=None):
    """Readies a compiled ``model`` to ``fit`` with ``settings``; returns ``(data,
    callbacks, done)``: what to pass to ``fit``, the callbacks that must come first in
    ``fit``'s callbacks (they set each epoch's batch order) and the function that undoes
    what ``fit`` must not keep (call it after ``fit``, even when it fails).
    ``shard=(index, count)`` keeps this process's share of every batch (multi-process
    data parallelism). The model's compile config (what ``model.save`` writes) is left
    as it was compiled."""
    if settings.pipeline == "in-graph" and shard is not None and settings.backend == "jax":
        raise ValueError(
            "shard is for Keras's own train loop or the torch and TensorFlow windows, not JAX's "
            "in-graph window: train with fast='off' or under a keras.distribution"
        )
    if settings.pipeline == "torch":
        y = _targets_like_outputs(model, y)
    feed = _Batches(x, y, batch_size, seed, settings.pipeline == "torch", shard)
    # Public Trainer attributes (no underscore); Keras's own compile() resets the same three
    # functions to None, so that the next fit makes them again with these settings.
    if settings.jit_compile is not None:
        model.jit_compile = settings.jit_compile
    model.steps_per_execution = settings.steps_per_execution
    model.train_function = model.test_function = model.predict_function = None
    data, set_epoch = feed, feed.set_epoch

    swaps = contextlib.ExitStack()  # what `done` puts back: Keras's swapped torch functions

    def done():
        swaps.close()
        if settings.window:  # it holds the training arrays: let them go with it
            model.train_function = None
        if settings.backend == "torch":  # Keras's torch trainer refuses steps_per_execution > 1
            model.steps_per_execution = 1
            model.train_function = model.test_function = model.predict_function = None

    if not settings.window:
        return data, [_Hooks(set_epoch)], done
    window = _Window(feed, settings.steps_per_execution)
    if settings.backend == "tensorflow":
        model.train_function, set_epoch, data = _tf_window(model, window, settings.jit_compile)
        if distribute.tf_multi_worker():
            data = feed  # what _multi_worker_fit reads: the steps and this worker's share
    elif settings.backend == "jax":
        model.train_function, set_epoch = _jax_window(model, window)
    else:
        tensors = (feed.x, feed.y)
        if settings.ddp:
            ddp_step = distribute.ddp_train_step(model)
            step = lambda idx: ddp_step(_gather(tensors, idx))  # noqa: E731
        elif settings.torch_compile:
            step = _compiled_torch_step(model, tensors, len(feed.indices(0)))
        else:
            step = lambda idx: model.train_step(_gather(tensors, idx))  # noqa: E731
        model.train_function, model.test_function = _torch_window(model, window, step)
        data, set_epoch = _steps_only(feed), window.set_epoch
        # Keras reads steps_per_execution when it makes an epoch iterator: fit's own is
        # made by now, and evaluation's (made later) then runs batch by batch, since its
        # batches rarely divide into the training windows (Keras warned "Your input ran
        # out of data" at each validation)
        hooks = [_Hooks(set_epoch, at_train_begin=lambda: _one_step_evaluation(model))]
        if settings.ddp:
            hooks.append(distribute.SumMetricsOverProcesses())
        # last, so that nothing can fail between them and `done`
        swaps.enter_context(_torch_swaps(settings.fused_lstm, settings.channels_last))
        return data, hooks, done
    return data, [_Hooks(set_epoch)], done


def fit_function(model, settings: Settings) -> Callable:
    """What runs the epochs: Keras's ``model.fit``, or under a multi-worker TensorFlow
    strategy the zoo's loop with ``fit``'s arguments (``_multi_worker_fit``)."""
    if settings.backend == "tensorflow" and distribute.tf_multi_worker():
        return functools.partial(_multi_worker_fit, model)
    return model.fit
