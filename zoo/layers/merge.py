"""Merge layers for ensembles."""

from __future__ import annotations

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="zoo")
class WeightedAverage(keras.layers.Layer):
    """Averages a list of same-shaped tensors with fixed weights that sum to 1.

    Args:
        weights: one non-negative weight per input (normalized to sum to 1).
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Example:
        >>> import keras
        >>> from zoo.layers import WeightedAverage
        >>> a, b = keras.ops.zeros((1, 2)), keras.ops.ones((1, 2))
        >>> keras.ops.convert_to_numpy(WeightedAverage([1, 3])([a, b]))
        array([[0.75, 0.75]], dtype=float32)
    """

    def __init__(self, weights, **kwargs):
        super().__init__(**kwargs)
        values = np.asarray(weights, dtype="float64")
        if values.ndim != 1 or len(values) < 2 or np.any(values < 0) or values.sum() <= 0:
            raise ValueError(
                f"weights must be two or more non-negative numbers with a positive sum, "
                f"got {weights!r}"
            )
        self._given = [float(w) for w in values]  # the config keeps them as given, so that
        # from_config normalizes the same numbers again and the config round-trips exactly
        self.merge_weights = tuple(float(w) for w in values / values.sum())

    def call(self, inputs):
        if len(inputs) != len(self.merge_weights):
            raise ValueError(
                f"{self.name} got {len(inputs)} inputs for {len(self.merge_weights)} weights"
            )
        total = inputs[0] * self.merge_weights[0]
        for x, w in zip(inputs[1:], self.merge_weights[1:], strict=True):
            total = total + x * w
        return total

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "weights": list(self._given)}
