"""Data-parallel training through the engines that already do it well.

``zoo train ... --distribute data`` (``train(..., distribute="data")``) trains
data-parallel: every device (or process) takes an equal slice of every batch, the
weights are replicated and the gradients averaged, so the math is that of one device
with the same global batch. The zoo sets up each backend's own engine around the same
``fit``, callbacks, checkpointing and resume as a one-device run:

- JAX: ``keras.distribution.DataParallel`` over ``keras.distribution.list_devices()``.
  Several processes: each is started with ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` (the
  coordinator's ``host:port`` first), ``KERAS_DISTRIBUTION_NUM_PROCESSES`` and
  ``KERAS_DISTRIBUTION_PROCESS_ID``; ``zoo`` then calls ``keras.distribution.initialize()``
  (``jax.distributed``; on CPUs its collectives run over gloo), the devices are those of
  all processes, and each process feeds its own share of every batch.
- TensorFlow: ``tf.distribute.MirroredStrategy`` over the GPUs, or, without GPUs,
  over the logical CPU devices (``tf.config.set_logical_device_configuration``).
  Several processes: ``tf.distribute.MultiWorkerMirroredStrategy`` over the workers of
  ``TF_CONFIG``, one device each; each process feeds its own share of every batch, and
  the zoo's loop (``zoo.performance.tensorflow.multi_worker_fit``) runs the epochs, since Keras
  3.15's ``fit`` fails under that strategy.
- PyTorch: ``torch.nn.parallel.DistributedDataParallel``, one process per device (gloo
  on CPUs, NCCL on GPUs), started by ``torchrun`` or ``zoo train --processes N``, which
  set ``MASTER_ADDR``, ``MASTER_PORT``, ``RANK`` and ``WORLD_SIZE``. Keras 3.15's ``fit``
  has no DDP on torch, so the zoo's torch train loop (``zoo.performance``) steps through
  ``zoo.performance.torch.step.ddp_train_step`` and sums the metrics over the processes at
  each epoch's end (``SumMetricsOverProcesses`` below).
  A Keras that has ``keras.distribution`` on torch (keras-nightly 3.16) is used instead:
  ``DataParallel`` and Keras's own ``fit`` (``nox -s keras_nightly --
  tests/test_distribute.py`` tests it).

With several processes, only the chief (process 0) writes the run directory; every
process reads the same checkpoint on resume (``zoo.training``). ``zoo.launch`` starts N
local processes with the right environment for the backend.

On a CPU, JAX shows several devices with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (set before JAX starts).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import keras

from zoo.launch import tf_workers

__all__ = [
    "LAYOUTS",
    "MODES",
    "DistPlan",
    "active_plan",
    "keras_distributes_torch",
    "model_parallel",
    "plan",
    "torch_ddp",
]

MODES = ("data",)
#: ``DistPlan.strategy`` of each engine (what ``zoo.performance.settings_for`` reads).
KERAS_DATA_PARALLEL = "keras.distribution.DataParallel"
TF_MIRRORED = "tf.distribute.MirroredStrategy"
TF_MULTI_WORKER = "tf.distribute.MultiWorkerMirroredStrategy"
TORCH_DDP = "torch.nn.parallel.DistributedDataParallel"
_ENV = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES")


@dataclass
class DistPlan:
    """How a run is spread over devices and processes (None of it for one device).

    Attributes:
        strategy: the engine, e.g. ``"keras.distribution.DataParallel"``; None: one device.
        devices: how many devices take a slice of every batch (over all processes).
        processes: how many processes share every batch.
        process_index: this process's index among them (0: the chief, which writes).
        even_batches: every batch (the last included) must split evenly over the devices:
            the training path trims the training and validation splits to a multiple of
            ``devices`` and evaluates the test split on one device.
        dropped_samples: what that trimming dropped, per split (for metrics.json).
    """

    strategy: str | None = None
    devices: int = 1
    processes: int = 1
    process_index: int = 0
    even_batches: bool = False
    dropped_samples: dict[str, int] = field(default_factory=dict)
    _scope: Callable[[], contextlib.AbstractContextManager] = field(
        default=contextlib.nullcontext, repr=False
    )
    _barrier: Callable[[str], None] = field(default=lambda name: None, repr=False)

    def scope(self) -> contextlib.AbstractContextManager:
        """The context under which the model is built, compiled and trained."""
        return self._scope()

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run directory (process 0)."""
        return self.process_index == 0

    def barrier(self, name: str) -> None:
        """Waits until every process reaches the barrier ``name`` (one process: returns)."""
        if self.processes > 1:
            self._barrier(name)

    @property
    def shard(self) -> tuple[int, int] | None:
        """``(index, count)`` of this process when several processes share each batch."""
        return (self.process_index, self.processes) if self.processes > 1 else None

    def as_dict(self) -> dict | None:
        """What metrics.json records (None for one device)."""
        if self.strategy is None:
            return None
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


