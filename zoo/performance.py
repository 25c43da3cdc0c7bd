"""Per-backend speed settings for the training path.

This is the zoo's one clearly separated performance path: everything backend-specific
that ``zoo.training.fit`` does for speed lives here, and ``fast="off"`` falls back to
Keras's plain ``fit`` over a ``keras.utils.PyDataset`` on every backend. None of it
changes what is computed: every setting runs the same batches, in the same
``(seed, epoch)`` order, through the same ``train_step``; ``tests/test_performance.py``
checks that a seeded run's loss curve matches the plain path's.

What each backend gets (measured with ``scripts/benchmark.py``, see
``docs/benchmarks.md``): the zoo's *window* train function (below), which runs
``steps_per_execution`` steps (up to ``STEPS_PER_EXECUTION``) per call of
``model.train_function``, through Keras's own ``train_step``:

- TensorFlow: the window is one ``tf.function``, looping over batches it gathers from
  the arrays in memory (the form of the hand-written reference
  ``benchmarks/native_tf.py``); XLA-compiled for models without convolutions, with
  ``fast="on"``, or ``"auto"`` for runs of at least ``XLA_MIN_STEPS`` steps.
- JAX: the window is one ``jax.jit`` of a ``fori_loop`` over batches gathered on the
  device, its state donated.
- PyTorch: the window loops over its steps in Python, each gathering its batch from
  torch tensors in memory (``fit`` iterates a stand-in, not Keras's per-batch iterator),
  skipping Keras's per-step callbacks. With ``fast="on"``, or ``"auto"`` for runs of at
  least ``TORCH_COMPILE_MIN_STEPS`` steps, the train step is compiled with
  ``torch.compile``: the gather, forward pass, backward pass, optimizer update and
  metrics as one graph, checked only against its inputs' guards
  (``_compiled_torch_step``); where that fails, Keras's own step compiled (split at its
  ``loss.backward()``), and then the eager step, with a warning. Compiling costs
  seconds up front (see "time to first step"), which short runs never earn back. Keras's
  ``LSTM`` layers run torch's fused LSTM kernel during ``fit`` (``fused_torch_lstm``; Keras
  runs it only on CUDA and loops over the time steps on the CPU), and Keras's
  convolutions and pooling read channels-last images in place
  (``channels_last_torch_inputs``; Keras
  copies each to channels-first memory and back). Zoo models let dynamo trace
  Keras's torch ``max``, ``min``, ``binary_crossentropy``, tree functions and generic
  RNN loop (``dynamo_traces_keras``), whose graph breaks split a compiled model or train
  step into many graphs.

``predict`` (``zoo.predict``) is Keras's ``predict``'s outputs without its per-batch
iterator and callbacks: a loop of compiled forward passes over the arrays in memory
(TensorFlow, PyTorch; on JAX Keras's own, already as fast).

Callbacks see every window's end and every epoch's end (progress bar, checkpoints, the
NaN stop). Under TensorFlow's ``MirroredStrategy`` or a ``keras.distribution``, Keras's
own loop runs (with ``steps_per_execution`` on JAX); under torch's
``DistributedDataParallel`` (``zoo.distribute``) the torch window runs, uncompiled,
through the DDP step; under TensorFlow's ``MultiWorkerMirroredStrategy`` the TensorFlow
window runs (a plain graph) over this worker's share of every batch, each step under
``strategy.run``, and ``_multi_worker_fit`` runs the epochs, since Keras's ``fit`` fails
under that strategy.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass

import keras
import numpy as np

from zoo import _validation as check
from zoo import distribute
from zoo.utils import contains_layer

__all__ = [
    "CONV_STEPS_PER_EXECUTION",
    "MODES",
    "STEPS_PER_EXECUTION",
    "TORCH_COMPILE_MIN_STEPS",
    "TORCH_UNROLL_MAX_STEPS",
    "XLA_MIN_STEPS",
    "ProgressBar",
    "Settings",
    "predict",
    "prepare",
    "settings_for",
]

MODES = ("auto", "on", "off")
#: ``fast="auto"`` compiles the torch train step only for runs of at least this many
#: steps: below it, compiling (about 10 s for the MLP) costs more than it saves.
TORCH_COMPILE_MIN_STEPS = 10_000
#: ``fast="auto"`` XLA-compiles the TensorFlow window only for runs of at least this many
#: steps. Measured here (mnist_mlp, batch 64, both cores busy): XLA's compile costs about
#: 5.7 s more than tracing the plain graph, and then saves about 1.2 ms a step (XLA 0.8 ms,
#: graph 2.0 ms), so it pays from about 4,800 steps. The default digits run (360 steps)
#: took 12.8 s with the graph window, 22.4 s with the XLA one and 17.1 s with Keras's own
#: loop (which XLA-compiles its step).
XLA_MIN_STEPS = 5_000
#: The most steps per window (``steps_per_execution``): one call of the zoo's train
#: function, between two calls of the callbacks' batch hooks. Each call costs about 1 ms
#: on TensorFlow (measured here: a 1-step window 1.4 ms, each further MLP step 0.3 ms),
#: so short windows cost dense models a third of their speed; a model with
#: convolutions takes long enough a step that short windows cost nothing and keep the
#: progress bar moving (toy_resnet: about 0.1 s a step on this CPU). 512, not 128:
#: mnist_mlp's MNIST epoch (938 steps) in 2 windows instead of 8 trained 1.05-1.15x
#: faster (measured 2026-11-29 in one process, 4 alternating rounds, medians:
#: TensorFlow 226,000 -> 260,000 samples/s, JAX 255,000 -> 271,000 with a whole-epoch
#: window); a window of ticket_router's steps (10 ms each) still reports every 5 s.
STEPS_PER_EXECUTION = 512
CONV_STEPS_PER_EXECUTION = 16


@dataclass(frozen=True)
class Settings:
    """What ``zoo.training.fit`` does on this backend (``asdict`` goes in metrics.json).

    Attributes:
        mode: ``"auto"``, ``"on"`` or ``"off"``, as asked.
        backend: the Keras backend.
        jit_compile: the ``jit_compile`` the model trains with (None: as compiled).
        steps_per_execution: training steps per compiled call.
        pipeline: how batches are fed: ``"pydataset"`` (numpy arrays through Keras's
            iterator), ``"in-graph"`` (gathered inside the compiled window from the
            arrays on the device) or ``"torch"`` (gathered by the torch window from torch
            tensors in memory).
        torch_compile: whether the torch train step is compiled.
        window: whether the zoo's window train function runs (``steps_per_execution``
            steps per call, see below) instead of Keras's own.
        ddp: whether the torch step runs through ``DistributedDataParallel``
            (``zoo.distribute.ddp_train_step``, under a torch data-parallel plan).
        fused_lstm: whether Keras's ``LSTM`` layers run torch's fused LSTM kernel on the
            CPU during ``fit`` (``fused_torch_lstm``) instead of Keras's loop over time
            steps.
        channels_last: whether Keras's torch convolutions and pooling read channels-last
            images in place during ``fit`` (``channels_last_torch_inputs``) instead of
            copying them to channels-first memory and back.
    """

    mode: str
    backend: str
    jit_compile: bool | None = None
    steps_per_execution: int = 1
    pipeline: str = "pydataset"
    torch_compile: bool = False
    window: bool = False
    ddp: bool = False
    fused_lstm: bool = False
    channels_last: bool = False

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


def _steps_per_execution(steps_per_epoch: int, most: int, divisor: bool = False) -> int:
    """Up to ``most`` steps, never more than an epoch. ``divisor``: the largest divisor of
    the epoch up to ``most``, for the loops that read their batches from Keras's iterator
    (a last, shorter window made Keras warn "Your input ran out of data" every epoch)."""
    if divisor:
        return max(d for d in range(1, min(most, steps_per_epoch) + 1) if steps_per_epoch % d == 0)
    return max(1, min(most, steps_per_epoch))


def _compile_pays(mode: str, steps: int, min_steps: int) -> bool:
    """Whether to compile: always with ``fast="on"``; with ``"auto"`` only for runs of at
    least ``min_steps`` steps, the measured break-even of the backend's compile."""
    return mode == "on" or steps >= min_steps


