"""The guide's multi-input, multi-output model: rank support tickets by priority
and route them to a department."""

from __future__ import annotations

import keras
from keras import layers

from zoo import _validation as check
from zoo.datasets import TICKET_DEPARTMENTS, TICKET_TAGS, TICKET_WORDS
from zoo.registry import Recipe, register, register_recipe

GUIDE = "Keras functional API guide"
OUTPUTS = ("priority", "department")


def ticket_router(
    num_words=TICKET_WORDS,
    num_tags=TICKET_TAGS,
    num_departments=TICKET_DEPARTMENTS,
    embedding_dim=64,
    title_units=128,
    body_units=32,
    name="ticket_router",
) -> keras.Model:
    """Returns the guide's ticket model: (title, body, tags) -> (priority, department).

    Inputs (a dict by name): ``title`` and ``body``, variable-length int sequences of
    word ids in [0, num_words); ``tags``, a binary float vector of ``num_tags``.
    Outputs, in this order (a list, as in the guide; ``compile`` and ``fit`` also take
    them by name): ``priority``, one logit; ``department``, ``num_departments``
    logits. Compile it with ``compile_ticket_router``.

    Args:
        num_words: vocabulary size of the title and body embeddings.
        num_tags: number of distinct tags.
        num_departments: number of departments.
        embedding_dim: width of each word embedding.
        title_units: LSTM units summarizing the title.
        body_units: LSTM units summarizing the body.
        name: the model's name.

    Example:
        >>> import zoo
        >>> model = zoo.create("ticket_router")
        >>> model.output_names
        ['priority', 'department']
    """
    num_words = check.positive_int("num_words", num_words)
    num_tags = check.positive_int("num_tags", num_tags)
    num_departments = check.positive_int("num_departments", num_departments)
    embedding_dim = check.positive_int("embedding_dim", embedding_dim)
    title_units = check.positive_int("title_units", title_units)
    body_units = check.positive_int("body_units", body_units)
    name = check.model_name(name)

    title = keras.Input(shape=(None,), dtype="int32", name="title")
    body = keras.Input(shape=(None,), dtype="int32", name="body")
    tags = keras.Input(shape=(num_tags,), name="tags")

    title_features = layers.Embedding(num_words, embedding_dim, name="title_embedding")(title)
    body_features = layers.Embedding(num_words, embedding_dim, name="body_embedding")(body)
    title_features = layers.LSTM(title_units, name="title_lstm")(title_features)
    body_features = layers.LSTM(body_units, name="body_lstm")(body_features)
    x = layers.Concatenate(name="features")([title_features, body_features, tags])
    priority = layers.Dense(1, name="priority")(x)
    department = layers.Dense(num_departments, name="department")(x)
    # Outputs as a list, as in the guide: compile and fit then take them by position
    # or, through the output layers' names, as dicts.
    return keras.Model(
        inputs={"title": title, "body": body, "tags": tags},
        outputs=[priority, department],
        name=name,
    )


def compile_ticket_router(
    model: keras.Model,
    optimizer=None,
    loss_weights=(1.0, 0.2),
    by="name",
    metrics=True,
) -> keras.Model:
    """Compiles a ticket router as the guide does: binary cross-entropy on the priority
    logit, categorical cross-entropy on the department logits, weighted 1.0 / 0.2.

    Args:
        model: a ``ticket_router`` model.
        optimizer: defaults to the guide's ``RMSprop(1e-3)``.
        loss_weights: (priority, department) weights, or a dict by output name.
        by: ``"name"`` gives losses and weights as dicts keyed by output name (the
            guide's second form); ``"position"`` as lists in output order (its first).
        metrics: add accuracy metrics per output.

    Returns:
        The same model, compiled.

    Example:
        >>> import zoo
        >>> from zoo.models.ticket_router import compile_ticket_router
        >>> model = compile_ticket_router(zoo.create("ticket_router", num_words=100))
    """
    check.one_of("by", by, ("name", "position"))
    if isinstance(loss_weights, dict):
        if set(loss_weights) != set(OUTPUTS):
            raise ValueError(f"loss_weights must have keys {list(OUTPUTS)}, got {loss_weights!r}")
        weights = [loss_weights[k] for k in OUTPUTS]
    else:
        weights = list(loss_weights)
        if len(weights) != len(OUTPUTS):
            raise ValueError(f"loss_weights must hold 2 numbers, got {loss_weights!r}")
    losses = [
        keras.losses.BinaryCrossentropy(from_logits=True),
        keras.losses.CategoricalCrossentropy(from_logits=True),
    ]
    output_metrics = [
        [keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")],
        [keras.metrics.CategoricalAccuracy(name="accuracy")],
    ]
    if by == "name":
        losses = dict(zip(OUTPUTS, losses, strict=True))
        weights = dict(zip(OUTPUTS, weights, strict=True))
        output_metrics = dict(zip(OUTPUTS, output_metrics, strict=True))
    model.compile(
        optimizer=optimizer or keras.optimizers.RMSprop(1e-3),
        loss=losses,
        loss_weights=weights,
        metrics=output_metrics if metrics else None,
    )
    return model


def sample_inputs(
    batch_size, rng, num_words=TICKET_WORDS, num_tags=TICKET_TAGS, title_len=10, body_len=100
):
    """Random inputs in the guide's form: word ids, and binary tags as float32."""
    return {
        "title": rng.integers(0, num_words, size=(batch_size, title_len)).astype("int32"),
        "body": rng.integers(0, num_words, size=(batch_size, body_len)).astype("int32"),
        "tags": rng.integers(0, 2, size=(batch_size, num_tags)).astype("float32"),
    }


def _harness_inputs(model, batch_size, rng):
    return sample_inputs(
        batch_size,
        rng,
        num_words=model.get_layer("title_embedding").input_dim,
        num_tags=model.input["tags"].shape[-1],
        title_len=6,
        body_len=9,
    )


register(
    "ticket_router",
    ticket_router,
    params=1_392_097,
    section=f"{GUIDE}: Models with multiple inputs and outputs",
    summary="The guide's ticket model: title, body, tags -> priority, department.",
    sample_inputs=_harness_inputs,
    small_config={"num_words": 500},
)


def _compile_by_name(model):
    compile_ticket_router(model, by="name")


def ticket_router_space(hp):
    """``zoo tune ticket_router``: the embedding and the two LSTMs' sizes, the rate."""
    overrides = {
        "embedding_dim": hp.Choice("embedding_dim", [32, 64]),
        "title_units": hp.Choice("title_units", [64, 128]),
        "body_units": hp.Choice("body_units", [16, 32]),
    }
    return overrides, {"learning_rate": hp.Float("learning_rate", 3e-4, 1e-2, sampling="log")}


register_recipe(
    "ticket_router",
    Recipe(
        compile=_compile_by_name,
        datasets=("tickets",),
        epochs={"tickets": 5},
        batch_size=32,
        search_space=ticket_router_space,
    ),
)