def _check_batch(batch_size, count, what):
    """Every device must take an equal slice of each global batch."""
    if batch_size % count:
        raise ValueError(
            f"batch_size must be a multiple of the {count} {what} for "
            f"distribute='data', got {batch_size}"
        )


def _data_parallel_scope(devices, on_exit=lambda: None):
    """The scope of a ``keras.distribution.DataParallel`` over ``devices``: set on entry,
    the previous distribution restored on exit, then ``on_exit()``."""

    @contextlib.contextmanager
    def scope():
        previous = keras.distribution.distribution()
        # auto_shard_dataset=False: each process's batches are already its share
        # (zoo.performance's batches, sharded by process index)
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
        )
        try:
            yield
        finally:
            keras.distribution.set_distribution(previous)
            on_exit()

    return scope


def _jax_data_parallel(batch_size) -> DistPlan:
    import jax

    if os.environ.get(_ENV[1], "1") != "1" and not getattr(_jax_data_parallel, "done", False):
        keras.distribution.initialize()  # reads the KERAS_DISTRIBUTION_* variables
        _jax_data_parallel.done = True
    devices = keras.distribution.list_devices()
    _check_batch(batch_size, len(devices), "devices")

    def barrier(name):
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)

    return DistPlan(
        strategy=KERAS_DATA_PARALLEL,
        devices=len(devices),
        processes=jax.process_count(),
        process_index=jax.process_index(),
        even_batches=True,  # JAX shards every batch evenly
        _scope=_data_parallel_scope(devices),
        _barrier=barrier,
    )


def _tf_multi_worker(batch_size, workers, index) -> DistPlan:
    """``tf.distribute.MultiWorkerMirroredStrategy`` over the workers of ``TF_CONFIG``
    (one replica each), trained by the zoo's window and epoch loop: Keras 3.15's own
    ``fit`` fails under it (see ``zoo.performance.tensorflow.multi_worker_fit``)."""
    import tensorflow as tf

    _check_batch(batch_size, workers, "processes")
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # reads TF_CONFIG
    if strategy.num_replicas_in_sync != workers:
        raise ValueError(
            f"distribute='data' over TensorFlow workers takes one device per worker, but "
            f"this worker sees {strategy.num_replicas_in_sync // workers}: start one worker "
            "per GPU, each with its own CUDA_VISIBLE_DEVICES"
        )

    @tf.function
    def barrier():
        # a collective all-reduce returns on a worker only once every worker has joined it
        return strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)

    return DistPlan(
        strategy=TF_MULTI_WORKER,
        devices=strategy.num_replicas_in_sync,
        processes=workers,
        process_index=index,
        # each worker takes an equal share of every batch, as under DDP
        even_batches=True,
        _scope=strategy.scope,
        _barrier=lambda name: barrier(),
    )


def tf_multi_worker() -> bool:
    """Whether a ``MultiWorkerMirroredStrategy`` plan's scope is active."""
    import tensorflow as tf

    return isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy)