class ProgressBar(keras.callbacks.ProgbarLogger):
    """Keras's progress bar, its count capped at the epoch's steps: an epoch's last window
    may be shorter than ``steps_per_execution``, and Keras counts whole windows (it
    showed e.g. ``24/18`` at the end of an 18-step epoch)."""

    def on_train_batch_end(self, batch, logs=None):
        if self.target is not None:
            batch = min(batch, self.target - 1)
        super().on_train_batch_end(batch, logs)


def settings_for(
    mode: str, steps_per_epoch: int, epochs: int, model: keras.Model | None = None
) -> Settings:
    """The settings for training ``model`` for ``epochs`` x ``steps_per_epoch`` steps
    on the current backend; ``mode`` is one of ``MODES``.

    Models with convolutions (``model`` given) are compiled differently, from
    measurement on this CPU (``docs/benchmarks.md``): on TensorFlow their window is a
    plain graph, since XLA ran the toy ResNet's convolutions inside a loop about 35x
    slower; on JAX they keep Keras's loop. On PyTorch every model's step is compiled
    (as one graph, ``_compiled_torch_step``): conv_autoencoder 1.27x its eager step,
    toy_resnet even with it, mnist_mlp and ticket_router about 4.5x (measured
    2026-11-28; when Keras's own step was compiled, split at its ``backward()``, the
    convolutional models ran slower than eager and stayed eager).
    """
    check.one_of("fast", mode, MODES)
    most_steps = (
        CONV_STEPS_PER_EXECUTION if contains_layer(model, _CONV_LAYERS) else STEPS_PER_EXECUTION
    )
    backend = keras.backend.backend()
    if backend == "torch" and keras.distribution.distribution() is not None:
        return Settings(mode, backend)  # Keras's fit with its own DDP (keras-nightly)
    if backend == "torch" and distribute.torch_ddp():
        # Keras 3.15's fit has no DDP on torch: the zoo's loop runs, uncompiled, whatever
        # ``mode`` (with "off", one step per window: Keras's loop with the DDP step)
        spe = 1 if mode == "off" else _steps_per_execution(steps_per_epoch, most_steps, True)
        return Settings(mode, backend, None, spe, "torch", window=True, ddp=True)
    if backend == "tensorflow" and distribute.tf_multi_worker():
        # Keras 3.15's fit fails under MultiWorkerMirroredStrategy: the zoo's window runs
        # whatever ``mode`` (with "off", one step per window), as a plain graph (XLA around
        # the strategy's collectives has not been tried)
        spe = 1 if mode == "off" else _steps_per_execution(steps_per_epoch, most_steps)
        return Settings(mode, backend, False, spe, "in-graph", window=True)
    if mode == "off":
        return Settings(mode, backend)
    conv = contains_layer(model, _CONV_LAYERS)
    spe = _steps_per_execution(steps_per_epoch, most_steps, divisor=backend == "torch")
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy():
            # Under MirroredStrategy Keras's plain fit runs: the earlier tf.data pipeline
            # failed there (its order variable was mirrored) and XLA with
            # steps_per_execution hung; the window has not been tried under a strategy.
            return Settings(mode, backend)
        # XLA for the whole window unless the model has convolutions (measured here: the
        # MLP's window 2.5x a per-step loop; convolutions far slower with XLA in a loop),
        # and with "auto" only for runs long enough to earn its compile (XLA_MIN_STEPS).
        # ticket_router's LSTMs: 70 steps/s with XLA, 45 without (and 72 with XLA per
        # step in a graph loop; Keras's own loop with XLA per step ran 103 the day before)
        xla = _compile_pays(mode, steps_per_epoch * epochs, XLA_MIN_STEPS) and not conv
        return Settings(mode, backend, xla, spe, "in-graph", window=True)
    if backend == "jax":
        if keras.distribution.distribution() is not None or conv:
            # Keras's own loop, its steps grouped: under a distribution (the window's jit
            # has no shardings), and for convolutions, which XLA ran far slower inside a
            # loop on this CPU (the native ResNet's lax.scan window, likewise)
            spe = _steps_per_execution(steps_per_epoch, 8, divisor=True)
            return Settings(mode, backend, steps_per_execution=spe)
        return Settings(mode, backend, steps_per_execution=spe, pipeline="in-graph", window=True)
    if backend == "torch":
        fused = contains_layer(model, (keras.layers.LSTM,))
        compile_step = _compile_pays(mode, steps_per_epoch * epochs, TORCH_COMPILE_MIN_STEPS)
        return Settings(
            mode,
            backend,
            None,
            spe,
            "torch",
            compile_step,
            window=True,
            fused_lstm=fused,
            channels_last=conv,
        )
    return Settings(mode, backend)


