"""TensorFlow: the window train function (one ``tf.function`` gathering its batches from
the arrays in memory, XLA-compiled from the start with ``fast="on"``, and with
``fast="auto"`` from the window where ``XlaSwitch`` finds it pays; never for models with
convolutions), the multi-worker fit loop and the compiled forward pass for ``predict``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable

import keras
import numpy as np

import zoo.performance.costs as costs
import zoo.performance.keras_patches as keras_patches
from zoo import _validation as check
from zoo.performance.feed import Batches, EpochHooks, Window, local_order

#: Full batches the plain graph is timed over before XLA is decided, and XLA's after it,
#: in chunks of that many steps, and the seconds they must take at least (``StepTimer``)
MIN_TIMED_STEPS = 32
MIN_TIMED_S = 0.1
#: Steps of the graph's first run, untimed (``_chunk``).
FIRST_RUN_STEPS = 8


class XlaSwitch:
    """``fast="auto"``: whether the window's loop runs as the plain graph or XLA-compiled.

    The graph runs first, timed in chunks of a window (``_chunk``). Once
    ``MIN_TIMED_STEPS`` of its steps and ``MIN_TIMED_S`` seconds are timed, the loop is
    XLA-compiled from the next chunk on if the steps left times the time XLA saves per
    step exceed ``costs.MARGIN`` times XLA's compile cost: the last time's figures for
    this model (``costs``), else ``costs.DEFAULT_XLA_S_PER_OP`` per operation of the
    loop's graph and half the step saved. With both step times cached the choice is made
    before the first step. After a compile its cost and step time are cached; a compile
    that fails is cached as failing, and the graph goes on. XLA runs the same Keras step
    (``fast="on"`` runs it from the start), its sums in another order.

    ``xla``: the form now; ``compiled_at``: the step of this fit from which XLA ran."""

    def __init__(self, key: str | None, planned_steps: int):
        self.key, self.remaining, self.done = key, planned_steps, 0
        self.estimate = costs.Estimate.of(key, compile_s=0.0)
        self.xla = self.estimate.pays_from_start(planned_steps)
        self.compiled_at = 0 if self.xla else None
        self.phase = "done" if self.xla else "timing"
        self.graph_step_s = self.estimate.uncompiled_step_s
        self.timer, self.first_xla = costs.StepTimer(), (0, 0.0)
        self.first_graph, self.graph_setup_s = (0, 0.0), None

    @property
    def kind(self) -> str:
        return "compiled" if self.xla else "graph"

    @property
    def timing(self) -> bool:
        return self.phase != "done"

    def failed(self, error: Exception) -> None:
        """XLA's first window raised (before any step ran): the graph goes on."""
        self.xla, self.compiled_at, self.phase = False, None, "done"
        if self.key is not None:
            costs.write(self.key, {"fails": True, "why": check.error_summary(error)[:200]})

    def first_run(self, steps: int, seconds: float) -> None:
        """After the graph's first chunk, of ``steps`` full batches, which took ``seconds``
        with its trace and first run (TensorFlow optimizes a graph then): not its step
        time; what it cost beyond its steps is kept with XLA's figures."""
        self.done += steps
        self.remaining -= steps
        self.first_graph = (steps, seconds)

    def window_done(self, steps: int, seconds: float, ops: int) -> None:
        """After a chunk of ``steps`` full batches that ran in ``seconds`` (XLA's compile
        included); ``ops``: the graph loop's size."""
        self.done += steps
        self.remaining -= steps
        if self.phase == "compiling":  # the window that compiled
            self.first_xla, self.phase = (steps, seconds), "timing-compiled"
            return
        if self.phase not in ("timing", "timing-compiled"):
            return
        step_s = self.timer.add(steps, seconds, MIN_TIMED_STEPS, MIN_TIMED_S)
        if step_s is None:
            return
        if self.phase == "timing-compiled":
            compile_s = max(self.first_xla[1] - self.first_xla[0] * step_s, 0.0)
            costs.record(self.key, compile_s, step_s, self.graph_step_s, self.graph_setup_s)
            self.phase = "done"
            return
        self.graph_step_s = step_s
        self.graph_setup_s = max(self.first_graph[1] - self.first_graph[0] * step_s, 0.0)
        if not self.estimate.measured:
            self.estimate.compile_s = ops * costs.DEFAULT_XLA_S_PER_OP
        if self.remaining > 0 and self.estimate.pays(self.remaining, step_s):
            self.xla, self.compiled_at, self.phase = True, self.done, "compiling"
        else:
            self.phase = "done"


