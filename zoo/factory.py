"""The factory: builds registered models, loads saved ones and restores presets.

It sits above the registry (which imports nothing of the zoo) and loads the built-in
model modules, which register themselves, on first use. Every model it returns is a
``zoo.ZooModel``: it knows its registered name and config, also after
``model.save`` and a load on another backend.
"""

from __future__ import annotations

import importlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import keras

from zoo import _validation as check
from zoo._io import sha256_file, sha256_text
from zoo.registry import ModelSpec, get_spec, registered_names
from zoo.zoo_model import ZooModel, identity

__all__ = [
    "PRESET_FORMAT",
    "PresetError",
    "create",
    "describe",
    "list_models",
    "list_presets",
    "load_model",
    "load_preset",
    "read_preset_metadata",
]


def _load_builtin_models() -> None:
    """Imports the built-in model families, which register themselves (and
    ``zoo.layers``, which registers the custom layers for loading)."""
    importlib.import_module("zoo.layers")
    importlib.import_module("zoo.models")


def list_models(pattern: str | None = None) -> list[str]:
    """Returns the sorted registered names, optionally filtered by a shell wildcard.

    Args:
        pattern: an ``fnmatch`` pattern such as ``"*mlp*"``; None lists all.

    Example:
        >>> import zoo
        >>> zoo.list_models("*regression")
        ['linear_regression', 'logistic_regression', 'softmax_regression']
    """
    _load_builtin_models()
    return registered_names(pattern)


def describe(name: str) -> ModelSpec:
    """Returns what the registry knows about ``name``: builder, config, parameter
    count, seed section, summary (and ``.as_dict()`` with its training recipe).

    Example:
        >>> import zoo
        >>> zoo.describe("mnist_mlp").params
        55050
    """
    _load_builtin_models()
    return get_spec(name)


def create(
    model_name: str, /, *, preset: str | os.PathLike | None = None, **overrides
) -> keras.Model:
    """Builds the registered model ``model_name``: a functional, uncompiled model
    (a ``ZooModel``, which knows its name and config; see ``zoo.identity``).

    Args:
        model_name: a registered name (see ``list_models``); positional only, so
            that ``name=`` can be passed on to the builder as the model's name.
        preset: a preset folder (``zoo.save_preset``) to restore instead, with its
            architecture and weights, under the current backend.
        **overrides: builder arguments replacing the variant's defaults.

    Raises:
        ValueError: for an unknown name, an unknown override key or a bad value.
        PresetError: for a missing or damaged preset, or one of another model.

    Example:
        >>> import zoo
        >>> model = zoo.create("mnist_mlp")
        >>> model.count_params()
        55050
    """
    spec = describe(model_name)
    if preset is not None:
        if overrides:
            raise ValueError(
                f"overrides {sorted(overrides)} can't be combined with preset={str(preset)!r}: "
                "a preset fixes the architecture"
            )
        return load_preset(preset_path(preset), model_name)
    unknown = sorted(set(overrides) - set(spec.config))
    if unknown:
        raise ValueError(
            f"Unknown argument(s) {unknown} for model {model_name!r}; "
            f"allowed: {sorted(spec.config)}"
        )
    config = {**spec.config, **overrides}
    return ZooModel.wrap(spec.builder(**config), model_name, config)


def load_model(path: str | os.PathLike, *, compile: bool = True) -> keras.Model:
    """Loads a ``.keras`` file (of a zoo model or any model using the zoo's layers)
    under the current backend, with a one-line ``ValueError`` naming the file when it
    is missing or damaged."""
    _load_builtin_models()
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model file {str(path)!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"model file {str(path)!r} is damaged (not a .keras zip archive); train or save "
            "it again"
        )
    try:
        return keras.saving.load_model(path, compile=compile)
    except Exception as e:  # zipfile, h5py, json and Keras's own errors: all mean "damaged"
        raise ValueError(
            f"model file {str(path)!r} is damaged or not a Keras model ({check.error_summary(e)}); "
            "train or save it again"
        ) from None


# -- presets --------------------------------------------------------------------------------
PRESET_FORMAT = "keras-model-zoo preset"
PRESET_FORMAT_VERSION = 2
PRESET_FILES = ("metadata.json", "config.json", "model.weights.h5")


class PresetError(ValueError):
    """A preset that can't be restored: missing, damaged, or of another model."""