def fused_torch_lstm(keras_lstm: Callable) -> Callable:
    """Keras's torch ``lstm`` (``keras_lstm``) with torch's fused LSTM kernel on the CPU.

    Keras 3.15's torch backend runs ``torch._VF.lstm`` only on CUDA; on the CPU its
    ``LSTM`` layer loops over the time steps in Python (``_fallback_lstm``: one matmul
    and the gates per step, each its own autograd node). torch's own ``torch.lstm``
    runs the whole sequence, forward and backward, in one oneDNN kernel (measured here:
    an epoch of LSTM(128) over 40 steps, batch 64, 2.9x faster; the same predictions
    to 1e-7). Written here because Keras has no switch for it; the math is Keras's LSTM
    (gates i, f, c, o in Keras's order, which is torch's; Keras's one bias as torch's
    input bias, a zero recurrent bias), checked against Keras's path in
    ``tests/test_performance.py``. What the kernel does not cover goes to Keras's own:
    a mask, ``unroll``, time-major inputs, no bias, other activations, and tracing
    under ``torch.compile`` (inductor fails on the CPU kernel: ``mkldnn_rnn_layer``).
    """
    import torch

    def lstm(
        inputs,
        initial_state_h,
        initial_state_c,
        mask,
        kernel,
        recurrent_kernel,
        bias,
        activation,
        recurrent_activation,
        return_sequences=False,
        go_backwards=False,
        unroll=False,
        batch_first=True,
    ):
        if (
            mask is not None
            or unroll
            or not batch_first
            or bias is None
            or activation is not keras.activations.tanh
            or recurrent_activation is not keras.activations.sigmoid
            or torch.compiler.is_compiling()
        ):
            return keras_lstm(
                inputs,
                initial_state_h,
                initial_state_c,
                mask,
                kernel,
                recurrent_kernel,
                bias=bias,
                activation=activation,
                recurrent_activation=recurrent_activation,
                return_sequences=return_sequences,
                go_backwards=go_backwards,
                unroll=unroll,
                batch_first=batch_first,
            )
        kernel = keras.ops.convert_to_tensor(kernel)
        dtype = kernel.dtype
        inputs = keras.ops.convert_to_tensor(inputs).to(dtype)
        if go_backwards:
            inputs = torch.flip(inputs, dims=[1])
        bias = keras.ops.convert_to_tensor(bias)
        recurrent_kernel = keras.ops.convert_to_tensor(recurrent_kernel)
        state = tuple(
            keras.ops.convert_to_tensor(s).to(dtype).reshape(1, inputs.shape[0], -1)
            for s in (initial_state_h, initial_state_c)
        )
        params = [
            kernel.T.contiguous(),
            recurrent_kernel.T.contiguous(),
            bias,
            torch.zeros_like(bias),
        ]
        # (input, (h0, c0), params, has_biases, num_layers, dropout, train, bidirectional,
        # batch_first): the call torch.nn.LSTM makes
        outputs, h, c = torch.lstm(
            inputs, state, params, True, 1, 0.0, torch.is_grad_enabled(), False, True
        )
        last = outputs[:, -1]
        return last, outputs if return_sequences else last.unsqueeze(1), [h[0], c[0]]

    return lstm


def channels_last_torch_inputs(keras_transpose: Callable) -> Callable:
    """Keras's torch ``_transpose_spatial_inputs`` (``keras_transpose``) without its copies,
    for 2D and 3D images.

    Keras's layers hold images channels-last (NHWC); its torch convolutions, transposed
    convolutions and pooling hand them to torch channels-first (NCHW) through this
    function, which permutes the axes and copies the result to channels-first memory
    (``.contiguous()``); ``conv`` then copies it back to channels-last memory
    (``_maybe_convert_to_channels_last``), the layout in which oneDNN runs it. A
    channels-last tensor's permuted view already *is* an NCHW tensor in channels-last
    memory (``torch.channels_last``), which every torch op takes, so this returns that
    view (copying only an input that is not laid out channels-last). Measured here
    (2026-11-28, eager step, batch 64): conv_autoencoder 1,290-1,520 -> 1,920-2,110
    samples/s, toy_resnet 540-630 -> 790-880; most of the difference was those copies
    (``aten::copy_`` 420 ms of 2.9 s in conv_autoencoder's profile). Written here because
    Keras has no switch for it; the same ops run on the same values, in the memory layout
    its ``conv`` already chose, and ``tests/test_performance.py`` checks the outputs and
    gradients against Keras's function. 1D inputs (``Conv1D``) keep Keras's function.
    """
    import torch

    formats = {4: torch.channels_last, 5: torch.channels_last_3d}

    def transpose(inputs):
        memory_format = formats.get(inputs.ndim)
        if memory_format is None:
            return keras_transpose(inputs)
        channels_first = (0, inputs.ndim - 1, *range(1, inputs.ndim - 1))
        return torch.permute(inputs, channels_first).contiguous(memory_format=memory_format)

    return transpose


