"""Sample inputs for any zoo model, and its outputs as numpy arrays.

``sample_inputs(model_or_name, batch_size)`` gives valid example inputs: one array
for a one-input model, a dict by input name otherwise. Float inputs are standard
normal and integer inputs 0 or 1 (valid indices for any embedding), unless the
model's registration gives its own sampler (``register(..., sample_inputs=f)``,
e.g. token ids below the vocabulary size). The harness, export, the docs' examples
and the command line all use it.

Example:
    >>> import zoo
    >>> from zoo.inputs import predict_numpy, sample_inputs
    >>> model = zoo.create("ticket_router")
    >>> sorted(sample_inputs(model, 2))
    ['body', 'tags', 'title']
    >>> [o.shape for o in predict_numpy(model, sample_inputs(model, 2))]
    [(2, 1), (2, 4)]
"""

from __future__ import annotations

import keras
import numpy as np

from zoo.registry import ModelSpec, get_spec
from zoo.zoo_model import identity

__all__ = ["DEFAULT_SEQ_LEN", "predict_numpy", "sample_inputs"]

#: The length used for inputs with a variable (None) axis, e.g. token sequences.
DEFAULT_SEQ_LEN = 7


def _spec_of(model: keras.Model) -> ModelSpec | None:
    stamp = identity(model)
    if stamp is None:
        return None
    try:
        return get_spec(stamp["name"])
    except ValueError:  # a model saved by a zoo that had a name this one lacks
        return None


def sample_inputs(model: keras.Model | str, batch_size: int = 3, seed: int = 0):
    """Valid example inputs for ``model`` (a model, or a registered name).

    Args:
        model: a built model (any functional Keras model), or a registered name
            (then its default config is built to read the input specs).
        batch_size: the batch size.
        seed: seeds the values.

    Returns:
        One array for a one-input model, else a dict from input name to array.
    """
    if isinstance(model, str):
        from zoo.factory import create

        model = create(model)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
        raise ValueError(f"batch_size must be an int >= 0, got {batch_size!r}")
    rng = np.random.default_rng(seed)
    spec = _spec_of(model)
    if spec is not None and spec.sample_inputs is not None:
        return spec.sample_inputs(model, batch_size, rng)
    arrays = {}
    for tensor in model.inputs:
        shape = (batch_size, *(DEFAULT_SEQ_LEN if d is None else d for d in tensor.shape[1:]))
        dtype = keras.backend.standardize_dtype(tensor.dtype)
        if "int" in dtype:
            arrays[tensor.name] = rng.integers(0, 2, size=shape).astype(dtype)
        elif dtype == "bool":
            arrays[tensor.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            arrays[tensor.name] = rng.standard_normal(shape).astype(dtype)
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    return arrays


def predict_numpy(model: keras.Model, inputs) -> list[np.ndarray]:
    """Calls ``model`` on ``inputs`` in inference mode and returns its outputs as a flat
    list of numpy arrays (a direct call, not ``predict``: no batching, no compiling)."""
    outputs = model(inputs, training=False)
    return [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(outputs)]
