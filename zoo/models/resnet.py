"""The guide's toy ResNet for CIFAR-10: residual ``add`` blocks, configurable depth
and width."""

from __future__ import annotations

import keras
from keras import layers

from zoo import _validation as check
from zoo import recipes
from zoo.registry import Recipe, register, register_recipe

GUIDE = "Keras functional API guide"


def toy_resnet(
    input_shape=(32, 32, 3),
    num_classes=10,
    stem_filters=(32, 64),
    filters=64,
    num_blocks=2,
    dense_units=256,
    dropout=0.5,
    name="toy_resnet",
) -> keras.Model:
    """Returns the guide's toy ResNet (223,242 parameters at the defaults).

    A stem of 'valid' ``Conv2D`` layers and ``MaxPooling2D(3)``, ``num_blocks``
    residual blocks (two 'same' ``Conv2D(filters)`` then ``add`` with the block's
    input), a last ``Conv2D``, ``GlobalAveragePooling2D``, ``Dense(dense_units)``,
    ``Dropout`` and ``num_classes`` logits.

    Args:
        input_shape: (height, width, channels) of the images.
        num_classes: number of output logits.
        stem_filters: filter counts of the stem convolutions; the last must equal
            ``filters`` so that the first residual ``add`` lines up.
        filters: width of the residual blocks.
        num_blocks: number of residual blocks (>= 1).
        dense_units: width of the dense layer before the logits.
        dropout: dropout rate before the logits, in [0, 1).
        name: the model's name.

    Example:
        >>> from zoo.models.resnet import toy_resnet
        >>> toy_resnet().count_params()
        223242
    """
    input_shape = check.shape("input_shape", input_shape, rank=3)
    num_classes = check.positive_int("num_classes", num_classes)
    stem_filters = check.positive_ints("stem_filters", stem_filters)
    filters = check.positive_int("filters", filters)
    num_blocks = check.positive_int("num_blocks", num_blocks)
    dense_units = check.positive_int("dense_units", dense_units)
    dropout = check.fraction("dropout", dropout)
    name = check.model_name(name)
    if stem_filters[-1] != filters:
        raise ValueError(
            f"stem_filters must end with filters={filters} for the residual add, got {stem_filters}"
        )
    size = min(input_shape[:2])
    if (size - 2 * len(stem_filters)) // 3 - 2 < 1:
        raise ValueError(f"input_shape {input_shape} is too small for this network")

    inputs = keras.Input(shape=input_shape, name="img")
    x = inputs
    for i, f in enumerate(stem_filters, start=1):
        x = layers.Conv2D(f, 3, activation="relu", name=f"stem_conv_{i}")(x)
    block_output = layers.MaxPooling2D(3, name="stem_pool")(x)

    for b in range(1, num_blocks + 1):
        x = layers.Conv2D(filters, 3, activation="relu", padding="same", name=f"block_{b}_conv_1")(
            block_output
        )
        x = layers.Conv2D(filters, 3, activation="relu", padding="same", name=f"block_{b}_conv_2")(
            x
        )
        block_output = layers.Add(name=f"block_{b}_add")([x, block_output])

    x = layers.Conv2D(filters, 3, activation="relu", name="head_conv")(block_output)
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = layers.Dense(dense_units, activation="relu", name="head_dense")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(num_classes, name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


register(
    "toy_resnet",
    toy_resnet,
    params=223_242,
    section=f"{GUIDE}: A toy ResNet model",
    summary="The guide's toy ResNet for CIFAR-10: two residual add blocks, 10 logits.",
)


def toy_resnet_space(hp):
    """``zoo tune toy_resnet``: the blocks' width and count, the head, dropout, the rate."""
    filters = hp.Choice("filters", [32, 64])
    overrides = {
        "stem_filters": (32, filters),  # the stem ends at the blocks' width (the residual add)
        "filters": filters,
        "num_blocks": hp.Int("num_blocks", 1, 3),
        "dense_units": hp.Choice("dense_units", [128, 256]),
        "dropout": hp.Choice("dropout", [0.3, 0.5]),
    }
    return overrides, {"learning_rate": hp.Float("learning_rate", 1e-4, 3e-3, sampling="log")}


register_recipe(
    "toy_resnet",
    Recipe(
        compile=recipes.sparse_classifier(),
        datasets=("cifar10",),
        epochs={"cifar10": 1},
        search_space=toy_resnet_space,
    ),
)