@functools.cache
def dynamo_traces_keras() -> bool:
    """Lets ``torch.compile`` keep two spots of Keras 3.15's torch backend inside the graph.

    Where dynamo breaks the graph inside Keras's ``name_scope`` or ``no_grad`` context
    managers, which it cannot split, it drops the whole frame and compiles each frame below
    it on its own. Two such breaks (found with ``TORCH_LOGS=graph_breaks``):

    - Keras's torch ``max`` and ``min`` ask ``isinstance(getattr(result, "values", None),
      torch.Tensor)``, which dynamo cannot trace: a model with ``GlobalMaxPooling2D``
      (conv_autoencoder, conv_encoder) compiled as 9 graphs, 69 s to its first
      jit-compiled ``predict`` here (measured 2026-11-28). Under
      ``torch._dynamo.allow_in_graph`` each call is one node of the graph, which
      AOTAutograd traces through (on fake tensors, where the test is harmless): 1 graph,
      33 s.
    - Keras's torch ``binary_crossentropy`` asks ``torch.backends.mps.is_available()``,
      which dynamo (torch 2.13) does not fold to a constant as it folds
      ``torch.cuda.is_available()`` and ``torch.xpu.is_available()``: ticket_router's
      compiled train step ran as 17 graphs. Folded like those (its answer cannot change
      within a process), with its targets in its outputs' structure (``prepare``): 3
      graphs, 5,300-6,050 samples/s against 3,100-4,100 (batch 64, one run each).

    - Keras's generic torch RNN loop (custom cells, ``SimpleRNN``, ``GRU`` and a masked
      ``LSTM`` on the CPU) runs ``while time < time_steps`` with ``time`` a tensor, a
      data-dependent branch at which dynamo drops the loop's frame to eager; and Keras's
      torch ``tree`` functions test ``x is not structure`` on tuples, which dynamo cannot
      trace. custom_rnn_classifier's jit-compiled ``predict`` ran as 10 graphs
      (17 breaks), and its compiled train step was no faster than the eager one. While
      dynamo traces, ``_traceable_rnn`` runs Keras's own unrolled loop instead (for at
      most ``TORCH_UNROLL_MAX_STEPS`` time steps) and ``_traceable_ordered_dict`` walks
      the tree without ``is``: 1 graph, the first ``predict`` 31 -> 15 s, and training
      (20 time steps, batch 64) 2,400 -> 16,900 samples/s compiled (eager about 2,100);
      mixed_api_rnn 3,700 eager, 2,100 -> 22,000 compiled (one run each, 2026-11-28).

    Eager calls are unchanged. It registers the functions with dynamo for the whole
    process, once; it returns whether it did (only under torch).
    """
    if keras.backend.backend() != "torch":
        return False
    import torch

    # private: Keras has no public handle on its backend's functions (`keras.ops.max`
    # wraps them), nor dynamo on its list of functions to fold; tests/test_performance.py
    # fails if any of them moves
    from keras.src.backend.torch import numpy as torch_numpy
    from torch._dynamo.variables import torch as dynamo_torch

    for reduction in (torch_numpy.max, torch_numpy.min):
        torch._dynamo.allow_in_graph(reduction)
    folded = getattr(dynamo_torch, "constant_fold_functions", None)
    if isinstance(folded, dict):  # a dict in torch 2.13; left alone where it is not
        mps_available = torch.backends.mps.is_available  # an lru_cache: dynamo sees what it wraps
        wrapped = getattr(mps_available, "__wrapped__", mps_available)
        folded.update(dict.fromkeys((mps_available, wrapped)))
    # private too: Keras's RNN layers call `keras.src.backend.rnn` and its torch tree
    # functions `torchtree_impl._dict_to_ordered_dict`, each looked up at every call; the
    # replacement walks torch's pytree registry (`torch.utils._pytree`); the tests of
    # tests/test_performance.py fail if any of them moves. Each is left alone where it is
    # not as in Keras 3.15, so that another Keras (keras-nightly) cannot break building a
    # zoo model or calling an RNN.
    from keras.src import backend as keras_backend

    keras_rnn = getattr(keras_backend, "rnn", None)
    if callable(keras_rnn):
        traceable = _traceable_rnn(keras_rnn)
        if _same_parameters(keras_rnn, traceable):
            keras_backend.rnn = traceable
    try:
        from keras.src.tree import torchtree_impl
    except ImportError:
        return True
    keras_ordered = getattr(torchtree_impl, "_dict_to_ordered_dict", None)
    if callable(keras_ordered):
        torchtree_impl._dict_to_ordered_dict = _traceable_ordered_dict(keras_ordered)
    return True


def _same_parameters(function: Callable, wrapper: Callable) -> bool:
    """Whether ``wrapper`` (a ``functools.wraps`` of ``function``) takes the parameters
    ``function`` takes, by name and in order."""
    import inspect

    try:
        theirs = inspect.signature(function, follow_wrapped=False).parameters
        ours = inspect.signature(wrapper, follow_wrapped=False).parameters
    except (TypeError, ValueError):
        return False
    return list(theirs) == list(ours)


#: While dynamo traces Keras's generic torch RNN loop, sequences of at most this many time
#: steps are unrolled (``dynamo_traces_keras``): the graph, and so the compile, grows with
#: the steps (measured here: custom_rnn_classifier's train step over 20 steps took about
#: 90 s to compile, against 55 s for the broken graph, which then trained no faster than
#: eager). Longer sequences keep Keras's loop, which dynamo runs eagerly.
TORCH_UNROLL_MAX_STEPS = 32


def _traceable_rnn(keras_rnn: Callable) -> Callable:
    """Keras's torch ``rnn`` that, while dynamo traces it, runs Keras's own unrolled loop
    (``unroll=True``, a Python loop over the time steps) in place of its ``while`` loop
    over a tensor counter, for sequences of a fixed length of at most
    ``TORCH_UNROLL_MAX_STEPS``. Keras's unrolled loop fails for ``go_backwards`` with a
    mask (it flips a tuple), so that case keeps the ``while`` loop too. Eager calls go to
    Keras's ``rnn`` as they are."""
    import torch

    @functools.wraps(keras_rnn)
    def rnn(
        step_function,
        inputs,
        initial_states,
        go_backwards=False,
        mask=None,
        constants=None,
        unroll=False,
        input_length=None,
        time_major=False,
        zero_output_for_mask=False,
        return_all_outputs=True,
    ):
        if torch.compiler.is_compiling() and not unroll:
            steps = keras.tree.flatten(inputs)[0].shape[0 if time_major else 1]
            unroll = (
                isinstance(steps, int)  # not a symbolic size (dynamic shapes)
                and steps <= TORCH_UNROLL_MAX_STEPS
                and not (go_backwards and mask is not None)
            )
        return keras_rnn(
            step_function,
            inputs,
            initial_states,
            go_backwards=go_backwards,
            mask=mask,
            constants=constants,
            unroll=unroll,
            input_length=input_length,
            time_major=time_major,
            zero_output_for_mask=zero_output_for_mask,
            return_all_outputs=return_all_outputs,
        )

    return rnn


def _traceable_ordered_dict(keras_ordered: Callable) -> Callable:
    """Keras's torch-tree ``_dict_to_ordered_dict`` (dicts sorted by key, at any depth
    under lists, tuples and other pytree nodes) that, while dynamo traces it, walks one
    level at a time through torch's pytree registry, where Keras flattens with
    ``is_leaf=lambda x: x is not structure``, which dynamo cannot trace for tuples. The
    same result: a node's children, each ordered, back in the same node; a leaf as it
    is. Dicts and defaultdicts (sorted, not walked into, as Keras does) and eager calls go
    to Keras's."""
    import torch
    from torch.utils import _pytree

    @functools.wraps(keras_ordered)
    def ordered(structure):
        if not torch.compiler.is_compiling() or type(structure) in (dict, defaultdict):
            return keras_ordered(structure)
        node = _pytree.SUPPORTED_NODES.get(_pytree._get_node_type(structure))
        if node is None:  # a leaf
            return structure
        children, context = node.flatten_fn(structure)
        return node.unflatten_fn([ordered(child) for child in children], context)

    return ordered


