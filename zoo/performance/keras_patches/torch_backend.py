"""The door to Keras's torch backend: its functions swapped while a fit or predict runs
(see the package's docstring)."""

from __future__ import annotations

import contextlib
import functools
from collections import defaultdict
from collections.abc import Callable, Iterator

import keras

#: While dynamo traces Keras's generic torch RNN loop, sequences of at most this many time
#: steps are unrolled (``traceable_rnn``): the graph, and so the compile, grows with the
#: steps; longer sequences keep Keras's loop, which dynamo runs eagerly.
TORCH_UNROLL_MAX_STEPS = 32


# -- Keras's torch backend, swapped while a fit or predict runs ---------------------------
def fused_torch_lstm(keras_lstm: Callable) -> Callable:
    """Keras's torch ``lstm`` (``keras_lstm``) with torch's fused LSTM kernel on the CPU,
    where Keras 3.15 loops over the time steps in Python (it runs the kernel on CUDA
    only). The math is Keras's LSTM (gates i, f, c, o, Keras's one bias as torch's input
    bias); what the kernel does not cover goes to Keras's own: a mask, ``unroll``,
    time-major inputs, no bias, other activations, and tracing under ``torch.compile``.
    In Keras's shape pass (``compute_output_spec``, on the ``meta`` device) it gives the
    outputs' shapes without running the kernel. Written here because Keras has no switch
    for it."""
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
                inputs, initial_state_h, initial_state_c, mask, kernel, recurrent_kernel,
                bias=bias, activation=activation, recurrent_activation=recurrent_activation,
                return_sequences=return_sequences, go_backwards=go_backwards, unroll=unroll,
                batch_first=batch_first,
            )  # fmt: skip
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
        if inputs.device.type == "meta":  # Keras's shape pass (compute_output_spec): the
            # shapes alone; torch's meta LSTM runs its decomposition step by step (0.28 s
            # of ticket_router's fit on this CPU)
            units = recurrent_kernel.shape[0]
            outputs = inputs.new_empty((*inputs.shape[:2], units))
            h = c = inputs.new_empty((1, inputs.shape[0], units))
        else:
            # (input, (h0, c0), params, has_biases, num_layers, dropout, train,
            # bidirectional, batch_first): the call torch.nn.LSTM makes
            outputs, h, c = torch.lstm(
                inputs, state, params, True, 1, 0.0, torch.is_grad_enabled(), False, True
            )
        last = outputs[:, -1]
        return last, outputs if return_sequences else last.unsqueeze(1), [h[0], c[0]]

    return lstm


def channels_last_torch_inputs(keras_transpose: Callable) -> Callable:
    """Keras's torch ``_transpose_spatial_inputs`` (``keras_transpose``) without its copies,
    for 2D and 3D images: a channels-last tensor's permuted view already is an NCHW
    tensor in channels-last memory, the layout in which Keras's ``conv`` runs it (Keras
    copies it to channels-first memory and back). The same ops on the same values; 1D
    inputs keep Keras's function. Written here because Keras has no switch for it."""
    import torch

    formats = {4: torch.channels_last, 5: torch.channels_last_3d}

    def transpose(inputs):
        memory_format = formats.get(inputs.ndim)
        if memory_format is None:
            return keras_transpose(inputs)
        channels_first = (0, inputs.ndim - 1, *range(1, inputs.ndim - 1))
        return torch.permute(inputs, channels_first).contiguous(memory_format=memory_format)

    return transpose


def keras_device():
    """The torch device Keras's torch backend puts new tensors on now (its default, or
    a ``keras.device`` scope's), for ``torch.predict``: one lookup where the public way,
    converting an array, costs 20 us. Private: ``keras.src.backend.torch.core.get_device``
    (Keras 3.15); public: none (``keras.ops.convert_to_tensor(...).device``)."""
    import torch

    try:
        from keras.src.backend.torch.core import get_device
    except ImportError:  # another Keras: the public way
        import numpy as np

        return keras.ops.convert_to_tensor(np.zeros((), "float32")).device
    return torch.device(get_device())


def same_parameters(function: Callable, wrapper: Callable) -> bool:
    """Whether ``wrapper`` (a replacement of ``function``) takes the parameters
    ``function`` takes, by name and in order: a patch written for Keras 3.15's function
    is applied only to a function of the same parameters."""
    import inspect

    try:
        theirs = inspect.signature(function, follow_wrapped=False).parameters
        ours = inspect.signature(wrapper, follow_wrapped=False).parameters
    except (TypeError, ValueError):
        return False
    return list(theirs) == list(ours)


def traceable_rnn(keras_rnn: Callable) -> Callable:
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


def traceable_ordered_dict(keras_ordered: Callable) -> Callable:
    """Keras's torch-tree ``_dict_to_ordered_dict`` (dicts sorted by key, at any depth
    under lists, tuples and other pytree nodes) that, while dynamo traces it, walks one
    level at a time through torch's pytree registry, where Keras flattens with
    ``is_leaf=lambda x: x is not structure``, which dynamo cannot trace for tuples. The
    same result: a node's children, each ordered, back in the same node; a leaf as it
    is. Dicts and defaultdicts (sorted, not walked into, as Keras does) and eager calls go
    to Keras's."""
    import torch

    # torch 2.13's one-level pytree lookup; public replacement: none (torch.utils.pytree
    # flattens whole trees only)
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


