"""The torch forward pass for ``predict``, eager or compiled, over host tensors."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import keras
import numpy as np

from zoo import _validation as check
from zoo.performance.torch.keras_patches import dynamo_traces_keras
from zoo.performance.torch.step import _fresh, _tensor_guards_only


def _torch_forward(model, compiled: bool) -> Callable:
    """The forward pass of batches of arrays or host tensors, each batch moved to Keras's
    device first (a no-op for host tensors on the CPU)."""
    import torch

    def tensors(batch):
        return keras.tree.map_structure(keras.ops.convert_to_tensor, batch)

    if not compiled:
        return lambda batch: model(tensors(batch), training=False)
    dynamo_traces_keras()
    # one graph, checked only against its inputs' guards, as the compiled train step
    # (_tensor_guards_only), with code of its own for each model (_fresh)
    state = {
        "compiled": torch.compile(
            _fresh(lambda batch: model(batch, training=False)),
            fullgraph=True,
            options={"guard_filter_fn": _tensor_guards_only},
        )
    }

    def compiled_forward(batch):
        batch = tensors(batch)
        if state["compiled"] is not None:
            try:
                return state["compiled"](batch)
            except Exception as e:  # as in _compiled_torch_step: eager re-raises real errors
                state["compiled"] = None
                warnings.warn(
                    f"torch.compile could not compile the forward pass "
                    f"({check.error_summary(e)[:250]}); predict goes on eagerly",
                    stacklevel=2,
                )
        return model(batch, training=False)

    return compiled_forward


#: numpy dtypes whose arrays torch.from_numpy shares as they are (Keras's own conversion
#: changes some others, uint32 to int64)
_TORCH_SHARED = {
    np.dtype(t)
    for t in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
}


def _torch_host(a: np.ndarray):
    """``a`` as a host (CPU) torch tensor sharing its memory, where torch can share it;
    else ``a`` itself, whose batches Keras's ``convert_to_tensor`` then copies one by
    one. Keras's ``convert_to_tensor`` copies any array it is given (``np.array``): per
    batch, about 100 us of mnist_mlp's 370 (batch 256); the whole array at once would be
    1.4 ms for its 4,096 inputs, and would put all of them on an accelerator at once."""
    import torch

    if a.dtype in _TORCH_SHARED and a.dtype.isnative and a.flags.writeable:
        return torch.from_numpy(np.ascontiguousarray(a))
    return a