def _gather(tensors, idx):
    """The batch of rows ``idx`` (a torch int64 tensor) of every tensor in ``tensors``."""
    return keras.tree.map_structure(lambda a: a.index_select(0, idx), tensors)


def _one_graph_train_step(model, tensors) -> Callable:
    """``step(idx)``: Keras 3.15's torch ``train_step`` (``keras/src/backend/torch/
    trainer.py``) on the batch of rows ``idx`` of ``tensors``, written so that dynamo
    traces all of it (the gather, forward, backward, optimizer update and metrics) into
    one graph: the gradients come from ``torch.autograd.grad``, which dynamo traces under
    ``trace_autograd_ops``, where Keras's step calls ``zero_grad`` and ``loss.backward()``
    and reads ``.grad`` (a graph break; and with ``trace_autograd_ops`` Keras's own step
    raised inside the traced model call, measured with torch 2.13). The loss, the
    optimizer's math and the metrics are Keras's own calls, as in
    ``zoo.distribute.ddp_train_step``."""
    import torch

    training = {"training": True} if "training" in model.call_signature_parameters else {}

    def step(idx):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(_gather(tensors, idx))
        y_pred = model(x, **training)
        # private, as in Keras's own train_step: _compute_loss adds the layers' losses,
        # _loss_tracker is the "loss" metric (no public handle on either in Keras 3.15)
        loss = model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)
        model._loss_tracker.update_state(loss, sample_weight=idx.shape[0])
        loss = model.optimizer.scale_loss(loss)
        weights = model.trainable_weights
        # allow_unused: a weight the loss does not reach gets None, as its .grad stays None
        # in Keras's step (Keras's optimizer skips it, with a warning)
        gradients = torch.autograd.grad(loss, [v.value for v in weights], allow_unused=True)
        with torch.no_grad():
            model.optimizer.apply(list(gradients), weights)
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    return step


def _tensor_guards_only(entries) -> list[bool]:
    """dynamo's guards to keep on the one-graph step: the global state (grad mode and
    the like) and the step's own inputs' shapes and dtypes. Checking every guard dynamo
    sets on a Keras model (about 1,700 on mnist_mlp: its layers' attributes, Keras's
    modules) took longer than the step itself (measured: 41,000-44,000 -> 88,000-104,000
    samples/s without them). Dropping them is safe here because the compiled function
    is new for every fit (``_fresh``) and one graph (``fullgraph``: no frame of Keras's
    own gets compiled code with these guards), and what a callback may change during a
    fit (weight values, metric states, the learning rate: all tensors; a frozen layer:
    ``requires_grad``) is read from the kept tensor guards and inputs. Other Python
    changes to the model take effect at the next ``fit``, as with Keras's compiled train
    functions on TensorFlow and JAX."""
    return [
        e.guard_type in ("GLOBAL_STATE", "SHAPE_ENV")
        or (e.guard_type == "TENSOR_MATCH" and not e.is_global)
        for e in entries
    ]


def _fresh(function: Callable) -> Callable:
    """``function`` with a code object of its own: dynamo keeps its compiled code on the
    code object, which every closure made by the same ``def`` shares, so that with fewer
    guards a second model's step could run the first model's graph."""
    import types

    code = function.__code__.replace()
    return types.FunctionType(
        code, function.__globals__, function.__name__, function.__defaults__, function.__closure__
    )


def _compiled_torch_step(model, tensors, batch_size: int) -> Callable:
    """``step(idx)``: a train step on the batch of rows ``idx`` of ``tensors``, compiled
    with ``torch.compile``; the first that compiles of:

    1. the whole step as one graph (``_one_graph_train_step``), for models that keep
       Keras's ``train_step``; dynamo compiles it again when a weight's ``requires_grad``
       changes (a callback freezing a layer: Keras sets it), from the guards kept;
    2. Keras's own ``train_step``, which dynamo splits at ``loss.backward()``;
    3. the eager step, for good, with a warning.

    Batches of another size (an epoch's last, partial batch) run eagerly instead of
    compiling the step again for them."""
    import torch

    dynamo_traces_keras()
    kinds = ["keras"]
    if type(model).train_step is keras.Model.train_step:
        kinds.insert(0, "one-graph")
    state = {"kind": None, "compiled": None}
    # dynamo reads trace_autograd_ops when it traces (the first call, and again where a
    # kept guard fails), not when it runs a compiled graph. Each step sets it only if it
    # is not set: the torch window sets it once around its steps (`step.tracing`), since
    # `config.patch` around every call built a class each time (cProfile, mnist_mlp:
    # 0.04 s of an epoch's 0.44 s). Keras's own step is traced with it off: it raised
    # under it (_one_graph_train_step's docstring)
    config = torch._dynamo.config

    def traced_with(on: bool, compiled: Callable) -> Callable:
        """``compiled`` called with trace_autograd_ops ``on``, patched only if it is not."""

        def call(idx):
            if config.trace_autograd_ops == on:
                return compiled(idx)
            with config.patch(trace_autograd_ops=on):
                return compiled(idx)

        return call

    def compile_next():
        kind = kinds.pop(0) if kinds else "eager"
        state["kind"] = kind
        if kind == "one-graph":
            one_graph = torch.compile(
                _fresh(_one_graph_train_step(model, tensors)),
                fullgraph=True,
                options={"guard_filter_fn": _tensor_guards_only},
            )
            state["compiled"] = traced_with(True, one_graph)
        elif kind == "keras":
            keras_step = torch.compile(model.train_step)
            # off also inside a window that set it (above)
            state["compiled"] = traced_with(False, lambda idx: keras_step(_gather(tensors, idx)))
        else:
            state["compiled"] = None

    compile_next()

    def step(idx):
        if state["compiled"] is None or len(idx) != batch_size:
            return model.train_step(_gather(tensors, idx))
        try:
            return state["compiled"](idx)
        except Exception as e:  # compile failures come in many types; eager re-raises real errors
            compile_next()
            if state["kind"] == "eager":
                warnings.warn(
                    f"torch.compile could not compile the train step "
                    f"({check.error_summary(e)[:250]}); training goes on with the eager step",
                    stacklevel=2,
                )
            return step(idx)

    def tracing():
        """What the torch window runs its steps in: trace_autograd_ops set for the
        one-graph step."""
        if state["kind"] == "one-graph":
            return config.patch(trace_autograd_ops=True)
        return contextlib.nullcontext()

    step.state = state  # the kind of step running, for tests
    step.tracing = tracing
    return step


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


