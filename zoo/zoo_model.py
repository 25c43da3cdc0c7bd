"""What a zoo model is, kept in the model itself through Keras's own serialization.

``zoo.create`` returns a ``ZooModel``: a functional ``keras.Model`` (the same graph,
layers and weights the builder made) whose ``get_config`` also holds its registered
name, the config it was built with and the zoo version, the way keras-hub's
``Backbone`` keeps its constructor arguments. ``model.save`` writes it into the
``.keras`` file, so a model loaded on any backend still says what it is::

    >>> import zoo
    >>> model = zoo.create("mnist_mlp")
    >>> zoo.identity(model)["name"]
    'mnist_mlp'

Loading a ``.keras`` file of a ``ZooModel`` needs this class registered: use
``zoo.load_model(path)`` (or ``import zoo.zoo_model`` before ``keras.saving.load_model``).
"""

from __future__ import annotations

import json
from typing import Any

import keras

__all__ = ["ZooModel", "identity", "jsonable"]

VERSION = "0.1.0"  # kept equal to zoo.__version__ (tests/test_registry.py checks it)


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (tuples become lists); what JSON can't hold (a
    ``keras.Model`` given as an ensemble member, say) becomes a description string."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        if isinstance(value, (list, tuple)):
            return [jsonable(v) for v in value]
        if isinstance(value, dict):
            return {str(k): jsonable(v) for k, v in value.items()}
        name = getattr(value, "name", None)
        return f"<{type(value).__name__} {name!r}>" if name else repr(value)


@keras.saving.register_keras_serializable(package="zoo")
class ZooModel(keras.Model):
    """A functional model that knows its registered name and config.

    Built by ``zoo.create``; it is the builder's functional graph, unchanged, with
    ``zoo_model = {"name", "config", "zoo_version"}`` added to its config.

    Keras treats a subclass whose ``__init__`` takes ``*args, **kwargs`` as
    functional: ``get_config`` writes the layer graph and ``from_config`` rebuilds it,
    handing the extra ``zoo_model`` key back to ``__init__``.
    """

    def __init__(self, *args, zoo_model: dict[str, Any] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.zoo_model = dict(zoo_model or {})

    def get_config(self):
        return {**super().get_config(), "zoo_model": self.zoo_model}

    @classmethod
    def wrap(cls, model: keras.Model, name: str, config: dict[str, Any]) -> ZooModel:
        """The functional ``model``'s own graph (same layers, same weights) as a
        ``ZooModel`` for the registered ``name`` built with ``config``."""
        stamp = {"name": name, "config": jsonable(config), "zoo_version": VERSION}
        return cls(
            inputs=model.input,
            outputs=model.output,
            name=model.name,
            trainable=model.trainable,
            zoo_model=stamp,
        )


def identity(model: keras.Model) -> dict[str, Any] | None:
    """``{"name", "config", "zoo_version"}`` of a zoo model (made by ``zoo.create``,
    or loaded from its ``.keras`` file or preset), or None for any other model."""
    stamp = getattr(model, "zoo_model", None)
    return dict(stamp) if isinstance(model, ZooModel) and stamp else None