def _key(model, batch) -> str | None:
    """What XLA would compile, as a cache key (``costs``): the model's and its training's
    configuration, the batch's shapes and dtypes, TensorFlow's version and the devices
    (None where the model has no configuration to name it by)."""
    import tensorflow as tf

    try:
        config = [json.loads(model.to_json()), model.get_compile_config()]
        config = json.loads(json.dumps(config, default=str))
    except Exception:  # a model Keras cannot describe: no cached figure for it
        return None
    config = _numbered_names(config)
    shapes = [(tuple(t.shape), t.dtype.name) for t in keras.tree.flatten(batch)]
    devices = [d.name for d in tf.config.list_logical_devices()]
    with contextlib.suppress(RuntimeError, ValueError):  # the GPU's name, where there is one
        devices += [tf.config.experimental.get_device_details(d).get("device_name", "")
                    for d in tf.config.list_physical_devices("GPU")]  # fmt: skip
    text = json.dumps([config, shapes, tf.__version__, devices], sort_keys=True)
    return "tensorflow-xla:" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _numbered_names(config):
    """``config`` with every ``"name"`` given by its order of appearance, wherever it is
    used: Keras numbers the names of layers, optimizers and metrics per process
    (``dense_3``, ``rm_sprop_1``), which would make the same model another key."""
    names, stack = {}, [config]
    while stack:
        item = stack.pop(0)
        if isinstance(item, dict):
            if isinstance(item.get("name"), str):
                names.setdefault(item["name"], f"name-{len(names)}")
            stack += [item[k] for k in sorted(item)]
        elif isinstance(item, list):
            stack += item

    def renamed(item):
        if isinstance(item, dict):
            return {k: renamed(v) for k, v in item.items()}
        if isinstance(item, list):
            return [renamed(v) for v in item]
        return names.get(item, item) if isinstance(item, str) else item

    return renamed(config)


def _steps(begin: int, count: int) -> tuple:
    import tensorflow as tf

    return tf.constant(begin, tf.int64), tf.constant(count, tf.int64)


def _chunk(count: int, first: bool) -> int:
    """The steps of a window's ``count`` the switch times next: the graph's first run
    alone (``FIRST_RUN_STEPS``: TensorFlow optimizes a graph at its first run), then
    ``MIN_TIMED_STEPS`` at a time until it has decided, so that XLA, where it pays,
    runs from within the first window (mnist_mlp: from step 264, where it waited for
    step 1,000 with 500-step windows), and is timed in the same chunks after its
    compile. The loop's steps are arguments: another count is not another trace."""
    if first:
        return min(count, FIRST_RUN_STEPS)
    return min(count, MIN_TIMED_STEPS)


def _graph_size(loop, *args) -> int:
    """Operations in the loop's graph, the functions it calls included (its trace)."""
    graph = loop.get_concrete_function(*args).graph.as_graph_def()
    return len(graph.node) + sum(len(f.node_def) for f in graph.library.function)


def _window(model, window: Window, settings):
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

    # Keras makes the optimizer's and metrics' variables at the first traced step: they are
    # built first from one batch's shapes, so that the first trace is the loop itself (no
    # single step compiled only to build them); where that cannot be, one_step runs first
    first = keras.tree.map_structure(lambda a: a[:bs], tensors)
    built = not tf.distribute.has_strategy() and keras_patches.build_for_training(model, first)
    switch = None
    if settings.compile_when_pays:
        switch = XlaSwitch(_key(model, first), settings.planned_steps)
    loops = {}  # the loop as a plain graph (False) and XLA-compiled (True), as needed

    def loop_for(xla):
        if xla not in loops:
            loops[xla] = tf.function(some_steps, jit_compile=xla)
        return loops[xla]

    one_step = tf.function(one_step, jit_compile=settings.jit_compile, reduce_retracing=True)
    graph_ops = []  # the graph loop's size, traced before its first window

    def run_loop(begin, count):
        logs = None
        while count > 0:
            if switch is None or not switch.timing:
                return loop_for(switch.xla if switch else settings.jit_compile)(
                    *_steps(begin, count)
                )
            n = _chunk(count, first=not switch.xla and not graph_ops)
            logs = timed_loop(begin, n)
            begin, count = begin + n, count - n
        return logs

    def timed_loop(begin, count):
        """``count`` steps of the loop as the switch has it now, timed for it: the switch
        decides between chunks of the window, not only between windows."""
        args = _steps(begin, count)
        xla, first = switch.xla, not switch.xla and not graph_ops
        start = time.perf_counter()
        if first:  # its trace and first run: the graph's setup, not its step time
            graph_ops.append(_graph_size(loop_for(False), *args))
        loop = loop_for(xla)
        try:
            logs = loop(*args)
            keras.tree.flatten(logs)[0].numpy()  # its steps done (a GPU runs them after)
        except tf.errors.OpError as e:  # XLA could not compile it: nothing ran
            if not xla:
                raise
            switch.failed(e)
            return timed_loop(begin, count)
        took = time.perf_counter() - start
        if first:
            switch.first_run(count, took)
        else:
            switch.window_done(count, took, graph_ops[0] if graph_ops else 0)
        return logs

    def train_function(iterator):  # the window's batches come from `order`, not `iterator`
        nonlocal built
        begin, full_end, partial = window.take()
        logs = None
        if not built and begin < full_end:
            logs = one_step(tf.constant(begin * bs, tf.int64), bs)
            built = True
            begin += 1
        if begin < full_end:
            logs = run_loop(begin, full_end - begin)
        if partial:
            start = window.partial_first // shares
            logs = one_step(tf.constant(start, tf.int64), size - start)
        return logs

    def set_epoch(epoch):
        window.set_epoch(epoch)
        order.assign(local_order(feed))

    # What fit iterates: one element per step, which the window never reads: the first
    # batch, repeated, so that the elements have a batch's structure and types. Not a `map`
    # gathering each step's batch: Keras makes an iterator at each epoch's start and end,
    # and a map's made each cost more (docs/benchmarks.md).
    data = tf.data.Dataset.from_tensors(first).repeat(window.steps)
    return train_function, set_epoch, data, switch


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
    train_function, set_epoch, data, _ = _window(model, window, settings)
    keras_patches.set_train_function(model, train_function)
    return (window.feed if settings.multi_worker else data), [EpochHooks(set_epoch)]
