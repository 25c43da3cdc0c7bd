"""Per-backend speed settings for the training path.

This is the zoo's one clearly separated performance path: everything backend-specific
that ``zoo.training.fit`` does for speed lives here, and ``fast="off"`` falls back to
Keras's plain ``fit`` over a ``keras.utils.PyDataset`` on every backend. None of it
changes what is computed: every setting runs the same batches, in the same
``(seed, epoch)`` order, through the same ``train_step``; ``tests/test_performance.py``
checks that a seeded run's loss curve matches the plain path's.

What each backend gets (measured with ``scripts/benchmark.py``, see
``docs/benchmarks.md``):

- TensorFlow: ``jit_compile=True`` (XLA, which ``"auto"`` leaves off on CPU),
  ``steps_per_execution`` up to 32 (many steps per compiled call), and the batches
  gathered by a prefetching ``tf.data`` pipeline from the arrays in memory instead of
  a Python ``PyDataset`` (which made the step rate several times lower).
- JAX: Keras's step is already one jitted function; ``steps_per_execution`` up to 8
  calls it that many times per iteration of ``fit``'s loop, between callbacks, which
  saves Keras's per-step Python (no extra compiling on this backend).
- PyTorch: the batches are gathered as torch tensors (no per-batch numpy
  conversion); for models without convolutions, with ``fast="on"``, or ``"auto"``
  for runs of at least ``TORCH_COMPILE_MIN_STEPS`` steps, the whole train step is
  compiled with ``torch.compile``, which removes Keras's per-layer Python overhead.
  Compiling costs seconds up front (see "time to first step"), which short runs
  never earn back. A step that fails to compile falls back to the eager step, with
  a warning.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import keras
import numpy as np

from zoo import _validation as check
from zoo.utils import contains_layer

__all__ = [
    "MODES",
    "STEPS_PER_EXECUTION",
    "TORCH_COMPILE_MIN_STEPS",
    "Settings",
    "apply",
    "batches",
    "settings_for",
]

MODES = ("auto", "on", "off")
#: ``fast="auto"`` compiles the torch train step only for runs of at least this many
#: steps: below it, compiling (about 10 s for the MLP) costs more than it saves.
TORCH_COMPILE_MIN_STEPS = 10_000
#: The most steps per ``fit`` iteration (``steps_per_execution``): on TensorFlow one
#: compiled call runs them all; on JAX Keras calls its jitted step that many times
#: between callbacks, which saves its per-step Python.
STEPS_PER_EXECUTION = {"tensorflow": 32, "jax": 8}


@dataclass(frozen=True)
class Settings:
    """What ``zoo.training.fit`` does on this backend (``asdict`` goes in metrics.json).

    Attributes:
        mode: ``"auto"``, ``"on"`` or ``"off"``, as asked.
        backend: the Keras backend.
        jit_compile: the ``jit_compile`` the model trains with (None: as compiled).
        steps_per_execution: training steps per compiled call.
        pipeline: how batches are fed: ``"pydataset"`` (numpy), ``"tf.data"`` or
            ``"torch"`` (torch tensors).
        torch_compile: whether the torch train step is compiled.
    """

    mode: str
    backend: str
    jit_compile: bool | None = None
    steps_per_execution: int = 1
    pipeline: str = "pydataset"
    torch_compile: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


_CONV_LAYERS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)


def _steps_per_execution(most: int, steps_per_epoch: int) -> int:
    """The largest divisor of ``steps_per_epoch`` up to ``most``: Keras's progress bar
    counts whole executions, so one that does not divide the epoch showed e.g. ``24/18``
    at the end of an 18-step epoch with 8 steps per execution."""
    return max(d for d in range(1, min(most, steps_per_epoch) + 1) if steps_per_epoch % d == 0)


def settings_for(
    mode: str, steps_per_epoch: int, epochs: int, model: keras.Model | None = None
) -> Settings:
    """The settings for training ``model`` for ``epochs`` x ``steps_per_epoch`` steps
    on the current backend; ``mode`` is one of ``MODES``.

    On PyTorch the step is compiled only for models without convolutions: for those,
    ``torch.compile`` did not beat the eager step here (toy_resnet 0.81x,
    conv_autoencoder 0.96x of eager), since the time goes into the convolutions
    rather than Keras's Python; for dense and recurrent models it removes most of
    the step's time (mnist_mlp 2.4x, ticket_router 2.3x).
    """
    check.one_of("fast", mode, MODES)
    backend = keras.backend.backend()
    if mode == "off":
        return Settings(mode, backend)
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy():
            # Under MirroredStrategy the tf.data pipeline failed here (its order
            # variable is mirrored, which the dataset function can't read) and the
            # PyDataset with XLA and steps_per_execution hung: Keras's plain fit runs.
            return Settings(mode, backend)
        spe = _steps_per_execution(STEPS_PER_EXECUTION[backend], steps_per_epoch)
        return Settings(mode, backend, True, spe, "tf.data")
    if backend == "jax":
        spe = _steps_per_execution(STEPS_PER_EXECUTION[backend], steps_per_epoch)
        return Settings(mode, backend, steps_per_execution=spe)
    if backend == "torch":
        long_run = mode == "on" or steps_per_epoch * epochs >= TORCH_COMPILE_MIN_STEPS
        compile_step = long_run and not contains_layer(model, _CONV_LAYERS)
        return Settings(mode, backend, pipeline="torch", torch_compile=compile_step)
    return Settings(mode, backend)


def apply(model: keras.Model, settings: Settings, batch_size: int) -> None:
    """Sets ``settings`` on a compiled ``model`` for its next ``fit``. The model's
    compile config (what ``model.save`` writes) is left as it was compiled."""
    # Public Trainer attributes (no underscore); Keras's own compile() resets the same three
    # functions to None, so that the next fit makes them again with these settings.
    if settings.jit_compile is not None:
        model.jit_compile = settings.jit_compile
    model.steps_per_execution = settings.steps_per_execution
    model.train_function = model.test_function = model.predict_function = None
    if settings.torch_compile:
        model.train_function = _compiled_torch_step(model, batch_size)


def _compiled_torch_step(model, batch_size):
    """Keras's own torch train step under ``torch.compile``, falling back to the eager
    step for good at the first compile error. Batches of another size (an epoch's last,
    partial batch) run eagerly instead of compiling the step again for them."""
    import torch

    def one_step_on_data(data):
        return model.train_step(data[0])

    compiled = torch.compile(one_step_on_data)
    state = {"compiled": compiled}

    def train_function(data):
        size = len(keras.tree.flatten(data[0][0])[0])
        if state["compiled"] is None or size != batch_size:
            return one_step_on_data(data)
        try:
            return state["compiled"](data)
        except Exception as e:  # compile failures come in many types; eager re-raises real errors
            state["compiled"] = None
            warnings.warn(
                f"torch.compile could not compile the train step ({check.error_summary(e)[:250]}); "
                "training goes on with the eager step",
                stacklevel=2,
            )
            return one_step_on_data(data)

    return train_function


class _Batches(keras.utils.PyDataset):
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


class _TFBatches(_Batches):
    """The same batches as a prefetching ``tf.data`` pipeline: the epoch's order is
    a ``tf.Variable`` that ``set_epoch`` assigns, and each batch is a ``tf.gather``
    from the arrays in memory."""

    def __init__(self, x, y, batch_size, seed):
        import tensorflow as tf

        self._order = None
        super().__init__(x, y, batch_size, seed)
        self._order = tf.Variable(self.order.astype("int64"), trainable=False)
        tensors = keras.tree.map_structure(tf.constant, (x, y))
        size, order = self.size, self._order

        def gather(i):
            idx = order[i * batch_size : tf.minimum((i + 1) * batch_size, size)]
            return keras.tree.map_structure(lambda a: tf.gather(a, idx), tensors)

        self.dataset = tf.data.Dataset.range(len(self)).map(gather).prefetch(tf.data.AUTOTUNE)

    def set_epoch(self, epoch):
        super().set_epoch(epoch)
        if self._order is not None:
            self._order.assign(self.order.astype("int64"))


def batches(x, y, batch_size: int, seed: int, settings: Settings, shard=None):
    """``(data, set_epoch)``: what to pass to ``fit`` for ``settings``, and the function
    that sets the order of an epoch's batches. ``shard=(index, count)`` keeps this
    process's share of every batch (multi-host data parallelism on JAX)."""
    if settings.pipeline == "tf.data":
        if shard is not None:
            raise ValueError("shard is for JAX's multi-process data parallelism")
        data = _TFBatches(x, y, batch_size, seed)
        return data.dataset, data.set_epoch
    data = _Batches(x, y, batch_size, seed, settings.pipeline == "torch", shard)
    return data, data.set_epoch
