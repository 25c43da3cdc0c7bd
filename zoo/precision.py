"""float32 matrix precision on accelerators: one switch for every backend.

On NVIDIA GPUs since Ampere, float32 matrix multiplies and convolutions may run in TF32
(a 10-bit mantissa): XLA does so by default under JAX and TensorFlow, and torch for
cuDNN convolutions and RNNs. That is faster and changes outputs by about 1e-3
(``docs/gpu.md``). ``set_float32_precision("highest")`` asks every backend for full
float32; ``"tf32"`` allows TF32. On a CPU neither changes anything computed.

- JAX: ``jax_default_matmul_precision`` (``"highest"`` or ``"tensorfloat32"``);
- torch: the ``fp32_precision`` flags of cuBLAS matmuls, cuDNN convolutions and cuDNN
  RNNs (``"ieee"`` or ``"tf32"``), torch's current API only (mixing it with the older
  ``allow_tf32`` flags is an error in torch 2.9 and later);
- TensorFlow: ``tf.config.experimental.enable_tensor_float_32_execution``.

The test suite runs with ``"highest"`` wherever a GPU is present, as Keras's own
``conftest.py`` does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras

from zoo import _validation as check

__all__ = [
    "PRECISIONS",
    "accelerator_present",
    "float32_precision",
    "float32_precision_scope",
    "set_float32_precision",
]

PRECISIONS = ("highest", "tf32")
_TORCH_FLAGS = ("cuda.matmul", "cudnn.conv", "cudnn.rnn")


def _torch_flag(name: str):
    import torch

    owner = torch.backends
    for part in name.split("."):
        owner = getattr(owner, part)
    return owner


def set_float32_precision(precision: str) -> None:
    """Sets float32 matrix precision on the current backend: ``"highest"`` (full
    float32) or ``"tf32"`` (TF32 allowed where the accelerator has it)."""
    check.one_of("precision", precision, PRECISIONS)
    backend, tf32 = keras.backend.backend(), precision == "tf32"
    if backend == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "tensorfloat32" if tf32 else "highest")
    elif backend == "torch":
        for name in _TORCH_FLAGS:
            _torch_flag(name).fp32_precision = "tf32" if tf32 else "ieee"
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(tf32)


def float32_precision() -> dict[str, str | bool | None]:
    """The backend's float32 precision flags as they are now (for metrics.json and tests)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return {"jax_default_matmul_precision": jax.config.jax_default_matmul_precision}
    if backend == "torch":
        return {f"{name}.fp32_precision": _torch_flag(name).fp32_precision for name in _TORCH_FLAGS}
    if backend == "tensorflow":
        import tensorflow as tf

        return {
            "tensor_float_32_execution": tf.config.experimental.tensor_float_32_execution_enabled()
        }
    return {}


@contextlib.contextmanager
def float32_precision_scope(precision: str | None) -> Iterator[None]:
    """``set_float32_precision(precision)`` for the block (None: the flags as they are,
    whatever the block sets); the flags as they were after it (a backend's own default
    included)."""
    saved = float32_precision()
    if precision is not None:
        set_float32_precision(precision)
    try:
        yield
    finally:
        _restore(saved)


def _restore(flags: dict) -> None:
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", flags["jax_default_matmul_precision"])
    elif backend == "torch":
        for name in _TORCH_FLAGS:
            _torch_flag(name).fp32_precision = flags[f"{name}.fp32_precision"]
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(flags["tensor_float_32_execution"])


def accelerator_present() -> bool:
    """Whether the current backend sees a GPU."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return False
