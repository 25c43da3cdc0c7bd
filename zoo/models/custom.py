"""The guide's custom-layer example: a functional model around ``CustomDense``."""

from __future__ import annotations

import keras

from zoo import _validation as check
from zoo.layers import CustomDense
from zoo.registry import register

GUIDE = "Keras functional API guide"


def custom_dense_model(input_dim=4, units=10, name="custom_dense_model") -> keras.Model:
    """Returns the guide's ``CustomDense`` example: Input(4) -> CustomDense(10).

    Example:
        >>> from zoo.models.custom import custom_dense_model
        >>> custom_dense_model().count_params()
        50
    """
    input_dim = check.positive_int("input_dim", input_dim)
    units = check.positive_int("units", units)
    name = check.model_name(name)
    inputs = keras.Input(shape=(input_dim,), name="inputs")
    outputs = CustomDense(units, name="projection")(inputs)
    return keras.Model(inputs, outputs, name=name)


register(
    "custom_dense_model",
    custom_dense_model,
    params=50,
    section=f"{GUIDE}: Extend the API using custom layers (CustomDense)",
    summary="The guide's CustomDense(10) on 4 features.",
)
