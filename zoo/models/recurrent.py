"""Recurrent models: the tutorial's LSTM classifier and the guide's custom-RNN models."""

from __future__ import annotations

import keras
from keras import layers

from zoo import _validation as check
from zoo import recipes
from zoo.layers import CustomRNN, RNNWithFunctionalHead
from zoo.registry import Recipe, register, register_recipe

GUIDE = "Keras functional API guide"
TUTORIAL = "Functional API tutorial (Korean)"


def lstm_classifier(
    timesteps=50, features=1, lstm_units=10, dense_units=10, name="lstm_classifier"
) -> keras.Model:
    """Returns the tutorial's sequence classifier: (50, 1) -> LSTM 10 -> Dense 10 relu ->
    Dense 1 sigmoid (601 parameters).

    Args:
        timesteps: sequence length, or None for variable-length sequences.
        features: features per time step.
        lstm_units: LSTM width.
        dense_units: width of the relu layer after the LSTM.
        name: the model's name.

    Example:
        >>> from zoo.models.recurrent import lstm_classifier
        >>> lstm_classifier().count_params()
        601
    """
    timesteps = None if timesteps is None else check.positive_int("timesteps", timesteps)
    features = check.positive_int("features", features)
    lstm_units = check.positive_int("lstm_units", lstm_units)
    dense_units = check.positive_int("dense_units", dense_units)
    name = check.model_name(name)

    inputs = keras.Input(shape=(timesteps, features), name="sequence")
    x = layers.LSTM(lstm_units, name="sequence_lstm")(inputs)
    x = layers.Dense(dense_units, activation="relu", name="hidden")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="probability")(x)
    return keras.Model(inputs, outputs, name=name)


def custom_rnn_classifier(
    input_dim=5,
    conv_filters=32,
    kernel_size=3,
    units=32,
    return_sequences=True,
    name="custom_rnn_classifier",
) -> keras.Model:
    """Returns the guide's custom-RNN model: Conv1D(32, 3) -> CustomRNN(32) -> Dense(1).

    Unlike the guide's snippet it needs no static batch size: ``CustomRNN`` is a
    ``keras.layers.RNN`` over any batch size and number of time steps.

    Args:
        input_dim: features per time step.
        conv_filters: filters of the Conv1D.
        kernel_size: kernel size of the Conv1D (sequences must be at least this long).
        units: width of the custom RNN.
        return_sequences: one score per time step (the guide), or one per sequence.
        name: the model's name.

    Example:
        >>> from zoo.models.recurrent import custom_rnn_classifier
        >>> custom_rnn_classifier().count_params()
        2657
    """
    input_dim = check.positive_int("input_dim", input_dim)
    conv_filters = check.positive_int("conv_filters", conv_filters)
    kernel_size = check.positive_int("kernel_size", kernel_size)
    units = check.positive_int("units", units)
    if not isinstance(return_sequences, bool):
        raise ValueError(f"return_sequences must be True or False, got {return_sequences!r}")
    name = check.model_name(name)

    inputs = keras.Input(shape=(None, input_dim), name="sequence")
    x = layers.Conv1D(conv_filters, kernel_size, name="conv")(inputs)
    x = CustomRNN(units, return_sequences=return_sequences, name="recurrent")(x)
    outputs = layers.Dense(1, name="score")(x)
    return keras.Model(inputs, outputs, name=name)


def mixed_api_rnn(input_dim=5, units=32, name="mixed_api_rnn") -> keras.Model:
    """Returns the guide's "mix-and-match" model: a subclassed layer that holds a
    functional classifier model, used inside a functional model.

    Example:
        >>> from zoo.models.recurrent import mixed_api_rnn
        >>> mixed_api_rnn().count_params()
        1281
    """
    input_dim = check.positive_int("input_dim", input_dim)
    units = check.positive_int("units", units)
    name = check.model_name(name)
    inputs = keras.Input(shape=(None, input_dim), name="sequence")
    outputs = RNNWithFunctionalHead(units, name="rnn_with_head")(inputs)
    return keras.Model(inputs, outputs, name=name)


register(
    "lstm_classifier",
    lstm_classifier,
    params=601,
    section=f"{TUTORIAL}: recurrent neural network (LSTM)",
    summary="The tutorial's LSTM classifier: (50, 1) -> LSTM 10 -> Dense 10 -> 1 sigmoid.",
)
register(
    "custom_rnn_classifier",
    custom_rnn_classifier,
    params=2_657,
    section=f"{GUIDE}: Mix-and-match API styles (custom RNN)",
    summary="The guide's Conv1D(32, 3) -> custom RNN(32) -> Dense(1), any batch size.",
)
register(
    "mixed_api_rnn",
    mixed_api_rnn,
    params=1_281,
    section=f"{GUIDE}: Mix-and-match API styles (functional model inside a layer)",
    summary="A subclassed layer holding a functional classifier, inside a functional model.",
)
register_recipe(
    "lstm_classifier",
    Recipe(
        compile=recipes.binary_classifier,
        datasets=("sequences",),
        epochs={"sequences": 10},
        batch_size=32,
    ),
)
