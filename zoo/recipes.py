"""The compile settings that the models' training recipes share (the ``register_recipe``
calls beside each model use them)."""

from __future__ import annotations

import keras


def sparse_classifier(learning_rate: float = 1e-3):
    """RMSprop on logits with sparse labels, reporting ``accuracy`` (the guide's MNIST
    and ResNet settings)."""

    def compile_model(model):
        model.compile(
            optimizer=keras.optimizers.RMSprop(learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )

    compile_model.__qualname__ = f"sparse_classifier(learning_rate={learning_rate})"
    return compile_model


def reconstruction(model):
    """Adam(1e-3) on the mean squared error (autoencoders)."""
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")


def binary_classifier(model):
    """Adam(1e-2) on binary cross-entropy, reporting ``accuracy`` (the tutorial's LSTM)."""
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="binary_crossentropy",
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy")],
    )


def least_squares(model):
    """SGD(0.01) on the mean squared error (the tutorial's linear regression)."""
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
