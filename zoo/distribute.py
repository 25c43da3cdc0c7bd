"""Multi-device training through the engines that already do it well.

``zoo train ... --distribute data`` (``train(..., distribute="data")``) trains
data-parallel over every local device, each device taking an equal slice of every
batch, with the weights replicated and the gradients averaged, so the math is that of
one device with the same global batch:

- JAX: ``keras.distribution.DataParallel`` over ``keras.distribution.list_devices()``.
  Multi-host: start every process with ``KERAS_DISTRIBUTION_JOB_ADDRESSES``
  (comma-separated ``host:port`` of every process, the first being the
  coordinator), ``KERAS_DISTRIBUTION_NUM_PROCESSES`` and
  ``KERAS_DISTRIBUTION_PROCESS_ID``; ``zoo`` then calls
  ``keras.distribution.initialize()``, the devices are those of all processes, and
  each process feeds its own share of every batch.
- TensorFlow: ``tf.distribute.MirroredStrategy`` over the GPUs, or, without GPUs,
  over the logical CPU devices (``tf.config.set_logical_device_configuration``).
- PyTorch: not available: Keras's ``fit`` drives one device on this backend. It
  needs a ``DistributedDataParallel`` wrapper and a custom loop (see
  ``docs/distribute.md``); asking for it is a clear error.

On a CPU, JAX shows several devices with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (set before JAX starts).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import keras

__all__ = ["MODES", "DistPlan", "plan"]

MODES = ("data",)
_ENV = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES")


@dataclass
class DistPlan:
    """How a run is spread over devices and processes (None of it for one device).

    Attributes:
        strategy: the engine, e.g. ``"keras.distribution.DataParallel"``; None: one device.
        devices: how many devices take a slice of every batch.
        processes: how many processes share every batch.
        process_index: this process's index among them.
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

    def scope(self) -> contextlib.AbstractContextManager:
        """The context under which the model is built, compiled and trained."""
        return self._scope()

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


def _jax_data_parallel(batch_size) -> DistPlan:
    import jax

    if os.environ.get(_ENV[1], "1") != "1" and not getattr(_jax_data_parallel, "done", False):
        keras.distribution.initialize()  # reads the KERAS_DISTRIBUTION_* variables
        _jax_data_parallel.done = True
    devices = keras.distribution.list_devices()
    _check_batch(batch_size, jax.local_device_count(), "local devices")

    @contextlib.contextmanager
    def scope():
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        try:
            yield
        finally:
            keras.distribution.set_distribution(previous)

    return DistPlan(
        strategy="keras.distribution.DataParallel",
        devices=len(devices),
        processes=jax.process_count(),
        process_index=jax.process_index(),
        even_batches=True,  # JAX shards every batch evenly
        _scope=scope,
    )


def _tf_mirrored(batch_size) -> DistPlan:
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    _check_batch(batch_size, len(devices), "devices")
    strategy = tf.distribute.MirroredStrategy(devices)
    return DistPlan(
        strategy="tf.distribute.MirroredStrategy",
        devices=len(devices),
        even_batches=False,  # TensorFlow splits a last, smaller batch by itself
        _scope=strategy.scope,
    )


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
    raise ValueError(
        f"distribute={mode!r} is not available on the {backend!r} backend: Keras's fit "
        "trains on one device there (use the jax or tensorflow backend; see "
        "docs/distribute.md)"
    )
