"""keras-model-zoo: Keras 3 functional-API model builders for every backend.

Attributes are loaded on first use (PEP 562), so ``import zoo`` does not import
Keras: ``python -m zoo --backend jax ...`` can still choose the backend. Once Keras is
imported (before or after ``import zoo``), the zoo's serializable classes (``ZooModel``
and the layers of ``zoo.layers``) are registered with it, so that Keras's own
``keras.saving.load_model`` opens every ``.keras`` file the zoo writes.

Example:
    >>> import zoo
    >>> model = zoo.create("mnist_mlp")
    >>> model.count_params()
    55050
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module that defines it (the one list; __all__ is made from it)
_EXPORTS = {
    "ModelSpec": "zoo.registry",
    "Recipe": "zoo.registry",
    "register": "zoo.registry",
    "register_recipe": "zoo.registry",
    "create": "zoo.factory",
    "describe": "zoo.factory",
    "list_models": "zoo.factory",
    "load_model": "zoo.factory",
    "load_preset": "zoo.factory",
    "list_presets": "zoo.factory",
    "evaluate_preset": "zoo.presets",
    "identity": "zoo.zoo_model",
    "ZooModel": "zoo.zoo_model",
    "sample_inputs": "zoo.inputs",
    "predict_numpy": "zoo.inputs",
    "predict": "zoo.performance",
    "set_float32_precision": "zoo.precision",
    "save_preset": "zoo.presets",
    "preset_from_run": "zoo.presets",
    "check_inputs": "zoo.utils",
    "feature_extractor": "zoo.utils",
    "mlp": "zoo.models.mlp",
    "conv_encoder": "zoo.models.autoencoder",
    "conv_decoder": "zoo.models.autoencoder",
    "conv_autoencoder": "zoo.models.autoencoder",
    "extract_encoder": "zoo.models.autoencoder",
    "ensemble": "zoo.models.ensemble",
    "ticket_router": "zoo.models.ticket_router",
    "compile_ticket_router": "zoo.models.ticket_router",
    "toy_resnet": "zoo.models.resnet",
    "shared_embedding": "zoo.models.text",
    "text_pair_classifier": "zoo.models.text",
    "two_branch_regressor": "zoo.models.multi_input",
    "lstm_classifier": "zoo.models.recurrent",
    "custom_rnn_classifier": "zoo.models.recurrent",
    "mixed_api_rnn": "zoo.models.recurrent",
    "custom_dense_model": "zoo.models.custom",
    "vgg19_features": "zoo.models.vgg",
    "linear_regression": "zoo.models.regression",
    "logistic_regression": "zoo.models.regression",
    "softmax_regression": "zoo.models.regression",
}

__all__ = ["__version__", *sorted(_EXPORTS)]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ loads these
    from zoo.factory import (
        create,
        describe,
        list_models,
        list_presets,
        load_model,
        load_preset,
    )
    from zoo.inputs import predict_numpy, sample_inputs
    from zoo.models.autoencoder import (
        conv_autoencoder,
        conv_decoder,
        conv_encoder,
        extract_encoder,
    )
    from zoo.models.custom import custom_dense_model
    from zoo.models.ensemble import ensemble
    from zoo.models.mlp import mlp
    from zoo.models.multi_input import two_branch_regressor
    from zoo.models.recurrent import custom_rnn_classifier, lstm_classifier, mixed_api_rnn
    from zoo.models.regression import linear_regression, logistic_regression, softmax_regression
    from zoo.models.resnet import toy_resnet
    from zoo.models.text import shared_embedding, text_pair_classifier
    from zoo.models.ticket_router import compile_ticket_router, ticket_router
    from zoo.models.vgg import vgg19_features
    from zoo.performance import predict
    from zoo.precision import set_float32_precision
    from zoo.presets import preset_from_run, save_preset
    from zoo.registry import ModelSpec, Recipe, register, register_recipe
    from zoo.utils import check_inputs, feature_extractor
    from zoo.zoo_model import ZooModel, identity


def _register_with_keras() -> None:
    """Registers the zoo's serializable classes with Keras (their modules' decorators)."""
    importlib.import_module("zoo.zoo_model")
    importlib.import_module("zoo.layers")


class _AfterKerasImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Runs ``_register_with_keras`` right after Keras's own package has been imported.
    Written here because Python has no post-import hook and importing Keras at ``import
    zoo`` would fix the backend before ``--backend`` or ``KERAS_BACKEND`` could choose it:
    it finds ``keras`` once through the other finders and wraps its loader."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)  # once; the other finders find Keras itself
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None:
            return spec
        self.loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        _register_with_keras()


if "keras" in sys.modules:
    _register_with_keras()
elif not any(isinstance(f, _AfterKerasImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _AfterKerasImport())


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    importlib.import_module("zoo.factory")._load_builtin_models()  # registers every family
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
