"""Multi-layer perceptrons: the functional-API guide's ``mnist_model`` and the
tutorial's binary classifier."""

from __future__ import annotations

import keras
from keras import layers

from zoo import _validation as check
from zoo import recipes
from zoo.registry import Recipe, register, register_recipe

GUIDE = "Keras functional API guide"
TUTORIAL = "Functional API tutorial (Korean)"


def mlp(
    input_shape=(784,),
    hidden_units=(64, 64),
    num_classes=10,
    activation="relu",
    output_activation=None,
    dropout=0.0,
    name="mlp",
) -> keras.Model:
    """Returns a functional MLP: Dense layers of ``hidden_units``, then ``num_classes`` outputs.

    At ``input_shape=(784,), hidden_units=(64, 64), num_classes=10`` this is the
    guide's ``mnist_model`` (784 -> 64 relu -> 64 relu -> 10 logits, 55,050 params).

    Args:
        input_shape: shape of one sample; inputs of rank > 1 are flattened first.
        hidden_units: width of each hidden ``Dense`` layer, in order (may be empty).
        num_classes: width of the output layer (1 for a single sigmoid/linear output).
        activation: activation of the hidden layers.
        output_activation: activation of the output layer; None gives logits.
        dropout: dropout rate after each hidden layer, in [0, 1); 0 adds no layer.
        name: the model's name.

    Example:
        >>> from zoo import mlp
        >>> model = mlp(input_shape=(784,), hidden_units=(64, 64), num_classes=10)
        >>> model.count_params()
        55050
    """
    input_shape = check.shape("input_shape", input_shape)
    hidden_units = check.positive_ints("hidden_units", hidden_units, allow_empty=True)
    num_classes = check.positive_int("num_classes", num_classes)
    activation = check.activation("activation", activation)
    output_activation = check.activation("output_activation", output_activation)
    dropout = check.fraction("dropout", dropout)
    name = check.model_name(name)

    inputs = keras.Input(shape=input_shape, name="inputs")
    x = inputs
    if len(input_shape) > 1:
        x = layers.Flatten(name="flatten_inputs")(x)
    for i, units in enumerate(hidden_units, start=1):
        x = layers.Dense(units, activation=activation, name=f"hidden_{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"hidden_{i}_dropout")(x)
    outputs = layers.Dense(num_classes, activation=output_activation, name="predictions")(x)
    return keras.Model(inputs=inputs, outputs=outputs, name=name)


register(
    "mnist_mlp",
    mlp,
    config=dict(input_shape=(784,), hidden_units=(64, 64), num_classes=10, name="mnist_model"),
    params=55_050,
    section=f"{GUIDE}: Introduction (mnist_model)",
    summary="The guide's MNIST MLP: 784 -> 64 relu -> 64 relu -> 10 logits.",
)


def mnist_mlp_space(hp):
    """``zoo tune mnist_mlp``: the hidden layers' count and width, dropout, the rate."""
    units = hp.Choice("units", [32, 64, 128])
    overrides = {"hidden_units": [units] * hp.Int("layers", 1, 3), "dropout": hp.Choice(
        "dropout", [0.0, 0.1, 0.2, 0.3])}  # fmt: skip
    return overrides, {"learning_rate": hp.Float("learning_rate", 1e-4, 1e-2, sampling="log")}


register_recipe(
    "mnist_mlp",
    Recipe(
        compile=recipes.sparse_classifier(),
        datasets=("digits", "mnist"),
        epochs={"digits": 30, "mnist": 2},
        search_space=mnist_mlp_space,
    ),
)

register(
    "binary_mlp",
    mlp,
    config=dict(
        input_shape=(10,),
        hidden_units=(64, 64),
        num_classes=1,
        output_activation="sigmoid",
        name="binary_mlp",
    ),
    params=4_929,
    section=f"{TUTORIAL}: multilayer perceptron (binary classification)",
    summary="The tutorial's binary classifier: 10 -> 64 relu -> 64 relu -> 1 sigmoid.",
)
