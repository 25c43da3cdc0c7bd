"""The torch forward pass for ``predict``, eager or compiled, over host tensors."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import keras
import numpy as np

import zoo.performance.heap as heap
import zoo.performance.keras_patches as keras_patches
from zoo import _validation as check
from zoo.performance.torch.capture import close
from zoo.performance.torch.direct import direct
from zoo.performance.torch.passes import draws_random, finish, fold_weights, in_place
from zoo.performance.torch.step import Compiled

#: numpy dtypes whose arrays torch.from_numpy shares as they are (Keras's own conversion
#: changes some others, uint32 to int64)
_SHARED = {
    np.dtype(t)
    for t in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
}


def forward(model, compiled: bool) -> Callable:
    """The forward pass of batches of tensors on Keras's device (``on_device``); with
    ``compiled``, one graph checked only against its inputs' guards, as the compiled
    train step (eager, with a warning, where that fails)."""
    import torch

    def eager(batch):
        return model(batch, training=False)

    if not compiled:
        return Recorded(eager)

    def make():
        return torch.compile(
            keras_patches.fresh_code(lambda batch: model(batch, training=False)),
            fullgraph=True,
            options={"guard_filter_fn": keras_patches.tensor_guards_only},
        )

    return Compiled([("one-graph", make)], eager, "forward pass")


def on_device(forward: Callable) -> Callable:
    """``forward`` of batches of host tensors (or arrays), each moved to Keras's device
    first, as Keras's ``convert_to_tensor`` moves it; a batch already there (host tensors
    on the CPU) goes as it is. Keras's device is looked up once, here: make it per call
    (a ``keras.device`` scope may change it)."""
    import torch

    device = keras_patches.keras_device()

    def run(batch):
        if isinstance(batch, torch.Tensor):  # one input: no walk over a structure
            if batch.device == device:
                return forward(batch)
            return forward(keras.ops.convert_to_tensor(batch))
        return forward(keras.tree.map_structure(keras.ops.convert_to_tensor, batch))

    return run


class Recorded:
    """``forward(batch)`` recorded once per input shape with ``make_fx`` (as the train
    step is, ``capture``) and replayed: the same operations on the same tensors, without
    Keras's Python per layer. The first batch of a shape runs eagerly while it is
    recorded (the recording checked against it); a forward pass that cannot be recorded
    (it reads a tensor into Python, draws random numbers, or changes a variable) runs
    eagerly for good. The recording takes and returns the batch's tensors as a flat
    list (``direct`` code for any structure). What it computes from the weights alone
    is computed once (``passes.fold_weights``). Variables changed in place between
    calls (training between two predictions) are read anew: the recording holds the
    variables themselves, and the folded results are computed again from them."""

    def __init__(self, eager: Callable):
        self.eager, self.graphs, self.refused = eager, {}, None

    def __call__(self, batch):
        if self.refused is not None:
            return self.eager(batch)
        leaves, key = _leaves(batch)
        replay = self.graphs.get(key)
        if replay is not None:
            return replay(leaves)
        outputs = self.eager(batch)
        self.graphs[key] = self._record(batch, leaves, outputs)
        return outputs

    def _record(self, batch, leaves, outputs):
        import torch
        from torch.fx.experimental.proxy_tensor import make_fx

        one_in, one_out = isinstance(batch, torch.Tensor), isinstance(outputs, torch.Tensor)

        def flat(*tensors):  # the forward pass from and to flat lists of tensors
            x = tensors[0] if one_in else keras.tree.pack_sequence_as(batch, list(tensors))
            y = self.eager(x)
            return y if one_out else keras.tree.flatten(y)

        try:
            with keras_patches.light_metadata():
                graph = make_fx(flat)(*leaves)
        except Exception as e:  # make_fx raises many types; the eager pass goes on
            self.refused = f"recording failed: {check.error_summary(e)[:200]}"
            return None
        calls = [n.target for n in graph.graph.nodes if n.op == "call_function"]
        if any(in_place(t) or draws_random(t) for t in calls):  # refused before it runs
            self.refused = "it changes state or draws random numbers"
            return None
        refresh = fold_weights(graph)  # before `finish`: nothing is written into them
        finish(graph)
        # no Module.__call__ (the recording has no hooks); aten's functions called directly
        replay = _Replay(graph, direct(graph, leaves) or graph.forward, refresh,
                         None if one_out else outputs)  # fmt: skip
        try:
            replayed = keras.tree.flatten(replay(leaves))
        except Exception as e:
            self.refused = f"its replay failed: {check.error_summary(e)[:200]}"
            return None
        expected = keras.tree.flatten(outputs)
        if not all(close(a, b) for a, b in zip(replayed, expected, strict=True)):
            self.refused = "its replay computed other outputs"
            return None
        return replay


class _Replay:
    """A recording's code (``run``, of ``graph``) on a batch's leaves: the folded
    weights brought up to date first (``refresh``), the outputs put back in the model's
    structure (``outputs``, a batch's outputs; None: one tensor)."""

    def __init__(self, graph, run: Callable, refresh: Callable | None, outputs):
        self.graph, self.run, self.refresh, self.outputs = graph, run, refresh, outputs

    def __call__(self, leaves):
        if self.refresh is not None:
            self.refresh()
        result = self.run(*leaves)
        return result if self.outputs is None else keras.tree.pack_sequence_as(self.outputs, result)


def _leaves(batch) -> tuple:
    """A batch's tensors in ``keras.tree.flatten``'s order (a dict's by sorted key), and
    the recording it replays: its structure, and its tensors' shapes and dtypes."""
    import torch

    if isinstance(batch, torch.Tensor):  # one input: no walk over a structure
        return (batch,), (batch.shape, batch.dtype)
    if type(batch) is dict and all(isinstance(t, torch.Tensor) for t in batch.values()):
        keys = sorted(batch)  # keras.tree's order, without its walk
        leaves = [batch[k] for k in keys]
        return leaves, (tuple(keys), tuple((t.shape, t.dtype) for t in leaves))
    leaves = keras.tree.flatten(batch)
    return leaves, (keras.tree.map_structure(lambda _: None, batch).__repr__(),
                    tuple((t.shape, t.dtype) for t in leaves))  # fmt: skip


def on_host(outputs):
    """One batch's outputs as numpy arrays: a host tensor's own memory (each batch's
    outputs are new tensors that nothing else writes), Keras's copy otherwise."""
    import torch

    def numpy(t):
        try:
            return t.numpy()
        except (TypeError, RuntimeError):  # not on the CPU, needs grad, or a dtype numpy
            return keras.ops.convert_to_numpy(t)  # has not (bfloat16: ml_dtypes, as Keras)

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
    swapped as for training (``keras_patches.patched``), glibc's heap held
    (``heap.held``)."""
    import torch

    with (
        heap.held(),
        keras_patches.patched(traceable=compiled, fused_lstm=lstm, channels_last=conv),
        torch.no_grad(),
    ):
        yield