# -- the window train functions -----------------------------------------------------------------
# Keras's fit calls ``model.train_function`` once per ``steps_per_execution`` steps, between
# the callbacks' batch hooks. The zoo's train functions below run that whole window of steps
# in one compiled call (TensorFlow: one ``tf.function``, XLA-compiled for models without
# convolutions; JAX: one ``jit`` of a ``fori_loop``) gathering each batch inside it from the
# arrays already on the device, in the epoch's ``(seed, epoch)`` order; on PyTorch, a loop
# over the window's batches through the (compiled) step. Each calls Keras's own
# ``train_step``: same loss, same optimizer math, same metrics. Keras does not offer this:
# its TensorFlow loop is an uncompiled ``tf.while_loop`` around one XLA step fed by a
# ``tf.data`` iterator, its JAX loop a Python loop of jitted steps, and its torch trainer
# refuses ``steps_per_execution > 1``.


class _Window:
    """Which step of the epoch a window starts at: reset by ``set_epoch``, advanced by the
    train function (Keras calls it once per window, in order)."""

    def __init__(self, feed: _Batches, steps_per_execution: int):
        self.feed, self.spe = feed, steps_per_execution
        self.steps = len(feed)
        self.full = feed.size // feed.batch_size  # full batches; a partial one may follow
        self.next_step = 0

    def set_epoch(self, epoch):
        self.feed.set_epoch(epoch)
        self.next_step = 0

    def take(self):
        """``(begin, full_end, partial)``: this window's full batches are the steps
        ``begin`` to ``full_end``; ``partial``: it ends with the epoch's partial batch."""
        begin = self.next_step
        self.next_step = min(begin + self.spe, self.steps)
        return begin, min(self.next_step, self.full), self.next_step > self.full

    @property
    def partial_first(self):
        """The first sample of the epoch's partial last batch."""
        return self.full * self.feed.batch_size


def _local_order(feed: _Batches) -> np.ndarray:
    """The epoch's sample order as this process takes it: its share of every batch in turn
    (the whole order for one process)."""
    if feed.shard is None:
        return feed.order.astype("int64")
    return np.concatenate([feed.indices(i) for i in range(len(feed))]).astype("int64")


def _tf_window(model, window: _Window, jit_compile: bool):
    import tensorflow as tf

    feed = window.feed
    # this process's share of every batch, one after the other: with `shard`, each worker's
    # steps are those of one process over its shares (`bs` and `size` divided by the count)
    shares = feed.shard[1] if feed.shard else 1
    bs, size = feed.batch_size // shares, feed.size // shares
    strategy = tf.distribute.get_strategy()
    tensors = keras.tree.map_structure(tf.constant, (feed.x, feed.y))
    order = tf.Variable(_local_order(feed), trainable=False)

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

    # one_step runs first: Keras creates the optimizer's and metrics' variables on the
    # first traced step, which a tf.function allows at its first trace but not in a loop
    some_steps = tf.function(some_steps, jit_compile=jit_compile)
    one_step = tf.function(one_step, jit_compile=jit_compile, reduce_retracing=True)
    built = []

    def train_function(iterator):  # the window's batches come from `order`, not `iterator`
        begin, full_end, partial = window.take()
        logs = None
        if not built and begin < full_end:
            logs = one_step(tf.constant(begin * bs, tf.int64), bs)
            built.append(True)
            begin += 1
        if begin < full_end:
            logs = some_steps(tf.constant(begin, tf.int64), tf.constant(full_end - begin, tf.int64))
        if partial:
            first = window.partial_first // shares
            logs = one_step(tf.constant(first, tf.int64), size - first)
        return logs

    def set_epoch(epoch):
        window.set_epoch(epoch)
        order.assign(_local_order(feed))

    # What fit iterates: one element per step, which the window train function never reads
    # (it reads the arrays itself; Keras reads one only to build a model under a
    # tf.distribute strategy, where this window does not run): the first batch, repeated,
    # so that the elements still have a batch's structure and types. Not a `map` that
    # gathers each step's batch: Keras makes a new iterator at each epoch's start and end,
    # and instantiating a map's function made each take 5 ms against 0.4 ms (10 ms an
    # epoch: 5% of the MLP's 60,000-sample epoch on this CPU).
    first = keras.tree.map_structure(lambda a: a[:bs], tensors)
    data = tf.data.Dataset.from_tensors(first).repeat(window.steps)
    return train_function, set_epoch, data


def _jax_window(model, window: _Window):
    import jax
    import jax.numpy as jnp

    feed, bs = window.feed, window.feed.batch_size
    arrays = keras.tree.map_structure(jnp.asarray, (feed.x, feed.y))

    def batch(arrays, order, first, n):
        idx = jax.lax.dynamic_slice_in_dim(order, first, n)
        return keras.tree.map_structure(lambda a: jnp.take(a, idx, axis=0), arrays)

    def some_steps(state, arrays, order, begin, count):  # `count` >= 1 full batches
        logs, state = model.train_step(state, batch(arrays, order, begin * bs, bs))

        def body(i, carry):
            state, _ = carry
            logs, state = model.train_step(state, batch(arrays, order, (begin + i) * bs, bs))
            return state, logs

        state, logs = jax.lax.fori_loop(1, count, body, (state, logs))
        return logs, state

    def one_step(state, arrays, order, first, n):
        return model.train_step(state, batch(arrays, order, first, n))

    some_steps = jax.jit(some_steps, donate_argnums=0)
    one_step = jax.jit(one_step, donate_argnums=0, static_argnums=4)
    current = {"order": jnp.asarray(feed.order)}

    def train_function(state, iterator):  # the window's batches come from `order`
        begin, full_end, partial = window.take()
        logs, order = None, current["order"]
        if begin < full_end:
            logs, state = some_steps(state, arrays, order, begin, full_end - begin)
        if partial:
            first = window.partial_first
            logs, state = one_step(state, arrays, order, first, feed.size - first)
        return logs, state

    def set_epoch(epoch):
        window.set_epoch(epoch)
        current["order"] = jnp.asarray(feed.order)

    return train_function, set_epoch


def _torch_window(model, window: _Window, step: Callable):
    """On torch the window is a Python loop over its steps (torch has no compiled loop),
    each ``step(idx)`` gathering its batch from the torch tensors in memory, in the
    epoch's ``(seed, epoch)`` order. What it saves is Keras's per-step callbacks and
    iterator (about 0.15-0.25 ms a step, measured: its PyDataset adapter, conversion and
    DataLoader); ``fit`` iterates ``_steps_only`` instead. ``step`` is the train step,
    compiled or not."""
    import torch

    feed = window.feed
    tracing = getattr(step, "tracing", contextlib.nullcontext)

    def train_function(data):  # the window's batches come from the order, not `data`
        begin, _, _ = window.take()
        with tracing():
            for i in range(begin, window.next_step):
                logs = step(torch.from_numpy(feed.indices(i).astype("int64")))
        return logs

    def test_function(data):
        with torch.no_grad():
            for one in data:
                logs = model.test_step(one)
        return logs

    return train_function, test_function


