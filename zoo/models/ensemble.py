"""Ensembles: several member models called on one input and merged (the guide's
model-nesting example averages three 128 -> 1 models)."""

from __future__ import annotations

import numbers

import keras
from keras import layers

from zoo import _validation as check
from zoo.layers import WeightedAverage
from zoo.registry import get_spec, register

GUIDE = "Keras functional API guide"
MERGES = ("average", "weighted_average", "concatenate", "maximum", "minimum", "add")


def linear_member(input_shape=(128,), units=1, name="member") -> keras.Model:
    """Returns the guide's ensemble member ``get_model()``: one ``Dense(units)``.

    Example:
        >>> from zoo.models.ensemble import linear_member
        >>> linear_member().count_params()
        129
    """
    input_shape = check.shape("input_shape", input_shape)
    units = check.positive_int("units", units)
    inputs = keras.Input(shape=input_shape, name="inputs")
    outputs = layers.Dense(units, name="predictions")(inputs)
    return keras.Model(inputs, outputs, name=check.model_name(name))


def _build_registered(model_name, name):
    """The registered ``model_name`` at its default config, named ``name`` (from the
    registry directly: the factory sits above the model modules)."""
    spec = get_spec(model_name)
    return spec.builder(**{**spec.config, "name": name})


def _members(members, input_shape):
    """Resolves ``members`` into distinct, uniquely named models."""
    if isinstance(members, numbers.Integral) and not isinstance(members, bool):
        if members < 2:
            raise ValueError(f"members must be at least 2, got {members!r}")
        return [linear_member(input_shape, name=f"member_{i}") for i in range(1, members + 1)]
    if isinstance(members, (str, keras.Model)) or not isinstance(members, (list, tuple)):
        raise ValueError(
            f"members must be an int >= 2 or a list of registered names or keras.Model "
            f"objects, got {members!r}"
        )
    if len(members) < 2:
        raise ValueError(f"members must list at least 2 models, got {len(members)}")
    bad = [m for m in members if not isinstance(m, (str, keras.Model))]
    if bad:
        raise ValueError(f"members must be registered names or keras.Model objects, got {bad!r}")
    built = [
        _build_registered(m, f"member_{i}") if isinstance(m, str) else m
        for i, m in enumerate(members, start=1)
    ]
    names = [m.name for m in built]
    if len(set(names)) != len(names) or len({id(m) for m in built}) != len(built):
        raise ValueError(f"members must be distinct models with distinct names, got {names}")
    return built


def ensemble(
    members=3,
    merge="average",
    merge_weights=None,
    input_shape=(128,),
    name="ensemble",
) -> keras.Model:
    """Returns an ensemble: every member model called on one shared input, then merged.

    Each member keeps its own weights (it is nested as a layer), and the ensemble
    saves and loads as one ``.keras`` file. At the defaults this is the guide's
    ensemble of three ``Dense(1)`` models on 128 features, averaged.

    Args:
        members: an int (that many of the guide's ``Dense(1)`` members), or a list of
            registered model names and/or ``keras.Model`` objects taking one input of
            the same shape.
        merge: one of ``"average"``, ``"weighted_average"``, ``"concatenate"``,
            ``"maximum"``, ``"minimum"``, ``"add"``.
        merge_weights: one weight per member, for ``"weighted_average"`` only.
        input_shape: the shape of one sample; registered members must take it.
        name: the model's name.

    Example:
        >>> import zoo
        >>> model = zoo.create("ensemble")
        >>> model.count_params()
        387
        >>> zoo.create("ensemble", members=["mnist_mlp", "mnist_mlp"], input_shape=(784,),
        ...            merge="weighted_average", merge_weights=[0.7, 0.3]).count_params()
        110100
    """
    merge = check.one_of("merge", merge, MERGES)
    input_shape = check.shape("input_shape", input_shape)
    if (merge == "weighted_average") != (merge_weights is not None):
        raise ValueError(
            f"merge_weights must be given exactly when merge='weighted_average', "
            f"got merge={merge!r}, merge_weights={merge_weights!r}"
        )
    models = _members(members, input_shape)
    if merge_weights is not None and (
        isinstance(merge_weights, str) or len(merge_weights) != len(models)
    ):
        raise ValueError(
            f"merge_weights must hold one weight per member ({len(models)}), got {merge_weights!r}"
        )
    for m in models:
        if len(m.inputs) != 1 or tuple(m.inputs[0].shape[1:]) != input_shape:
            shapes = [tuple(t.shape[1:]) for t in m.inputs]
            raise ValueError(
                f"members must each take one input of shape input_shape={input_shape}; "
                f"member {m.name!r} takes {shapes}"
            )
    out_shapes = {tuple(m.outputs[0].shape[1:]) for m in models}
    if (len(out_shapes) != 1 and merge != "concatenate") or any(
        len(m.outputs) != 1 for m in models
    ):
        raise ValueError(
            f"members must each have one output, all of one shape for merge={merge!r}; "
            f"got {sorted(out_shapes)}"
        )
    name = check.model_name(name)

    inputs = keras.Input(shape=input_shape, name="inputs")
    outputs = [m(inputs) for m in models]
    if merge == "weighted_average":
        merged = WeightedAverage(merge_weights, name="merge")(outputs)
    else:
        merge_layer = {
            "average": layers.Average,
            "concatenate": layers.Concatenate,
            "maximum": layers.Maximum,
            "minimum": layers.Minimum,
            "add": layers.Add,
        }[merge]
        merged = merge_layer(name="merge")(outputs)
    return keras.Model(inputs, merged, name=name)


register(
    "weighted_ensemble",
    ensemble,
    config=dict(merge="weighted_average", merge_weights=(0.5, 0.3, 0.2), name="weighted_ensemble"),
    params=387,
    section=f"{GUIDE}: All models are callable, just like layers (ensembling)",
    summary="The guide's three Dense(1) members, merged by a fixed weighted average.",
)
register(
    "ensemble",
    ensemble,
    params=387,
    section=f"{GUIDE}: All models are callable, just like layers (ensembling)",
    summary="The guide's ensemble: three Dense(1) models on 128 features, averaged.",
)
