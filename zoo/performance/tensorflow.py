"""TensorFlow: the window train function (one ``tf.function`` gathering its batches from
the arrays in memory, XLA-compiled unless the model has convolutions), the multi-worker
fit loop and the compiled forward pass for ``predict``."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

import zoo.performance.keras_patches as keras_patches
from zoo.performance.feed import Batches, EpochHooks, Window, local_order


def _window(model, window: Window, jit_compile: bool):
    import tensorflow as tf

    feed = window.feed
    # this process's share of every batch, one after the other: with `shard`, each worker's
    # steps are those of one process over its shares (`bs` and `size` divided by the count)
    shares = feed.shard[1] if feed.shard else 1
    bs, size = feed.batch_size // shares, feed.size // shares
    strategy = tf.distribute.get_strategy()
    tensors = keras.tree.map_structure(tf.constant, (feed.x, feed.y))
    order = tf.Variable(local_order(feed), trainable=False)

    def batch(first, n):
        # a gather, not tf.slice: XLA makes a slice's start a compile-time constant, which
        # compiled the window again for every start (measured: 0.9 s a window)
        idx = tf.gather(order, first + tf.range(n, dtype=tf.int64))
        return keras.tree.map_structure(lambda a: tf.gather(a, idx), tensors)

    @tf.autograph.experimental.do_not_convert
    def some_steps(begin, count):  # `count` full batches from step `begin`
        def body(i):
            logs = strategy.run(model.train_step, args=(batch((begin + i) * bs, bs),))
            with tf.control_dependencies(tf.nest.flatten(logs)):
                return i + 1

        tf.while_loop(lambda i: i < count, body, [tf.constant(0, tf.int64)])
        return model.get_metrics_result()  # over all workers (their metrics are summed on read)

    @tf.autograph.experimental.do_not_convert
    def one_step(first, n):
        logs = strategy.run(model.train_step, args=(batch(first, n),))
        with tf.control_dependencies(tf.nest.flatten(logs)):
            return model.get_metrics_result()

    # one_step runs first: Keras creates the optimizer's and metrics' variables on the
    # first traced step, which a tf.function allows at its first trace but not in a loop
    some_steps = tf.function(some_steps, jit_compile=jit_compile)
    one_step = tf.function(one_step, jit_compile=jit_compile, reduce_retracing=True)
    built = []

    def train_function(iterator):  # the window's batches come from `order`, not `iterator`
        begin, full_end, partial = window.take()
        logs = None
        if not built and begin < full_end:
            logs = one_step(tf.constant(begin * bs, tf.int64), bs)
            built.append(True)
            begin += 1
        if begin < full_end:
            logs = some_steps(tf.constant(begin, tf.int64), tf.constant(full_end - begin, tf.int64))
        if partial:
            first = window.partial_first // shares
            logs = one_step(tf.constant(first, tf.int64), size - first)
        return logs

    def set_epoch(epoch):
        window.set_epoch(epoch)
        order.assign(local_order(feed))

    # What fit iterates: one element per step, which the window never reads: the first
    # batch, repeated, so that the elements have a batch's structure and types. Not a `map`
    # gathering each step's batch: Keras makes an iterator at each epoch's start and end,
    # and a map's made each cost more (docs/benchmarks.md).
    first = keras.tree.map_structure(lambda a: a[:bs], tensors)
    data = tf.data.Dataset.from_tensors(first).repeat(window.steps)
    return train_function, set_epoch, data


def multi_worker_fit(
    model,
    data,
    *,
    validation_data,
    validation_batch_size,
    epochs,
    initial_epoch,
    callbacks,
    verbose,
    shuffle=False,  # fit's argument, unused: the batches come in their (seed, epoch) order
):
    """Keras's ``fit`` loop (``keras/src/backend/tensorflow/trainer.py``, Keras 3.15) with
    the zoo's window as train function, for ``tf.distribute.MultiWorkerMirroredStrategy``,
    under which Keras's own ``fit`` fails twice: building the model averages a first batch
    of ``PerReplica`` values over the workers ("Attempt to convert a value (PerReplica...)")
    and its train function reduces scalar logs along axis 0 (tensorflow/tensorflow#72388).
    The callbacks see what ``fit`` shows them: every window's end and every epoch's end,
    with the epoch's metrics over all workers. Each worker validates on its share of every
    validation batch; the metrics are summed over the workers as they are read."""
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    if not model.optimizer.built:  # its variables are made here, across the workers
        model.optimizer.build(model.trainable_variables)
    spe, steps = model.steps_per_execution, len(data)
    read = tf.function(model.get_metrics_result)  # summed over the workers on read
    test_step = tf.function(
        lambda batch: strategy.run(model.test_step, args=(batch,)), reduce_retracing=True
    )
    callbacks = keras.callbacks.CallbackList(
        callbacks,
        add_history=True,
        model=model,
        verbose=1 if verbose == "auto" else verbose,
        epochs=epochs,
        steps=steps,
    )
    if validation_data is not None:  # this worker's share of every batch, in order, as Keras
        val = Batches(*validation_data, validation_batch_size, 0, shard=data.shard)
        val.order = np.arange(val.size)
    model.stop_training = False
    callbacks.on_train_begin()
    epoch_logs = {}
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callbacks.on_epoch_begin(epoch)
        for begin in range(0, steps, spe):
            callbacks.on_train_batch_begin(begin)
            logs = model.train_function(None)
            callbacks.on_train_batch_end(min(begin + spe, steps) - 1, logs)
            if model.stop_training:
                break
        epoch_logs = {k: float(v) for k, v in read().items()}
        if validation_data is not None:
            model.reset_metrics()
            for i in range(len(val)):
                test_step(val[i])
            epoch_logs.update({f"val_{k}": float(v) for k, v in read().items()})
        callbacks.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    if epochs > 0:
        model.optimizer.finalize_variable_values(model.trainable_weights)
    callbacks.on_train_end(logs=epoch_logs)
    return model.history


def forward(model, conv: bool) -> Callable:
    """The forward pass as a ``tf.function``, XLA-compiled unless the model has
    convolutions, as for training."""
    import tensorflow as tf

    return tf.function(lambda batch: model(batch, training=False), jit_compile=not conv)


def install(model, window: Window, settings, stack):
    """Sets the TensorFlow window as ``model``'s train function; returns ``(data,
    callbacks)`` for ``fit`` (for ``multi_worker_fit``: the batches, which it reads)."""
    train_function, set_epoch, data = _window(model, window, settings.jit_compile)
    keras_patches.set_train_function(model, train_function)
    return (window.feed if settings.multi_worker else data), [EpochHooks(set_epoch)]
