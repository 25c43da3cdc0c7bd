"""The guide's own training code: its model definition and its ``compile`` +
``fit`` call, as https://keras.io/guides/functional_api/ writes them (without the
``validation_split``, so that every implementation times the same training steps)."""

from __future__ import annotations

import keras
from keras import layers


def mnist_model():
    inputs = keras.Input(shape=(784,))
    x = layers.Dense(64, activation="relu")(inputs)
    x = layers.Dense(64, activation="relu")(x)
    outputs = layers.Dense(10)(x)
    model = keras.Model(inputs=inputs, outputs=outputs, name="mnist_model")
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=keras.optimizers.RMSprop(),
        metrics=["accuracy"],
    )
    return model


def toy_resnet():
    inputs = keras.Input(shape=(32, 32, 3), name="img")
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    block_1_output = layers.MaxPooling2D(3)(x)
    x = layers.Conv2D(64, 3, activation="relu", padding="same")(block_1_output)
    x = layers.Conv2D(64, 3, activation="relu", padding="same")(x)
    block_2_output = layers.add([x, block_1_output])
    x = layers.Conv2D(64, 3, activation="relu", padding="same")(block_2_output)
    x = layers.Conv2D(64, 3, activation="relu", padding="same")(x)
    block_3_output = layers.add([x, block_2_output])
    x = layers.Conv2D(64, 3, activation="relu")(block_3_output)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(256, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(10)(x)
    model = keras.Model(inputs, outputs, name="toy_resnet")
    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        metrics=["acc"],
    )
    return model


BUILDERS = {"mnist_mlp": mnist_model, "toy_resnet": toy_resnet}


def labels(architecture, y):
    """The labels as the guide feeds them: integers for the MLP, one-hot
    (``keras.utils.to_categorical``) for the toy ResNet."""
    return keras.utils.to_categorical(y, 10) if architecture == "toy_resnet" else y


def fit(model, x, y, batch_size, epochs, callbacks=None):
    """The guide's ``model.fit(x_train, y_train, batch_size=64, epochs=2, ...)``."""
    return model.fit(x, y, batch_size=batch_size, epochs=epochs, callbacks=callbacks, verbose=0)
