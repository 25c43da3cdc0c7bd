"""``zoo.predict``: Keras's ``predict``'s outputs from a loop of compiled forward passes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import NamedTuple

import keras
import numpy as np

import zoo.performance.jax as jax_path
import zoo.performance.tensorflow as tf_path
import zoo.performance.torch.predict as torch_path
from zoo import _validation as check
from zoo.performance.settings import MODES, has_convolutions, has_lstm


class _Forward(NamedTuple):
    """A model's forward pass for ``predict`` in one mode, and what it was made for."""

    run: Callable
    conv: bool
    lstm: bool
    compiled: bool


def _batches(x, batch_size: int):
    """``x`` (a structure of arrays or tensors, all with the same number of rows) in
    batches of ``batch_size`` rows, the last one padded to a full batch by repeating its
    last row (so that a compiled forward pass runs one shape: no second compile for the
    last batch); yields ``(batch, rows)``, ``rows`` the batch's real rows."""
    n = len(keras.tree.flatten(x)[0])
    full = n - n % batch_size
    one_tensor = hasattr(x, "split") and not isinstance(x, (dict, list, tuple))
    if one_tensor and full:  # (`split` of no rows would give one empty batch)
        # one torch tensor's full batches as views from one call (3 us a batch for a slice each)
        for batch in x[:full].split(batch_size):
            yield batch, batch_size
    else:
        for first in range(0, full, batch_size):  # views
            yield _rows(x, slice(first, first + batch_size)), batch_size
    if full < n:
        yield _rows(x, np.minimum(np.arange(full, full + batch_size), n - 1)), n - full


def _rows(x, selection):
    if not isinstance(x, (dict, list, tuple)):  # one input: no walk over a structure
        return x[selection]
    return keras.tree.map_structure(lambda a: a[selection], x)


def _on_host(outputs):
    """One batch's outputs as numpy arrays, made as soon as the batch is done, so that on
    an accelerator the outputs gather in host memory, as Keras's ``predict`` gathers
    them."""
    return keras.tree.map_structure(keras.ops.convert_to_numpy, outputs)


def _joined(outputs: list, rows: list[int]):
    """The batches' outputs (``_on_host``), each cut to its real rows, joined along the
    batch axis, in the model's output structure (what Keras's ``predict`` returns)."""

    def join(*o):
        return np.concatenate([a[:r] for a, r in zip(o, rows, strict=True)])

    if isinstance(outputs[0], np.ndarray):  # one output: no walk over a structure
        return join(*outputs)
    return keras.tree.map_structure(join, *outputs)


def predict(model, x, batch_size: int = 32, fast: str = "auto"):
    """``model.predict(x, batch_size=batch_size, verbose=0)``'s outputs (numpy arrays in
    the model's output structure), computed without Keras's per-batch data iterator and
    callbacks: a loop over batches of ``x`` (numpy arrays) through the model's forward
    pass, compiled per backend (tests/test_performance.py checks the outputs against
    Keras's ``predict``). ``fast``: ``"off"`` is Keras's ``predict``.

    - TensorFlow: a ``tf.function`` per batch, XLA-compiled unless the model has
      convolutions.
    - JAX: Keras's own ``predict``, already a jitted step per batch, with JAX's
      persistent compile cache (``jax.compile_cache``).
    - PyTorch: the forward pass under ``no_grad``, with the training path's swaps of
      Keras's torch functions; with ``fast="on"`` compiled by ``torch.compile`` as one
      graph (eager, with a warning, where that fails), except for models with an
      ``LSTM``, whose fused kernel runs only eagerly. ``"auto"`` records the forward
      pass once per input shape and replays it (``torch.predict.Recorded``): Keras's
      operations without Keras's Python per layer, and no compile to pay for.

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
        cached = backend == "jax" and fast != "off"
        with jax_path.compile_cache() if cached else contextlib.nullcontext():
            return model.predict(x, batch_size=batch_size, verbose=0)
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy():  # Keras's predict spreads the batches over the devices
            return model.predict(x, batch_size=batch_size, verbose=0)
    # made once per model and mode, as Keras keeps its `predict_function` (the layers
    # walked once too: a model's layers are fixed once it is built)
    cache = model.__dict__.setdefault("_zoo_forward", {})
    key = "tensorflow" if backend == "tensorflow" else f"torch-{fast}"
    if key not in cache:
        conv, lstm = has_convolutions(model), has_lstm(model)
        compiled = backend == "torch" and fast == "on" and not lstm  # the fused LSTM: eager
        tf_backend = backend == "tensorflow"
        run = tf_path.forward(model, conv) if tf_backend else torch_path.forward(model, compiled)
        cache[key] = _Forward(run, conv, lstm, compiled)
    forward, conv, lstm, compiled = cache[key]
    context, on_host = contextlib.nullcontext(), _on_host
    if backend == "torch":
        on_host = torch_path.on_host
        # host tensors sliced into batches, as the native loop slices its tensors
        x = keras.tree.map_structure(torch_path.host, x)
        forward = torch_path.on_device(forward)
        context = torch_path.predicting(conv, lstm, compiled)
    outputs, rows = [], []
    with context:
        for batch, r in _batches(x, batch_size):
            outputs.append(on_host(forward(batch)))
            rows.append(r)
    return _joined(outputs, rows)
