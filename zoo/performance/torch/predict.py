"""The torch forward pass for ``predict``, eager or compiled, over host tensors."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import keras
import numpy as np

import zoo.performance.keras_patches as keras_patches
from zoo import _validation as check
from zoo.performance.torch.capture import close, draws_random, in_place
from zoo.performance.torch.direct import direct
from zoo.performance.torch.passes import finish
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
        if isinstance(batch, torch.Tensor):  # one input: no walk over a structure
            return keras.ops.convert_to_tensor(batch)
        return keras.tree.map_structure(keras.ops.convert_to_tensor, batch)

    def eager(batch):
        return model(batch, training=False)

    if not compiled:
        recorded = Recorded(eager)

        def replayed(batch):
            return recorded(tensors(batch))

        replayed.recorded = recorded  # what was recorded, or why not
        return replayed

    def make():
        return torch.compile(
            keras_patches.fresh_code(lambda batch: model(batch, training=False)),
            fullgraph=True,
            options={"guard_filter_fn": keras_patches.tensor_guards_only},
        )

    run = Compiled([("one-graph", make)], eager, "forward pass")
    return lambda batch: run(tensors(batch))


class Recorded:
    """``forward(batch)`` recorded once per input shape with ``make_fx`` (as the train
    step is, ``capture``) and replayed: the same operations on the same tensors, without
    Keras's Python per layer. The first batch of a shape runs eagerly while it is
    recorded (the recording checked against it); a forward pass that cannot be recorded
    (it reads a tensor into Python, draws random numbers, or changes a variable) runs
    eagerly for good. Variables changed in place between calls (training between two
    predictions) are read anew: the recording holds the variables themselves."""

    def __init__(self, eager: Callable):
        self.eager, self.graphs, self.refused = eager, {}, None

    def __call__(self, batch):
        if self.refused is not None:
            return self.eager(batch)
        key = _key(batch)
        run = self.graphs.get(key)
        if run is not None:
            return run(batch)
        outputs = self.eager(batch)
        self.graphs[key] = self._record(batch, outputs)
        return outputs

    def _record(self, batch, outputs):
        from torch.fx.experimental.proxy_tensor import make_fx

        try:
            with keras_patches.light_metadata():
                graph = make_fx(self.eager)(batch)
        except Exception as e:  # make_fx raises many types; the eager pass goes on
            self.refused = f"recording failed: {check.error_summary(e)[:200]}"
            return None
        calls = [n.target for n in graph.graph.nodes if n.op == "call_function"]
        if any(in_place(t) or draws_random(t) for t in calls):  # refused before it runs
            self.refused = "it changes state or draws random numbers"
            return None
        finish(graph)
        # no Module.__call__ (the recording has no hooks); aten's functions called directly
        run = direct(graph, batch) or graph.forward
        try:
            replayed = keras.tree.flatten(run(batch))
        except Exception as e:
            self.refused = f"its replay failed: {check.error_summary(e)[:200]}"
            return None
        expected = keras.tree.flatten(outputs)
        if not all(close(a, b) for a, b in zip(replayed, expected, strict=True)):
            self.refused = "its replay computed other outputs"
            return None
        return run


def _key(batch) -> tuple:
    """The recording a batch replays: its structure, and its tensors' shapes and dtypes."""
    import torch

    if isinstance(batch, torch.Tensor):  # one input: no walk over a structure
        return batch.shape, batch.dtype
    leaves = keras.tree.flatten(batch)
    return (keras.tree.map_structure(lambda _: None, batch).__repr__(),
            tuple((t.shape, t.dtype) for t in leaves))  # fmt: skip


def on_host(outputs):
    """One batch's outputs as numpy arrays: a host tensor's own memory (each batch's
    outputs are new tensors that nothing else writes), Keras's copy otherwise."""
    import torch

    def numpy(t):
        if (
            isinstance(t, torch.Tensor)
            and t.device.type == "cpu"
            and not t.requires_grad
            and t.dtype is not torch.bfloat16  # numpy has none: Keras's own (ml_dtypes)
        ):
            with contextlib.suppress(TypeError):  # another dtype numpy cannot share
                return t.numpy()
        return keras.ops.convert_to_numpy(t)

    if isinstance(outputs, torch.Tensor):  # one output: no walk over a structure
        return numpy(outputs)
    return keras.tree.map_structure(numpy, outputs)


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