def _tf_mirrored(batch_size) -> DistPlan:
    import tensorflow as tf

    workers, index = tf_workers()
    if workers > 1:
        return _tf_multi_worker(batch_size, workers, index)
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    _check_batch(batch_size, len(devices), "devices")
    strategy = tf.distribute.MirroredStrategy(devices)
    return DistPlan(
        strategy=TF_MIRRORED,
        devices=len(devices),
        even_batches=False,  # TensorFlow splits a last, smaller batch by itself
        _scope=strategy.scope,
    )


# -- PyTorch: DistributedDataParallel --------------------------------------------------------
_TORCH_DDP = {"active": False}


def torch_ddp() -> bool:
    """Whether a torch ``DistributedDataParallel`` plan's scope is active."""
    return _TORCH_DDP["active"]


def active_plan() -> DistPlan:
    """A plan naming the distribution scope active now (one device when none), for
    callers of ``zoo.training.fit`` that set up a scope of their own and pass no plan;
    ``zoo.training.train`` passes the plan it made."""
    if keras.distribution.distribution() is not None:
        return DistPlan(strategy=KERAS_DATA_PARALLEL)
    backend = keras.backend.backend()
    if backend == "torch" and torch_ddp():
        return DistPlan(strategy=TORCH_DDP)
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy():
            return DistPlan(strategy=TF_MULTI_WORKER if tf_multi_worker() else TF_MIRRORED)
    return DistPlan()


def _end_process_group() -> None:
    """Training is over: what the chief does next (save, test) is its own, not collective
    (keras-nightly wraps any model in DDP while a process group is up)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def keras_distributes_torch() -> bool:
    """Whether the installed Keras has ``keras.distribution`` on torch (keras-nightly
    3.16: ``DataParallel`` wraps the model in DDP inside ``fit`` and sums the metrics);
    Keras 3.15 has no distribution backend for torch."""
    try:
        keras.distribution.list_devices()
    except AttributeError:  # Keras 3.15: the torch backend's distribution_lib is None
        return False
    return True


def _keras_torch_data_parallel(world) -> DistPlan:
    """Keras's own torch data parallelism (``fit`` with DDP), where Keras has it."""
    import torch.distributed as dist

    if not dist.is_initialized():
        keras.distribution.initialize()  # env:// (MASTER_ADDR, RANK, WORLD_SIZE)
    devices = keras.distribution.list_devices()

    return DistPlan(
        strategy=KERAS_DATA_PARALLEL,
        devices=len(devices),
        processes=world,
        process_index=dist.get_rank(),
        even_batches=True,
        _scope=_data_parallel_scope(devices, on_exit=_end_process_group),
        _barrier=lambda name: dist.barrier(),
    )


def _torch_ddp(batch_size) -> DistPlan:
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world < 2:
        raise ValueError(
            "distribute='data' on the torch backend trains one process per device: start "
            "it with `zoo train ... --distribute data --processes N` (N >= 2) or under "
            "torchrun (see docs/distribute.md)"
        )
    _check_batch(batch_size, world, "processes")
    if keras_distributes_torch():
        return _keras_torch_data_parallel(world)
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            local, count = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
            if local >= count:
                raise ValueError(
                    f"LOCAL_RANK {local} has no GPU of its own ({count} here): start at most "
                    f"{count} processes per host, or hide the GPUs (CUDA_VISIBLE_DEVICES=) to "
                    "train on CPUs; zoo train --processes does the latter by itself"
                )
            torch.cuda.set_device(local)
        # env:// reads MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE (torchrun, zoo.launch)
        dist.init_process_group("nccl" if cuda else "gloo")

    @contextlib.contextmanager
    def scope():
        _TORCH_DDP["active"] = True
        try:
            yield
        finally:
            _TORCH_DDP["active"] = False
            _end_process_group()

    return DistPlan(
        strategy=TORCH_DDP,
        devices=world,
        processes=world,
        process_index=dist.get_rank(),
        # each process takes an equal share of every batch: DDP averages the processes'
        # gradients, which is the gradient of the global batch only if the shares are equal
        even_batches=True,
        _scope=scope,
        _barrier=lambda name: dist.barrier(),
    )


