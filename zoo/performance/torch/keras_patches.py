"""The one door to Keras's and torch's internals: every use of ``keras.src``, of
``torch._dynamo`` and of underscore APIs lives here, each applied for a fit or a predict
and restored after it."""

from __future__ import annotations

import contextlib
import functools
from collections import defaultdict
from collections.abc import Callable

import keras


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