def _traceable_reductions():
    """Keras's torch ``max`` and ``min`` (``keras.src.backend.torch.numpy``, Keras 3.15:
    they ask ``isinstance(getattr(result, "values", None), torch.Tensor)``, which dynamo
    cannot trace) kept whole as graph nodes, and ``torch.backends.mps.is_available``
    folded to a constant as dynamo folds ``cuda.is_available`` (Keras's torch
    ``binary_crossentropy`` asks it). Returns what to undo. Private: dynamo's
    ``trace_rules._allowed_callable_ids`` and ``variables.torch.constant_fold_functions``
    (torch 2.13); public replacement: ``torch.compiler.allow_in_graph`` to add (used),
    none to remove or to fold."""
    import torch

    try:
        from keras.src.backend.torch import numpy as torch_numpy  # keras.src...ops in 3.16
        from torch._dynamo import trace_rules
        from torch._dynamo.variables import torch as dynamo_torch
    except ImportError:  # another Keras or torch: the plain path
        return []
    undo = []
    allowed = getattr(trace_rules, "_allowed_callable_ids", None)
    for reduction in (torch_numpy.max, torch_numpy.min):
        if allowed is not None and id(reduction) not in allowed:
            torch.compiler.allow_in_graph(reduction)
            undo.append(lambda r=reduction: allowed.remove(id(r)))
    folded = getattr(dynamo_torch, "constant_fold_functions", None)
    if isinstance(folded, dict):
        mps_available = torch.backends.mps.is_available  # an lru_cache: dynamo sees what it wraps
        wrapped = getattr(mps_available, "__wrapped__", mps_available)
        for fn in {mps_available, wrapped} - set(folded):
            folded[fn] = None
            undo.append(lambda fn=fn: folded.pop(fn, None))
    return undo


def _swaps(traceable: bool, fused_lstm: bool, channels_last: bool) -> list[tuple]:
    """``(module, name, replacement-maker)`` for each asked swap of Keras 3.15's torch
    functions (private modules: Keras has no public switch for any of them):
    ``keras.src.backend.lstm`` and ``.rnn`` (what its LSTM and RNN layers call at every
    call), ``keras.src.backend.torch.nn._transpose_spatial_inputs`` (what its torch
    convolutions and pooling call) and ``keras.src.tree.torchtree_impl.
    _dict_to_ordered_dict`` (its torch tree functions)."""
    import importlib

    def module(name):
        try:
            return importlib.import_module(name)
        except ImportError:  # another Keras: that swap is skipped
            return None

    keras_backend = module("keras.src.backend")
    wanted = [
        (traceable, keras_backend, "rnn", traceable_rnn),
        (
            traceable,
            module("keras.src.tree.torchtree_impl"),
            "_dict_to_ordered_dict",
            traceable_ordered_dict,
        ),
        (fused_lstm, keras_backend, "lstm", fused_torch_lstm),
        # Keras 3.16 (keras-nightly) moved it to keras.src.backend.torch.ops.nn and reads
        # channels-last images in place itself: the swap is skipped there
        (
            channels_last,
            module("keras.src.backend.torch.nn"),
            "_transpose_spatial_inputs",
            channels_last_torch_inputs,
        ),
    ]
    return [(m, name, make) for asked, m, name, make in wanted if asked and m is not None]


@contextlib.contextmanager
def patched(
    *, traceable: bool = False, fused_lstm: bool = False, channels_last: bool = False
) -> Iterator[None]:
    """Keras's torch backend with the zoo's replacements for the block, Keras's own put
    back after it (only under torch; elsewhere nothing changes):

    - ``traceable``: ``torch.compile`` keeps zoo models in one graph (Keras's ``max`` and
      ``min`` as graph nodes, ``mps.is_available`` folded, Keras's RNN loop unrolled and
      its tree functions walked without ``is`` while dynamo traces; eager calls unchanged);
    - ``fused_lstm``: ``fused_torch_lstm``;
    - ``channels_last``: ``channels_last_torch_inputs``.

    A function that is not there, or not of Keras 3.15's parameters, is left alone."""
    if keras.backend.backend() != "torch":
        yield
        return
    undo, kept = [], []  # what to undo; (module, name, Keras's function)
    try:
        if traceable:
            undo += _traceable_reductions()
        for module, name, make in _swaps(traceable, fused_lstm, channels_last):
            keras_function = getattr(module, name, None)
            if not callable(keras_function):
                continue
            replacement = make(keras_function)
            if not same_parameters(keras_function, replacement):  # not as in Keras 3.15
                continue
            kept.append((module, name, keras_function))
            setattr(module, name, replacement)
        yield
    finally:
        for module, name, keras_function in reversed(kept):
            setattr(module, name, keras_function)
        for step in reversed(undo):
            step()
