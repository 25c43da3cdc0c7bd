"""The tutorial's one-layer regressions: linear, logistic and softmax."""

from __future__ import annotations

import keras
from keras import layers

from zoo import _validation as check
from zoo import recipes
from zoo.registry import Recipe, register, register_recipe

TUTORIAL = "Functional API tutorial (Korean)"


def _one_layer(input_dim, units, activation, name) -> keras.Model:
    inputs = keras.Input(shape=(input_dim,), name="inputs")
    outputs = layers.Dense(units, activation=activation, name="predictions")(inputs)
    return keras.Model(inputs=inputs, outputs=outputs, name=name)


def linear_regression(input_dim=1, num_outputs=1, name="linear_regression") -> keras.Model:
    """Returns a linear regression ``y = xW + b`` as a functional model.

    Args:
        input_dim: number of input features.
        num_outputs: number of regressed values.
        name: the model's name.

    Example:
        >>> from zoo import linear_regression
        >>> linear_regression().count_params()
        2
    """
    input_dim = check.positive_int("input_dim", input_dim)
    num_outputs = check.positive_int("num_outputs", num_outputs)
    return _one_layer(input_dim, num_outputs, None, check.model_name(name))


def logistic_regression(input_dim=3, name="logistic_regression") -> keras.Model:
    """Returns a logistic regression ``sigmoid(xW + b)`` with one output.

    Args:
        input_dim: number of input features.
        name: the model's name.

    Example:
        >>> from zoo import logistic_regression
        >>> logistic_regression().count_params()
        4
    """
    input_dim = check.positive_int("input_dim", input_dim)
    return _one_layer(input_dim, 1, "sigmoid", check.model_name(name))


def softmax_regression(input_dim=4, num_classes=3, name="softmax_regression") -> keras.Model:
    """Returns a multinomial logistic regression ``softmax(xW + b)``.

    Args:
        input_dim: number of input features.
        num_classes: number of classes (>= 2).
        name: the model's name.

    Example:
        >>> from zoo import softmax_regression
        >>> softmax_regression().count_params()
        15
    """
    input_dim = check.positive_int("input_dim", input_dim)
    num_classes = check.positive_int("num_classes", num_classes)
    if num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2 for a softmax, got {num_classes!r}")
    return _one_layer(input_dim, num_classes, "softmax", check.model_name(name))


register(
    "linear_regression",
    linear_regression,
    params=2,
    section=f"{TUTORIAL}: linear regression (study hours)",
    summary="Linear regression: 1 -> 1 linear.",
)
register(
    "logistic_regression",
    logistic_regression,
    params=4,
    section=f"{TUTORIAL}: logistic regression",
    summary="Logistic regression: 3 -> 1 sigmoid.",
)
register(
    "softmax_regression",
    softmax_regression,
    params=15,
    section=f"{TUTORIAL}: softmax regression",
    summary="Softmax regression: 4 -> 3 softmax.",
)
register_recipe(
    "linear_regression",
    Recipe(
        compile=recipes.least_squares,
        datasets=("study_hours",),
        epochs={"study_hours": 300},
        batch_size=32,
        validation_split=0.0,  # the tutorial's 9 points: nothing to hold out
    ),
)