class SumMetricsOverProcesses(keras.callbacks.Callback):
    """At each epoch's last training batch, replaces every metric's state with its sum
    over the processes (``all_reduce``), so that the epoch's logs (history.csv, the
    checkpoint, the NaN check) are those of the global batches, as on one process.
    Keras's metrics keep sums and counts (``Mean``: total and count), which add up."""

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 < self.params["steps"]:
            return
        import torch
        import torch.distributed as dist

        with torch.no_grad():
            for variable in self.model.metrics_variables:
                dist.all_reduce(variable.value, op=dist.ReduceOp.SUM)


# -- model parallelism ---------------------------------------------------------------------
#: How the zoo's largest layers split over the "model" axis of a device mesh, per model:
#: variable-path patterns (``keras.distribution.LayoutMap`` keys) to axis names per
#: dimension. ticket_router: its two 10,000 x 64 embeddings (92% of its weights) and its
#: LSTM kernels, split along their output features. vgg19_features with
#: ``include_top=True``: its fully connected top (fc1 alone is 25088 x 4096, 103 M weights).
LAYOUTS: dict[str, dict[str, tuple[str | None, ...]]] = {
    "ticket_router": {
        ".*_embedding/embeddings": (None, "model"),
        ".*_lstm/lstm_cell/(recurrent_)?kernel": (None, "model"),
    },
    "vgg19_features": {
        "fc1/kernel": (None, "model"),
        "fc2/kernel": (None, "model"),
        "predictions/kernel": (None, "model"),
    },
}


def model_parallel(model_name: str, devices: list | None = None):
    """A ``keras.distribution.ModelParallel`` that splits ``model_name``'s largest
    variables (``LAYOUTS``) over ``devices`` (all of them by default), the batch not
    split. Build the model under its ``scope()``: each listed variable is then laid out
    in slices over the devices, and the model computes what it computes on one device.

    Keras 3.15 offers ModelParallel on JAX only (TensorFlow and torch have no Keras
    distribution backend there): other backends get a one-line error.

    Example:
        >>> with zoo.distribute.model_parallel("ticket_router").scope():  # doctest: +SKIP
        ...     model = zoo.create("ticket_router")
    """
    if model_name not in LAYOUTS:
        raise ValueError(
            f"model_name must be one of {sorted(LAYOUTS)} for model parallelism (the zoo's "
            f"models with layers large enough to split), got {model_name!r}"
        )
    if keras.backend.backend() != "jax":
        raise ValueError(
            f"model parallelism needs the jax backend (Keras {keras.__version__} has "
            f"keras.distribution.ModelParallel on JAX only), got {keras.backend.backend()!r}"
        )
    devices = devices or keras.distribution.list_devices()
    mesh = keras.distribution.DeviceMesh((1, len(devices)), ("batch", "model"), devices)
    layouts = keras.distribution.LayoutMap(mesh)
    for pattern, axes in LAYOUTS[model_name].items():
        layouts[pattern] = axes
    return keras.distribution.ModelParallel(layout_map=layouts, batch_dim_name="batch")


def plan(mode: str | None, batch_size: int) -> DistPlan:
    """The distribution plan for ``mode`` (None: one device). Bad settings are refused
    here, before any file is written."""
    if mode is None:
        return DistPlan()
    if mode not in MODES:
        raise ValueError(f"distribute must be one of {list(MODES)} or None, got {mode!r}")
    backend = keras.backend.backend()
    if backend == "jax":
        return _jax_data_parallel(batch_size)
    if backend == "tensorflow":
        return _tf_mirrored(batch_size)
    if backend == "torch":
        return _torch_ddp(batch_size)
    raise ValueError(f"distribute={mode!r} is not available on the {backend!r} backend")