def _steps_only(feed: _Batches):
    """What ``fit`` iterates on the torch window: one item per step, each the epoch's
    first batch (Keras reads the first to build the model's loss and metrics; the
    window gathers the real batches itself), through a torch ``DataLoader``, which
    Keras's torch trainer iterates as it is (about 10 us a step, against 26 us for a
    PyDataset of the same item, measured)."""
    import torch

    first = feed[0]

    class Steps(torch.utils.data.Dataset):
        def __len__(self):
            return len(feed)

        def __getitem__(self, i):
            return first

    return torch.utils.data.DataLoader(Steps(), batch_size=None)


def _targets_like_outputs(model, y):
    """Targets given as a dict by output name, as a list in the order of the model's outputs
    where the model returns a list (a functional model built with a list of outputs, such as
    ticket_router). Keras's loss makes the same list on every step, after its structure
    check fails with an exception (``CompileLoss.call``); under ``torch.compile`` that
    exception broke the train step's graph, so the torch feed makes it once instead."""
    names = list(getattr(model, "output_names", None) or ())
    if not isinstance(y, dict) or set(y) != set(names):
        return y
    try:
        outputs = model.output
    except (AttributeError, ValueError):  # a model never called on a symbolic input
        return y
    return [y[name] for name in names] if isinstance(outputs, (list, tuple)) else y


def prepare(model, x, y, batch_size: int, seed: int, settings: Settings, shard=None):
    """Readies a compiled ``model`` to ``fit`` with ``settings``; returns ``(data,
    callbacks, done)``: what to pass to ``fit``, the callbacks that must come first in
    ``fit``'s callbacks (they set each epoch's batch order) and the function that undoes
    what ``fit`` must not keep (call it after ``fit``, even when it fails).
    ``shard=(index, count)`` keeps this process's share of every batch (multi-process
    data parallelism). The model's compile config (what ``model.save`` writes) is left
    as it was compiled."""
    if settings.pipeline == "in-graph" and shard is not None and settings.backend == "jax":
        raise ValueError(
            "shard is for Keras's own train loop or the torch and TensorFlow windows, not JAX's "
            "in-graph window: train with fast='off' or under a keras.distribution"
        )
    if settings.pipeline == "torch":
        y = _targets_like_outputs(model, y)
    feed = _Batches(x, y, batch_size, seed, settings.pipeline == "torch", shard)
    # Public Trainer attributes (no underscore); Keras's own compile() resets the same three
    # functions to None, so that the next fit makes them again with these settings.
    if settings.jit_compile is not None:
        model.jit_compile = settings.jit_compile
    model.steps_per_execution = settings.steps_per_execution
    model.train_function = model.test_function = model.predict_function = None
    data, set_epoch = feed, feed.set_epoch

    swaps = contextlib.ExitStack()  # what `done` puts back: Keras's swapped torch functions

    def done():
        swaps.close()
        if settings.window:  # it holds the training arrays: let them go with it
            model.train_function = None
        if settings.backend == "torch":  # Keras's torch trainer refuses steps_per_execution > 1
            model.steps_per_execution = 1
            model.train_function = model.test_function = model.predict_function = None

    if not settings.window:
        return data, [_Hooks(set_epoch)], done
    window = _Window(feed, settings.steps_per_execution)
    if settings.backend == "tensorflow":
        model.train_function, set_epoch, data = _tf_window(model, window, settings.jit_compile)
        if distribute.tf_multi_worker():
            data = feed  # what _multi_worker_fit reads: the steps and this worker's share
    elif settings.backend == "jax":
        model.train_function, set_epoch = _jax_window(model, window)
    else:
        tensors = (feed.x, feed.y)
        if settings.ddp:
            ddp_step = distribute.ddp_train_step(model)
            step = lambda idx: ddp_step(_gather(tensors, idx))  # noqa: E731
        elif settings.torch_compile:
            step = _compiled_torch_step(model, tensors, len(feed.indices(0)))
        else:
            step = lambda idx: model.train_step(_gather(tensors, idx))  # noqa: E731
        model.train_function, model.test_function = _torch_window(model, window, step)
        data, set_epoch = _steps_only(feed), window.set_epoch
        # Keras reads steps_per_execution when it makes an epoch iterator: fit's own is
        # made by now, and evaluation's (made later) then runs batch by batch, since its
        # batches rarely divide into the training windows (Keras warned "Your input ran
        # out of data" at each validation)
        hooks = [_Hooks(set_epoch, at_train_begin=lambda: _one_step_evaluation(model))]
        if settings.ddp:
            hooks.append(distribute.SumMetricsOverProcesses())
        # last, so that nothing can fail between them and `done`
        swaps.enter_context(_torch_swaps(settings.fused_lstm, settings.channels_last))
        return data, hooks, done
    return data, [_Hooks(set_epoch)], done


@contextlib.contextmanager
def _torch_swaps(fused_lstm: bool, channels_last: bool):
    """Keras's torch ``lstm`` swapped for ``fused_torch_lstm`` and its
    ``_transpose_spatial_inputs`` for ``channels_last_torch_inputs`` (each if asked),
    Keras's own put back on exit. Keras's LSTM layer calls ``keras.src.backend.lstm``,
    and its torch convolutions and pooling ``_transpose_spatial_inputs`` in
    ``keras.src.backend.torch.nn`` (private: Keras has no public switch;
    tests/test_performance.py fails if they stop calling them there)."""
    from keras.src import backend as keras_backend

    swaps = []
    if fused_lstm:
        swaps.append((keras_backend, "lstm", fused_torch_lstm))
    if channels_last:
        from keras.src.backend.torch import nn as torch_nn

        swaps.append((torch_nn, "_transpose_spatial_inputs", channels_last_torch_inputs))
    kept = []  # (module, name, Keras's function)
    try:
        for module, name, replacement in swaps:
            keras_function = getattr(module, name)
            kept.append((module, name, keras_function))
            setattr(module, name, replacement(keras_function))
        yield
    finally:
        for module, name, keras_function in reversed(kept):
            setattr(module, name, keras_function)


