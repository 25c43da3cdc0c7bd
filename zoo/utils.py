"""Helpers that work on any zoo model: input checks and feature extraction."""

from __future__ import annotations

import keras
import numpy as np

from zoo import _validation as check


def check_inputs(model: keras.Model, inputs) -> None:
    """Checks ``inputs`` against ``model.inputs`` by name, rank, fixed sizes and
    dtype kind; raises a one-line ``ValueError`` naming the input.

    Keras itself names the input for a missing key or a wrong shape; this also
    catches a float array given to an int input (which Keras would silently cast).

    Example:
        >>> import numpy as np, zoo
        >>> from zoo import check_inputs
        >>> model = zoo.create("ticket_router")
        >>> check_inputs(model, {"title": np.zeros((2, 5)), "body": np.zeros((2, 5), "int32"),
        ...                      "tags": np.zeros((2, 12))})
        Traceback (most recent call last):
        ...
        ValueError: input 'title' must have an integer dtype (int32), got float64
    """
    expected = {t.name: t for t in model.inputs}
    if not isinstance(inputs, dict):
        if len(expected) == 1:
            inputs = {next(iter(expected)): inputs}
        else:
            raise ValueError(
                f"inputs must be a dict with keys {sorted(expected)}, got {type(inputs).__name__}"
            )
    missing, unknown = sorted(set(expected) - set(inputs)), sorted(set(inputs) - set(expected))
    if missing or unknown:
        raise ValueError(
            f"inputs must have keys {sorted(expected)}; missing {missing}, unexpected {unknown}"
        )
    for key, tensor in expected.items():
        value = np.asarray(inputs[key]) if not hasattr(inputs[key], "shape") else inputs[key]
        want = tuple(tensor.shape)
        got = tuple(value.shape)
        if len(got) != len(want) or any(
            w is not None and w != g for w, g in zip(want, got, strict=True)
        ):
            shown = ", ".join("any" if w is None else str(w) for w in want)
            raise ValueError(f"input {key!r} must have shape ({shown}), got {got}")
        want_dtype = keras.backend.standardize_dtype(tensor.dtype)
        got_dtype = keras.backend.standardize_dtype(value.dtype)
        if "int" in want_dtype and "int" not in got_dtype:
            raise ValueError(
                f"input {key!r} must have an integer dtype ({want_dtype}), got {got_dtype}"
            )
        if "float" in want_dtype and got_dtype == "bool":
            raise ValueError(f"input {key!r} must be numeric ({want_dtype}), got {got_dtype}")


def feature_extractor(model: keras.Model, layer_names=None, name=None) -> keras.Model:
    """Returns a model with ``model``'s inputs whose outputs are intermediate layers'
    outputs (like torchvision's ``create_feature_extractor``), sharing its weights.

    Args:
        model: a functional model (any zoo model).
        layer_names: names of the layers whose outputs to return, in that order; None
            returns every layer's output but the inputs' (as the guide does for VGG19).
        name: the new model's name; defaults to ``<model name>_features``.

    Returns:
        A functional model whose output is a dict from layer name to that layer's
        output.

    Example:
        >>> import zoo
        >>> features = zoo.feature_extractor(zoo.create("mnist_mlp"), ["hidden_1"])
        >>> features.output["hidden_1"].shape
        (None, 64)
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "inputs") or not model.inputs:
        raise ValueError(f"model must be a functional keras.Model, got {type(model).__name__}")
    available = [layer.name for layer in model.layers]
    if layer_names is None:
        layer_names = [
            layer.name for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)
        ]
    elif isinstance(layer_names, str) or not layer_names:
        raise ValueError(f"layer_names must be a non-empty list of names, got {layer_names!r}")
    unknown = [n for n in layer_names if n not in available]
    if unknown:
        raise ValueError(
            f"layer_names has unknown layer(s) {unknown} for model {model.name!r}; "
            f"its layers are {available}"
        )
    # How often each layer is called in the graph, from the model's own (public) config.
    calls = {c["name"]: len(c.get("inbound_nodes") or []) for c in model.get_config()["layers"]}
    outputs = {}
    for layer_name in layer_names:
        if calls.get(layer_name, 1) != 1:  # a shared layer has one output per call
            raise ValueError(
                f"layer_names: layer {layer_name!r} is called {calls[layer_name]} "
                f"times in {model.name!r}, so its output is ambiguous"
            )
        outputs[layer_name] = model.get_layer(layer_name).output
    inputs = model.input  # the model's own input structure (a tensor, list or dict)
    if isinstance(inputs, (list, tuple)) and len(inputs) == 1:
        inputs = inputs[0]
    return keras.Model(inputs, outputs, name=check.model_name(name or f"{model.name}_features"))


def contains_layer(model, classes) -> bool:
    """Whether ``model``, or a model nested in it, has a layer of one of ``classes``."""
    return any(
        isinstance(layer, classes) or contains_layer(layer, classes)
        for layer in getattr(model, "layers", [])
    )
