"""The guide's custom layers, made serializable and backend-agnostic."""

from __future__ import annotations

import keras
from keras import layers

from zoo import _validation as check


@keras.saving.register_keras_serializable(package="zoo")
class CustomDense(layers.Layer):
    """The guide's ``CustomDense``: ``inputs @ w + b``, with ``get_config``.

    Args:
        units: number of output units.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Example:
        >>> import keras
        >>> from zoo.layers import CustomDense
        >>> CustomDense(10)(keras.Input((4,))).shape
        (None, 10)
    """

    def __init__(self, units=32, **kwargs):
        super().__init__(**kwargs)
        self.units = check.positive_int("units", units)

    def build(self, input_shape):
        self.w = self.add_weight(
            shape=(input_shape[-1], self.units), initializer="random_normal", name="kernel"
        )
        self.b = self.add_weight(shape=(self.units,), initializer="random_normal", name="bias")

    def call(self, inputs):
        return keras.ops.matmul(inputs, self.w) + self.b

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="zoo")
class CustomRNNCell(layers.Layer):
    """The guide's ``CustomRNN`` step as a recurrent cell: two tanh projections, the
    state fed back: ``y_t = tanh(x_t W1 + b1) + tanh(y_{t-1} W2 + b2)``.

    Use it in ``keras.layers.RNN`` (or use ``CustomRNN``), which runs it over any
    number of time steps and any batch size on every backend.
    """

    def __init__(self, units=32, **kwargs):
        super().__init__(**kwargs)
        self.units = check.positive_int("units", units)
        self.state_size = self.units
        self.output_size = self.units
        # the cell's own dtype policy (e.g. mixed_float16) for both projections
        policy = self.dtype_policy
        self.projection_1 = layers.Dense(
            self.units, activation="tanh", name="projection_1", dtype=policy
        )
        self.projection_2 = layers.Dense(
            self.units, activation="tanh", name="projection_2", dtype=policy
        )

    def build(self, input_shape):
        self.projection_1.build(input_shape)
        self.projection_2.build((input_shape[0], self.units))

    def call(self, inputs, states, training=None):
        state = states[0] if isinstance(states, (list, tuple)) else states
        y = self.projection_1(inputs) + self.projection_2(state)
        return y, [y]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="zoo")
class CustomRNN(layers.RNN):
    """The guide's custom RNN as a real recurrent layer: ``keras.layers.RNN`` over a
    ``CustomRNNCell``, with a variable time dimension and any batch size.

    Args:
        units: width of the projections and the state.
        return_sequences: return the output of every step (the guide) or the last.
        **kwargs: other ``keras.layers.RNN`` arguments (``go_backwards``, ``name``...).

    Example:
        >>> import keras
        >>> from zoo.layers import CustomRNN
        >>> CustomRNN(32)(keras.Input((None, 5))).shape
        (None, None, 32)
    """

    def __init__(self, units=32, return_sequences=True, **kwargs):
        kwargs.pop("cell", None)
        # keras.layers.RNN does not hand its dtype policy to the cell: give it here
        cell = CustomRNNCell(units, name="cell", dtype=kwargs.get("dtype"))
        super().__init__(cell, return_sequences=return_sequences, **kwargs)
        self.units = units

    def get_config(self):
        config = super().get_config()
        config.pop("cell", None)
        return {**config, "units": self.units}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _classifier_head(units, dtype=None):
    """The guide's functional classifier: (time, units) -> GlobalAveragePooling1D -> Dense(1)."""
    inputs = keras.Input((None, units), name="features")
    x = layers.GlobalAveragePooling1D(name="average_over_time", dtype=dtype)(inputs)
    outputs = layers.Dense(1, name="score", dtype=dtype)(x)
    return keras.Model(inputs, outputs, name="classifier_head")


@keras.saving.register_keras_serializable(package="zoo")
class RNNWithFunctionalHead(layers.Layer):
    """The guide's "mix-and-match API styles" case: a subclassed layer that holds a
    functional model (its classifier head) and runs it after a ``CustomRNN``.

    Args:
        units: width of the custom RNN.
        head: a functional model taking (batch, time, units); the guide's
            ``GlobalAveragePooling1D -> Dense(1)`` model if None.
        **kwargs: ``keras.layers.Layer`` arguments.

    Example:
        >>> import keras
        >>> from zoo.layers import RNNWithFunctionalHead
        >>> RNNWithFunctionalHead(32)(keras.Input((None, 5))).shape
        (None, 1)
    """

    def __init__(self, units=32, head=None, **kwargs):
        super().__init__(**kwargs)
        self.units = check.positive_int("units", units)
        if isinstance(head, dict):
            head = keras.saving.deserialize_keras_object(head)
        # the layer's dtype policy for everything it holds (a given head keeps its own)
        policy = self.dtype_policy
        self.head = head if head is not None else _classifier_head(self.units, policy)
        if not isinstance(self.head, keras.Model):
            raise ValueError(f"head must be a keras.Model or None, got {type(head).__name__}")
        self.rnn = CustomRNN(self.units, return_sequences=True, name="rnn", dtype=policy)

    def build(self, input_shape):
        self.rnn.build(input_shape)

    def call(self, inputs):
        return self.head(self.rnn(inputs))

    def compute_output_shape(self, input_shape):
        return self.head.compute_output_shape((*input_shape[:-1], self.units))

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "head": keras.saving.serialize_keras_object(self.head),
        }
