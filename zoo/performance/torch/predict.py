"""The torch forward pass for ``predict``, eager or compiled, over host tensors."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import keras
import numpy as np

import zoo.performance.keras_patches as keras_patches
from zoo.performance.torch.step import Compiled

#: numpy dtypes whose arrays torch.from_numpy shares as they are (Keras's own conversion
#: changes some others, uint32 to int64)
_SHARED = {
    np.dtype(t)
    for t in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
}


def forward(model, compiled: bool) -> Callable:
    """The forward pass of batches of arrays or host tensors, each batch moved to Keras's
    device first (a no-op for host tensors on the CPU); with ``compiled``, one graph
    checked only against its inputs' guards, as the compiled train step (eager, with a
    warning, where that fails)."""
    import torch

    def tensors(batch):
        return keras.tree.map_structure(keras.ops.convert_to_tensor, batch)

    def eager(batch):
        return model(batch, training=False)

    if not compiled:
        return lambda batch: eager(tensors(batch))

    def make():
        return torch.compile(
            keras_patches.fresh_code(lambda batch: model(batch, training=False)),
            fullgraph=True,
            options={"guard_filter_fn": keras_patches.tensor_guards_only},
        )

    run = Compiled([("one-graph", make)], eager, "forward pass")
    return lambda batch: run(tensors(batch))


def host(a: np.ndarray):
    """``a`` as a host (CPU) torch tensor sharing its memory, where torch can share it;
    else ``a`` itself, whose batches Keras's ``convert_to_tensor`` then copies one by one
    (it copies any array it is given; the whole array at once would also put all of it on
    an accelerator)."""
    import torch

    if a.dtype in _SHARED and a.dtype.isnative and a.flags.writeable:
        return torch.from_numpy(np.ascontiguousarray(a))
    return a


@contextlib.contextmanager
def predicting(conv: bool, lstm: bool, compiled: bool):
    """What ``predict``'s loop runs in on torch: ``no_grad`` and Keras's torch functions
    swapped as for training (``keras_patches.patched``)."""
    import torch

    with (
        keras_patches.patched(traceable=compiled, fused_lstm=lstm, channels_last=conv),
        torch.no_grad(),
    ):
        yield
