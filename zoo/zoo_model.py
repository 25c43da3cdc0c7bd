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

After ``import zoo``, Keras's own ``keras.saving.load_model`` loads a ``.keras`` file of a
``ZooModel`` saved under any backend (``zoo/__init__.py`` registers this class and the
zoo's layers with Keras as soon as Keras is imported); ``zoo.load_model`` adds one-line
errors.
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

    def get_compile_config(self):
        """Keras's compile config, its optimizer named by its public ``keras.optimizers``
        name, so that a model saved under one backend compiles under any other."""
        return portable_compile_config(super().get_compile_config())

    def compile_from_config(self, config):
        """Keras's, after naming a backend's own optimizer class by its public name
        (files saved before ``get_compile_config`` did it)."""
        return super().compile_from_config(portable_compile_config(config))

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


def portable_compile_config(config):
    """``config`` (a model's compile config) with a backend's own optimizer class named by
    its public ``keras.optimizers`` name: Keras serializes torch's SGD as
    ``keras.src.backend.torch.optimizers.torch_sgd.SGD``, which another backend cannot
    import (it imports torch); ``keras.optimizers.SGD`` is each backend's own SGD."""
    optimizer = config.get("optimizer") if isinstance(config, dict) else None
    if not isinstance(optimizer, dict):
        return config
    module, name = str(optimizer.get("module") or ""), str(optimizer.get("class_name") or "")
    if module.startswith("keras.src.backend.") and hasattr(keras.optimizers, name):
        optimizer = {**optimizer, "module": "keras.optimizers", "registered_name": None}
        return {**config, "optimizer": optimizer}
    return config


def identity(model: keras.Model) -> dict[str, Any] | None:
    """``{"name", "config", "zoo_version"}`` of a zoo model (made by ``zoo.create``,
    or loaded from its ``.keras`` file or preset), or None for any other model."""
    stamp = getattr(model, "zoo_model", None)
    return dict(stamp) if isinstance(model, ZooModel) and stamp else None
