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

import keras

__all__ = ["MODES", "distribution"]

MODES = ("data",)
_ENV = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES")


def _check_batch(batch_size, count, what):
    """Every device must take an equal slice of each global batch."""
    if batch_size % count:
        raise ValueError(
            f"batch_size must be a multiple of the {count} {what} for "
            f"distribute='data', got {batch_size}"
        )


def _jax_data_parallel(batch_size):
    import jax

    if os.environ.get(_ENV[1], "1") != "1" and not getattr(_jax_data_parallel, "done", False):
        keras.distribution.initialize()  # reads the KERAS_DISTRIBUTION_* variables
        _jax_data_parallel.done = True
    devices = keras.distribution.list_devices()
    _check_batch(batch_size, jax.local_device_count(), "local devices")
    info = {
        "strategy": "keras.distribution.DataParallel",
        "devices": len(devices),
        "processes": jax.process_count(),
        "process_index": jax.process_index(),
        # JAX shards every batch evenly: the training path trims the training and
        # validation data to a multiple of the devices and evaluates on one device
        "even_batches": True,
    }

    @contextlib.contextmanager
    def scope():
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        try:
            yield info
        finally:
            keras.distribution.set_distribution(previous)

    return scope()


def _tf_mirrored(batch_size):
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    _check_batch(batch_size, len(devices), "devices")
    strategy = tf.distribute.MirroredStrategy(devices)
    info = {
        "strategy": "tf.distribute.MirroredStrategy",
        "devices": len(devices),
        "processes": 1,
        "process_index": 0,
        "even_batches": False,  # TensorFlow splits a last, smaller batch by itself
    }

    @contextlib.contextmanager
    def scope():
        with strategy.scope():
            yield info

    return scope()


def distribution(mode: str | None, batch_size: int):
    """A context manager for ``mode`` (None: one device) under which the model is
    built, compiled and trained; it yields a dict describing the devices (or None)."""
    if mode is None:
        return contextlib.nullcontext(None)
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