def metadata_digest(info: dict[str, Any]) -> str:
    """The sha256 of metadata.json's content without its own ``metadata_sha256`` key."""
    rest = {k: v for k, v in info.items() if k != "metadata_sha256"}
    return sha256_text(json.dumps(rest, sort_keys=True))


#: The presets shipped with the package (``zoo/catalog/<name>``, each with its model card,
#: README.md): ``zoo.create(model, preset=<name>)`` restores one offline, hash-checked.
CATALOG_DIR = Path(__file__).resolve().parent / "catalog"


def list_presets() -> list[str]:
    """The names of the presets shipped with the package (``zoo.create(..., preset=NAME)``)."""
    if not CATALOG_DIR.is_dir():
        return []
    return sorted(p.name for p in CATALOG_DIR.iterdir() if (p / "metadata.json").is_file())


def preset_path(preset: str | os.PathLike) -> Path:
    """A preset folder: ``preset`` itself where it exists, else the catalog's preset of
    that name; a one-line ``PresetError`` naming both when neither is."""
    path = Path(preset)
    if path.exists() or isinstance(preset, os.PathLike):
        return path
    if preset in list_presets():
        return CATALOG_DIR / preset
    raise PresetError(
        f"preset {str(preset)!r} is neither a folder nor a preset of the catalog {list_presets()}"
    )


def read_preset_metadata(directory: str | os.PathLike) -> dict[str, Any]:
    """The preset's metadata.json, after checking that every file is there and that
    none changed since it was saved (each file's sha256, metadata.json's own too)."""
    directory = Path(directory)
    where = f"preset {str(directory)!r}"
    if not directory.is_dir():
        raise PresetError(f"{where} is not a directory")
    missing = [f for f in PRESET_FILES if not (directory / f).is_file()]
    if missing:
        raise PresetError(f"{where} is damaged: missing {missing}")
    try:
        info = json.loads((directory / "metadata.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PresetError(f"{where} is damaged: metadata.json: {e}") from None
    if not isinstance(info, dict) or info.get("format") != PRESET_FORMAT:
        raise PresetError(f"{str(directory)!r} is not a {PRESET_FORMAT} (metadata.json)")
    version = info.get("format_version", 0)
    if version != PRESET_FORMAT_VERSION:
        newer = isinstance(version, int) and version > PRESET_FORMAT_VERSION
        raise PresetError(
            f"{where} has format_version {version!r}; this zoo reads {PRESET_FORMAT_VERSION}: "
            + ("update keras-model-zoo" if newer else "save it again with zoo.save_preset")
        )
    if info.get("metadata_sha256") != metadata_digest(info):
        raise PresetError(f"{where} is damaged: metadata.json was changed after it was saved")
    hashes = info.get("sha256")
    if not isinstance(hashes, dict):
        raise PresetError(f"{where} is damaged: metadata.json lists no file hashes")
    for name in PRESET_FILES[1:]:
        if sha256_file(directory / name) != hashes.get(name):
            raise PresetError(
                f"{where} is damaged: {name} does not match the sha256 in metadata.json "
                "(it was changed after it was saved); save the preset again"
            )
    return info


def load_preset(directory: str | os.PathLike, model_name: str | None = None) -> keras.Model:
    """Restores the model of the preset in ``directory`` under the current backend.

    Raises:
        PresetError: the preset is missing or damaged, or holds another model than
            ``model_name``.
    """
    directory = Path(directory)
    info = read_preset_metadata(directory)
    if model_name is not None and info.get("model") != model_name:
        raise PresetError(
            f"preset {str(directory)!r} holds model {info.get('model')!r}, not {model_name!r}"
        )
    _load_builtin_models()
    try:
        config = json.loads((directory / "config.json").read_text())
        model = keras.saving.deserialize_keras_object(config)
    except Exception as e:  # any parse or build error means the file is not what was saved
        raise PresetError(
            f"preset {str(directory)!r} is damaged: config.json does not build a model "
            f"({check.error_summary(e)})"
        ) from None
    if identity(model) is None or identity(model)["name"] != info["model"]:
        raise PresetError(
            f"preset {str(directory)!r} is damaged: config.json is not the zoo model "
            f"{info['model']!r} that metadata.json names"
        )
    try:
        model.load_weights(directory / "model.weights.h5")
    except Exception as e:
        raise PresetError(
            f"preset {str(directory)!r} is damaged: its weights do not fit its config "
            f"({check.error_summary(e)})"
        ) from None
    return model
