"""The guide's shared-layer example: two text inputs encoded by one ``Embedding``,
and a pair scorer built on it."""

from __future__ import annotations

import keras
from keras import layers

from zoo import _validation as check
from zoo.registry import register

GUIDE = "Keras functional API guide"
ENCODERS = ("lstm", "average")


def _embedded_text_pair(num_words, embedding_dim):
    """The guide's graph: two int-sequence inputs through one shared ``Embedding``."""
    text_a = keras.Input(shape=(None,), dtype="int32", name="text_a")
    text_b = keras.Input(shape=(None,), dtype="int32", name="text_b")
    embedding = layers.Embedding(num_words, embedding_dim, name="shared_embedding")
    return {"text_a": text_a, "text_b": text_b}, embedding(text_a), embedding(text_b)


def shared_embedding(num_words=1000, embedding_dim=128, name="shared_embedding") -> keras.Model:
    """Returns the guide's shared embedding: ``text_a`` and ``text_b`` (variable-length
    int sequences) encoded by one ``Embedding(1000, 128)``, the same variable, counted
    once (128,000 parameters).

    Outputs: ``encoded_a`` and ``encoded_b``, each (batch, time, embedding_dim).

    Example:
        >>> from zoo.models.text import shared_embedding
        >>> shared_embedding().count_params()
        128000
    """
    num_words = check.positive_int("num_words", num_words)
    embedding_dim = check.positive_int("embedding_dim", embedding_dim)
    name = check.model_name(name)
    inputs, embedded_a, embedded_b = _embedded_text_pair(num_words, embedding_dim)
    encoded_a = layers.Identity(name="encoded_a")(embedded_a)
    encoded_b = layers.Identity(name="encoded_b")(embedded_b)
    return keras.Model(inputs, {"encoded_a": encoded_a, "encoded_b": encoded_b}, name=name)


def text_pair_classifier(
    num_words=1000,
    embedding_dim=128,
    encoder="lstm",
    encoder_units=64,
    head_units=64,
    name="text_pair_classifier",
) -> keras.Model:
    """Returns a model that scores whether two texts match (e.g. duplicate questions).

    Both texts go through one shared ``Embedding`` (the guide's) and one shared
    encoder (an LSTM, or an average over time), so both sides have the same
    weights; the head sees ``[a, b, (a - b)**2, a * b]`` and gives one logit.

    Args:
        num_words: vocabulary size.
        embedding_dim: embedding width.
        encoder: ``"lstm"`` or ``"average"`` (masked mean of the embeddings).
        encoder_units: LSTM width (``encoder="lstm"`` only).
        head_units: width of the relu layer in the head.
        name: the model's name.

    Example:
        >>> import zoo
        >>> zoo.create("text_pair_classifier").count_params()
        193921
    """
    num_words = check.positive_int("num_words", num_words)
    embedding_dim = check.positive_int("embedding_dim", embedding_dim)
    encoder = check.one_of("encoder", encoder, ENCODERS)
    encoder_units = check.positive_int("encoder_units", encoder_units)
    head_units = check.positive_int("head_units", head_units)
    name = check.model_name(name)

    inputs, embedded_a, embedded_b = _embedded_text_pair(num_words, embedding_dim)
    if encoder == "lstm":
        encode = layers.LSTM(encoder_units, name="shared_encoder")
    else:
        encode = layers.GlobalAveragePooling1D(name="shared_encoder")
    a = encode(embedded_a)
    b = encode(embedded_b)
    difference = layers.Subtract(name="difference")([a, b])
    squared_difference = layers.Multiply(name="squared_difference")([difference, difference])
    product = layers.Multiply(name="product")([a, b])
    x = layers.Concatenate(name="pair_features")([a, b, squared_difference, product])
    x = layers.Dense(head_units, activation="relu", name="head_dense")(x)
    outputs = layers.Dense(1, name="match_logit")(x)
    return keras.Model(inputs, outputs, name=name)


def _harness_inputs(model, batch_size, rng):
    num_words = model.get_layer("shared_embedding").input_dim
    return {
        "text_a": rng.integers(0, num_words, size=(batch_size, 6)).astype("int32"),
        "text_b": rng.integers(0, num_words, size=(batch_size, 8)).astype("int32"),
    }


register(
    "shared_embedding",
    shared_embedding,
    params=128_000,
    section=f"{GUIDE}: Shared layers",
    summary="The guide's shared Embedding(1000, 128) over two text inputs.",
    sample_inputs=_harness_inputs,
    small_config={"num_words": 200},
)
register(
    "text_pair_classifier",
    text_pair_classifier,
    params=193_921,
    section=f"{GUIDE}: Shared layers (made a usable model)",
    summary="Two texts through one shared embedding and LSTM; one match logit.",
    sample_inputs=_harness_inputs,
    small_config={"num_words": 200},
)
