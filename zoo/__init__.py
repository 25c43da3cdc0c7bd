"""keras-model-zoo: Keras 3 functional-API model builders for every backend.

Attributes are loaded on first use (PEP 562), so ``import zoo`` does not import
Keras: ``python -m zoo --backend jax ...`` can still choose the backend.

Example:
    >>> import zoo
    >>> model = zoo.create("mnist_mlp")
    >>> model.count_params()
    55050
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "ModelSpec": "zoo.registry",
    "create": "zoo.registry",
    "describe": "zoo.registry",
    "list_models": "zoo.registry",
    "register": "zoo.registry",
    "mlp": "zoo.models.mlp",
    "linear_regression": "zoo.models.regression",
    "logistic_regression": "zoo.models.regression",
    "softmax_regression": "zoo.models.regression",
}

__all__ = [
    "ModelSpec",
    "__version__",
    "create",
    "describe",
    "linear_regression",
    "list_models",
    "logistic_regression",
    "mlp",
    "register",
    "softmax_regression",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ loads these
    from zoo.models.mlp import mlp
    from zoo.models.regression import linear_regression, logistic_regression, softmax_regression
    from zoo.registry import ModelSpec, create, describe, list_models, register


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    importlib.import_module("zoo.models")  # registers every model family
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