def fit_function(model, settings: Settings) -> Callable:
    """What runs the epochs: Keras's ``model.fit``, or under a multi-worker TensorFlow
    strategy the zoo's loop with ``fit``'s arguments (``_multi_worker_fit``)."""
    if settings.backend == "tensorflow" and distribute.tf_multi_worker():
        return functools.partial(_multi_worker_fit, model)
    return model.fit


def _multi_worker_fit(
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
        val = _Batches(*validation_data, validation_batch_size, 0, shard=data.shard)
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


def _one_step_evaluation(model):
    model.steps_per_execution = 1


class _Hooks(keras.callbacks.Callback):
    """Sets each epoch's batch order at its start (``set_epoch``), and runs
    ``at_train_begin`` once ``fit``'s epoch iterator is made."""

    def __init__(self, set_epoch, at_train_begin=None):
        super().__init__()
        self.set_epoch, self.at_train_begin = set_epoch, at_train_begin

    def on_train_begin(self, logs=None):
        if self.at_train_begin is not None:
            self.at_train_begin()

    def on_epoch_begin(self, epoch, logs=None):
        self.set_epoch(epoch)


# -- predict ------------------------------------------------------------------------------------
def _batches(x, batch_size: int):
    """``x`` (a structure of arrays or tensors, all with the same number of rows) in
    batches of ``batch_size`` rows, the last one padded to a full batch by repeating its
    last row (so that a compiled forward pass runs one shape: no second compile for the
    last batch); yields ``(batch, rows)``, ``rows`` the batch's real rows."""
    n = len(keras.tree.flatten(x)[0])
    for first in range(0, n, batch_size):
        rows = min(batch_size, n - first)
        if rows == batch_size:  # a view
            yield _rows(x, slice(first, first + rows)), rows
        else:
            yield _rows(x, np.minimum(np.arange(first, first + batch_size), n - 1)), rows


def _rows(x, selection):
    return keras.tree.map_structure(lambda a: a[selection], x)


def _on_host(outputs):
    """One batch's outputs as numpy arrays, made as soon as the batch is done, so that on
    an accelerator the outputs gather in host memory, as Keras's ``predict`` gathers
    them."""
    return keras.tree.map_structure(keras.ops.convert_to_numpy, outputs)


def _joined(outputs: list, rows: list[int]):
    """The batches' outputs (``_on_host``), each cut to its real rows, joined along the
    batch axis, in the model's output structure (what Keras's ``predict`` returns)."""
    return keras.tree.map_structure(
        lambda *o: np.concatenate([a[:r] for a, r in zip(o, rows, strict=True)]), *outputs
    )


def _tf_forward(model, conv: bool) -> Callable:
    import tensorflow as tf

    # XLA unless the model has convolutions, as for training (measured here, 4,096
    # samples, batch 256: the MLP's XLA forward 314,000 samples/s against Keras's
    # predict's 65,000, its per-batch iterator and callbacks being most of the difference;
    # toy_resnet without XLA 3,500 against 3,100)
    return tf.function(lambda batch: model(batch, training=False), jit_compile=not conv)


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


def predict(model, x, batch_size: int = 32, fast: str = "auto"):
    """``model.predict(x, batch_size=batch_size, verbose=0)``'s outputs (numpy arrays in
    the model's output structure), computed without Keras's per-batch data iterator and
    callbacks: a loop over batches of ``x`` (numpy arrays) through the model's forward
    pass, compiled per backend (tests/test_performance.py checks the outputs against
    Keras's ``predict``). ``fast``: ``"off"`` is Keras's ``predict``.

    - TensorFlow: a ``tf.function`` per batch, XLA-compiled unless the model has
      convolutions.
    - JAX: Keras's own ``predict``, which is already a jitted step per batch (measured
      here: as fast as a loop of jitted forward passes, and faster than the native
      reference's).
    - PyTorch: the forward pass under ``no_grad``, with the training path's
      ``fused_torch_lstm`` and ``channels_last_torch_inputs``; with ``fast="on"`` compiled
      by ``torch.compile`` (as one graph; eager, with a warning, where that fails),
      except for models with an ``LSTM``, whose fused kernel runs only eagerly.
      ``"auto"`` stays eager: compiling costs seconds, which a prediction rarely earns
      back (mnist_mlp: about 1.7 us a sample saved).

    The last, partial batch is padded to a full one (its extra rows dropped), so that
    a compiled forward pass compiles once; Keras's ``predict`` compiles again for it.
    Inputs other than numpy arrays (a ``tf.data.Dataset``, a generator, tensors), no
    samples, and a call under a ``tf.distribute`` strategy go to Keras's ``predict``."""
    check.one_of("fast", fast, MODES)
    batch_size = check.positive_int("batch_size", batch_size)
    backend = keras.backend.backend()
    leaves = keras.tree.flatten(x)
    arrays = bool(leaves) and all(isinstance(a, np.ndarray) for a in leaves)
    if fast == "off" or backend not in ("tensorflow", "torch") or not arrays or not len(leaves[0]):
        return model.predict(x, batch_size=batch_size, verbose=0)
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy():  # Keras's predict spreads the batches over the devices
            return model.predict(x, batch_size=batch_size, verbose=0)
    conv = contains_layer(model, _CONV_LAYERS)
    lstm = contains_layer(model, (keras.layers.LSTM,))
    # made once per model and mode, as Keras keeps its `predict_function` (a compile of
    # the forward pass each call cost more than the prediction: mnist_mlp on TensorFlow
    # 66,000 samples/s against 314,000)
    cache = model.__dict__.setdefault("_zoo_forward", {})
    key = "tensorflow" if backend == "tensorflow" else f"torch-{fast}"
    if key not in cache:
        tf_backend = backend == "tensorflow"
        # (torch: not compiled for a model with an LSTM, whose fused kernel runs eagerly
        # only: ticket_router 28,000 samples/s eager, 25,000 compiled)
        compiled = fast == "on" and not lstm
        cache[key] = _tf_forward(model, conv) if tf_backend else _torch_forward(model, compiled)
    forward = cache[key]
    context = contextlib.ExitStack()
    if backend == "torch":
        import torch

        # host tensors sliced into batches, as the native loop slices its tensors
        x = keras.tree.map_structure(_torch_host, x)
        context.enter_context(_torch_swaps(fused_lstm=lstm, channels_last=conv))
        context.enter_context(torch.no_grad())
    outputs, rows = [], []
    with context:
        for batch, r in _batches(x, batch_size):
            outputs.append(_on_host(forward(batch)))
            rows.append(r)
    return _joined(outputs, rows)
